"""A plain map's children in batches (engine.batch) and their compact history.

On an inline executor the children of a map that runs alike go through one loop, and
ThreadExecutor takes those of a short task as one call per batch (`batch.send`); both
are recorded as `ChildRuns` (the store's task_run_children). Everything a user can see
must be what the general path shows: each child's state and result, its context and
log lines, and its record in the history, on SQLite and on PostgreSQL. A ThreadExecutor
that takes no batches runs the same flow through the general path, recorded row by
row, so the three are compared field by field.
"""

from __future__ import annotations

import threading
import time

import pytest

from headrace import Flow, Parameter, context, flow, get_run_logger, signals, task, unmapped
from headrace.engine import batch
from headrace.engine.clock import ManualClock
from headrace.executors import LocalExecutor, ThreadExecutor
from headrace.results.persist import INLINE_BYTES, ResultRef
from headrace.store import get_store, open_limits, open_reader, open_recorder
from headrace.store.base import Recorder
from headrace.store.records import ChildRuns
from headrace.store.sql import SQLRecorder

N = 2 * batch.CHILDREN + 100  # three batches


@task
def numbers(n):
    return list(range(n))


@task(tags=["t"])
def step(x):
    get_run_logger().info("child %d at map index %s", x, context.map_index)
    kind = x % 100
    if kind == 7:
        raise ValueError(f"seven in {x}")
    if kind == 8:
        raise signals.SKIP(f"skip {x}")
    if kind == 9:
        return b"\x01" * (INLINE_BYTES + 10)  # written to storage, not kept inline
    if kind == 10 and context.task_loop_count < 3:
        raise signals.LOOP(result=x)
    if kind == 11:
        raise signals.SUCCESS("early", result=-x)
    return x + 1


@task
def total(xs):
    return sum(xs)


def graph_flow() -> tuple[Flow, object]:
    with Flow("batched") as f:
        mapped = step.map(numbers(Parameter("n")))
        total(mapped)
    return f, mapped


def run_graph(executor):
    f, mapped = graph_flow()
    state = f.run(parameters={"n": N}, executor=executor)
    return state[mapped].map_states


def run_function(executor):
    @flow(name="batched", executor=executor)
    def batched(n):
        return [future.wait() for future in step.map(numbers(n))]

    return batched(N, return_state=True).result(raise_on_failure=False)


def shown(states) -> list[tuple]:
    """What a caller sees of each child state."""
    return [
        (s.name, s.message, s.result(raise_on_failure=False) if s.is_successful() else None)
        for s in states
    ]


def recorded(reader, flow_run_id: str) -> list[tuple]:
    """The history of a run with its ids replaced by names (ids differ from run to run)."""
    runs = reader.task_runs(flow_run_id)
    names = {t.id: t.name for t in runs}
    return [
        (
            t.name, t.task_name, t.task_key, t.map_index, t.state_type, t.state_name,
            t.state_message, [names[u] for u in t.upstream], t.tags, t.run_count,
            names.get(t.parent_task_run_id), t.cache_key,
            ResultRef.parse(t.result_ref).load() if t.result_ref else None,
            [
                _line(r.message)
                for _, r in reader.logs(flow_run_id, task_run_id=t.id)
                if not r.message.startswith("Finished in state")  # the first few, as they end
            ],
        )
        for t in sorted(runs, key=lambda t: t.name)
    ]  # fmt: skip


def _line(message: str) -> str:
    """A log line; of a traceback, its last line (the engine's own frames differ)."""
    return message.splitlines()[-1] if message.startswith("Encountered exception") else message


def compact_rows(reader, flow_run_id: str) -> int:
    """How many of the run's children the store keeps compactly."""
    return reader._rows(
        "SELECT COUNT(*) FROM task_run_children c JOIN task_runs p "
        "ON p.id = c.parent_task_run_id WHERE p.flow_run_id = ?",
        (flow_run_id,),
    )[0][0]


class OneByOne(ThreadExecutor):
    """A ThreadExecutor that takes every run alone: the general path."""

    batches = False


class Counted(ThreadExecutor):
    """A ThreadExecutor that counts the children it was handed as one call."""

    def __init__(self, workers: int):
        super().__init__(workers)
        self.sent: list[int] = []

    def submit_runs(self, count, fn, *args):
        self.sent.append(count)
        return super().submit_runs(count, fn, *args)


@pytest.mark.parametrize("style", [run_graph, run_function], ids=["graph", "function"])
def test_a_batched_map_shows_and_records_what_the_general_path_does(url, style, monkeypatch):
    batched = style(LocalExecutor())
    pool = Counted(2)
    sent = style(pool)
    assert len(pool.sent) > 10 and max(pool.sent) > 1  # most children went in batches
    get_store().flush()
    # The third run: each child through the pool, and recorded as a task_runs row each
    # (the Recorder's own way of taking a ChildRuns).
    monkeypatch.setattr(SQLRecorder, "task_runs", Recorder.task_runs)
    one_by_one = style(OneByOne(2))
    assert shown(batched) == shown(one_by_one) == shown(sent)
    assert [s.name for s in batched[5:12]] == [
        "Completed", "Completed", "Failed", "Skipped", "Completed", "Completed", "Completed",
    ]  # fmt: skip
    assert batched[10].result() == 10 + 1 and batched[11].result() == -11

    get_store().flush()
    reader = open_reader(url)
    third, second, first = reader.flow_runs(flow_name="batched")[:3]  # newest first
    assert recorded(reader, first.id) == recorded(reader, third.id)
    assert recorded(reader, second.id) == recorded(reader, third.id)
    # The first two kept their plain children compactly; the third recorded each as a row.
    plain = sum(1 for i in range(N) if i % 100 not in (7, 8, 9, 11))  # (10 loops, then ends)
    assert compact_rows(reader, first.id) == plain
    assert plain - 2 * 64 <= compact_rows(reader, second.id) <= plain  # (the first went alone)
    assert compact_rows(reader, third.id) == 0
    child = next(t for t in reader.task_runs(first.id) if t.name == "step[5]")
    finished = ["Finished in state Completed()"] if style is run_function else []
    lines = [r.message for _, r in reader.logs(first.id, task_run_id=child.id)]
    assert lines == ["child 5 at map index 5", *finished]  # (a function flow's first few)


def batched_run(url: str, n: int):
    """A reader of the history and the run of the graph flow over `n` items, inline."""
    graph_flow()[0].run(parameters={"n": n}, executor=LocalExecutor())
    get_store().flush()
    reader = open_reader(url)
    return reader, reader.flow_runs(flow_name="batched")[0]


def test_a_compact_child_is_read_like_any_task_run(url):
    reader, run = batched_run(url, 300)
    runs = {t.name: t for t in reader.task_runs(run.id)}
    parent, child = runs["step"], runs["step[42]"]
    assert child.id == f"{parent.id}.42" and child.parent_task_run_id == parent.id
    assert reader.task_run(child.id) == child
    assert reader.task_run(f"{parent.id}.300") is None and reader.task_run("x.y") is None
    states = reader.states(child.id)
    assert [(s.name, s.message) for s in states] == [
        ("Running", None),
        ("Completed", "Task run succeeded."),
    ]
    assert states[0].time == child.start_time <= states[1].time == child.end_time
    assert run.start_time <= child.start_time <= child.end_time <= run.end_time

    # a map's children page by index across compact and general rows alike
    page = reader.map_children(run.id, parent.task_key, after_index=5, limit=4)
    assert [t.name for t in page] == ["step[6]", "step[7]", "step[8]", "step[9]"]
    assert [t.state_name for t in page] == ["Completed", "Failed", "Skipped", "Completed"]
    failed = reader.map_children(run.id, parent.task_key, state="Failed")
    assert [t.name for t in failed] == ["step[7]", "step[107]", "step[207]"]
    completed = reader.map_children(run.id, parent.task_key, after_index=290, state="Completed")
    assert [t.map_index for t in completed] == [291, 292, 293, 294, 295, 296, 297, 298, 299]
    [group] = reader.map_groups(run.id)
    assert group.size == 300 and group.parent_task_run_id == parent.id
    assert group.counts == {"Completed": 294, "Failed": 3, "Skipped": 3}
    assert group.failed == ["step[7]", "step[107]", "step[207]"]
    assert reader.activity(run.id)[0] == len(runs) == 300 + 3


def test_ctrl_c_in_a_batch_keeps_the_children_that_finished(url):
    @task
    def interrupted_at_300(x):
        if x == 300:
            raise KeyboardInterrupt
        return x

    with Flow("interrupted") as f:
        interrupted_at_300.map(list(range(N)))
    with pytest.raises(KeyboardInterrupt):
        f.run()
    get_store().flush()
    reader = open_reader(url)
    run = reader.flow_runs(flow_name="interrupted")[0]
    assert run.state_name == "Cancelled"
    children = reader.task_runs(run.id, children=True)
    assert [t.map_index for t in children] == list(range(300))
    assert {t.state_name for t in children} == {"Completed"}
    assert ResultRef.parse(children[299].result_ref).load() == 299


@pytest.mark.parametrize("pool", [Counted, OneByOne], ids=["batches", "one-by-one"])
def test_ctrl_c_keeps_the_children_a_pool_ran(url, pool):
    def ctrl_c(task, state):  # a failure's hook runs in the core's loop, as Ctrl-C lands
        if isinstance(state.exception, ValueError):
            raise KeyboardInterrupt

    @task(on_failure=[ctrl_c])
    def fails_at_1500(x):
        if x == 1500:
            raise ValueError("1500")
        return x

    pool = pool(1)  # one worker: the children run in index order
    with Flow("interrupted") as f:
        total(fails_at_1500.map(list(range(3000))))
    with pytest.raises(KeyboardInterrupt):
        f.run(executor=pool)
    for thread in threading.enumerate():  # the pool's, as at exit: what ran on is handled
        if thread.name.startswith("headrace_"):
            thread.join(timeout=60)
    assert not isinstance(pool, Counted) or max(pool.sent) > 1
    get_store().flush()
    reader = open_reader(url)
    run = reader.flow_runs(flow_name="interrupted")[0]
    assert run.state_name == "Cancelled"
    children = reader.task_runs(run.id, children=True)
    indices = [t.map_index for t in children]
    # Every child that ran is kept (in a batch, those after 1500 too); only the one the
    # interrupt landed in has no record, and none is recorded that never ran.
    assert indices == [i for i in range(indices[-1] + 1) if i != 1500]
    assert 1500 < indices[-1] < 3000
    assert {t.state_name for t in children} == {"Completed"}
    assert [ResultRef.parse(t.result_ref).load() for t in children] == indices


def test_pruning_a_run_deletes_its_compact_children(url):
    reader, run = batched_run(url, 50)
    assert compact_rows(reader, run.id) > 0
    assert open_recorder(url).prune(time.time() + 1) >= 1
    assert reader.task_runs(run.id) == []
    assert reader._rows("SELECT COUNT(*) FROM task_run_children")[0][0] == 0


class Kept(Recorder):
    """A recorder of its own, without batches: it is handed each child as a TaskRun."""

    def __init__(self):
        self.runs = []

    recording = True

    def task_run(self, run):
        self.runs.append(run)

    def flow_run_started(self, run):
        pass

    def flow_run_ended(self, *args):
        pass

    def task_state(self, state):
        pass

    def log(self, record):
        pass

    def flush(self, timeout=60.0):
        pass


def test_a_recorder_without_batches_receives_each_child_as_a_task_run():
    runs = ChildRuns("f", "step", "step", "step-1", "f-1", ["f-0"], ["t"], "pickle", "ok")
    for i, value in ((3, b"\x80\x05K\x04."), (4, b"\x80\x05K\x05.")):
        runs.add(i, 10.0 + i, 11.0 + i, value)
    kept = Kept()
    kept.task_runs(runs)
    assert [(r.id, r.name, r.map_index, r.parent_task_run_id, r.upstream, r.tags) for r in kept.runs] == [
        ("f-1.3", "step[3]", 3, "f-1", ["f-0"], ["t"]),
        ("f-1.4", "step[4]", 4, "f-1", ["f-0"], ["t"]),
    ]  # fmt: skip
    assert [(r.state_name, r.state_message, r.start_time, r.end_time) for r in kept.runs] == [
        ("Completed", "ok", 13.0, 14.0),
        ("Completed", "ok", 14.0, 15.0),
    ]
    assert [ResultRef.parse(r.result_ref).load() for r in kept.runs] == [4, 5]


def test_a_map_whose_tag_the_store_limits_asks_for_its_slots_child_by_child(url):
    open_limits().set("t", 1)
    limits = open_limits()

    @task(tags=["t"])
    def holders(x):
        """How many hold the store's slot of "t" while this child runs."""
        return [len(lim.holders) for lim in limits.read() if lim.tag == "t"]

    @task
    def every(xs):
        return xs

    with Flow("limited") as f:
        seen = every(holders.map(list(range(20))))  # (a map the run does not return)
    state = f.run(executor=LocalExecutor())
    assert state[seen].result() == [[1]] * 20  # each child ran holding the slot


@pytest.mark.parametrize("executor", [LocalExecutor, lambda: ThreadExecutor(2)])
def test_slow_children_are_recorded_as_they_finish_not_a_batch_later(url, executor):
    clock = ManualClock()

    @task
    def slow(x):
        get_store().flush()  # what the run handed over so far is written
        with open_reader(url) as reader:
            recorded = len(reader.task_runs(context.flow_run_id, children=True))
        clock.advance(1.0)  # each child "takes" a second
        return recorded

    @task
    def every(xs):
        return xs

    with Flow("slow") as f:
        seen = every(slow.map(list(range(5))))
    state = f.run(executor=executor(), clock=clock)
    if executor is LocalExecutor:
        assert state[seen].result() == [0, 1, 2, 3, 4]  # each child's row, before the next
    else:  # (two at a time: a child sees those before the pair it ran in)
        assert all(seen_ >= i - 2 for i, seen_ in enumerate(state[seen].result()))


@pytest.mark.parametrize("executor", [LocalExecutor, lambda: ThreadExecutor(2)])
def test_each_child_gets_its_own_list_of_a_map_passed_whole(executor):
    @task
    def ident(x):
        return x

    @task
    def grow(x, xs):
        xs.append(x)  # a child that changes its input changes no other child's
        return len(xs)

    @task
    def every(xs):
        return xs

    with Flow("grow") as f:
        grown = every(grow.map(list(range(5)), xs=unmapped(ident.map([1, 2, 3]))))
    assert f.run(executor=executor())[grown].result() == [4] * 5
