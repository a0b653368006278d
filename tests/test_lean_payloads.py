"""What crosses the process boundary per task run, on ProcessExecutor and DaskExecutor.

A flow run's parameters and a task's definition reach each worker once, not
with every run; ProcessExecutor sends the runs of a short task in batches,
and a worker that dies in a batch crashes its own run only; DaskExecutor
makes one Dask task per task run, grouped by the task's name.
"""

from __future__ import annotations

import os

import pytest

from dask_processes import dask_cluster_fixture  # noqa: F401  (a fixture)
from headrace import Flow, Parameter, task, unmapped
from headrace.engine.task_run import TaskSpec
from headrace.executors import DaskExecutor, ProcessExecutor, ThreadExecutor
from headrace.executors.base import Batcher


class Tracked:
    """Notes, in a file, the pid of every process that unpickles it."""

    def __init__(self, log, size):
        self.log, self.items = str(log), list(range(size))

    def __setstate__(self, state):
        self.__dict__.update(state)
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")


@task
def double(i):
    return 2 * i


@task
def total(xs):
    return sum(xs)


def unpicklings(log) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HEADRACE_PROGRESS", "off")


@pytest.mark.parametrize("kind", ["process", "dask"])
def test_flow_parameters_reach_each_worker_once_not_with_every_run(kind, tmp_path, home):
    log = tmp_path / "unpickled"
    with Flow("lean") as flow:
        big = Parameter("big")
        out = total(double.map(list(range(200)), upstream_tasks=[unmapped(big)]))
    if kind == "process":
        executor = ProcessExecutor(2)
    else:
        executor = DaskExecutor(cluster_kwargs={"n_workers": 2})
    state = flow.run(parameters={"big": Tracked(log, 10_000)}, executor=executor)
    assert state.is_successful(), state.message
    assert state[out].result() == 2 * sum(range(200))
    pids = unpicklings(log)
    # Once per worker process; Dask may also pass it on to a worker that joins late.
    assert 1 <= len(pids) <= 4, pids


def test_the_batcher_holds_only_runs_of_a_kind_known_to_be_short():
    batcher = Batcher(workers=2)
    short, slow = TaskSpec(double), TaskSpec(total)
    assert Batcher.kind_of((short, {}, "double[0]")) is short
    assert Batcher.kind_of(("not shared",)) is None
    assert not batcher.hold(short, "first")  # not timed yet: sent alone, at once
    assert not batcher.hold(None, "no kind")
    batcher.timed(short, 0.0001)
    batcher.timed(slow, 0.5)
    assert not batcher.hold(slow, "slow")
    # A map's children as one call: as many as make 2 ms, within the caller's cap.
    assert (batcher.batch_size(short, 16), batcher.batch_size(short, 100)) == (16, 20)
    assert batcher.batch_size(slow, 16) == batcher.batch_size(TaskSpec(total), 16) == 0
    for i in range(10):
        assert batcher.hold(short, i)
    batches = batcher.take()
    assert [run for batch in batches for run in batch] == list(range(10))  # in order
    assert len(batches) == 2  # one per worker: 10 runs of 0.1 ms fit one 2 ms batch
    assert batcher.take() == []
    assert batcher.hold(short, "left") and batcher.drop() == ["left"]  # at shutdown
    assert batcher.take() == []
    batcher.timed(short, 0.5)  # it slowed down: the average moves over the line
    batcher.timed(short, 0.5)
    assert not batcher.hold(short, "now slow") and batcher.batch_size(short, 16) == 0
    for _ in range(Batcher.PACES):  # an executor kept up across runs meets new specs
        batcher.timed(TaskSpec(double), 0.0001)
    assert len(batcher._pace) <= Batcher.PACES  # forgotten, to be timed again


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_short_runs_travel_in_batches_and_each_keeps_its_own_state(kind, home):
    jobs: list[int] = []
    executor = ProcessExecutor(2) if kind == "process" else ThreadExecutor(4)
    send = executor._send

    def counted(*args):  # a thread's run may be a map's children as one call: its count
        jobs.append(sum(run[-1] for run in args[-1]) if kind == "thread" else len(args[-1]))
        send(*args)

    executor._send = counted
    with Flow("batches") as flow:
        out = total(double.map(list(range(3000))))
    state = flow.run(executor=executor)
    assert state[out].result() == 2 * sum(range(3000))
    assert sum(jobs) == 3001  # every run sent once
    assert max(jobs) > 1 and len(jobs) < 3001 / 4, jobs[:50]


@task
def die_at(i, marker):
    if i == 250 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)  # the worker dies in the middle of a batch
    return i


def test_a_worker_that_dies_in_a_batch_crashes_only_its_own_run(tmp_path, home):
    marker = str(tmp_path / "died")
    with Flow("dies") as flow:
        runs = die_at.map(list(range(600)), marker=unmapped(marker))
    state = flow.run(executor=ProcessExecutor(2))
    children = state[runs].map_states
    crashed = [i for i, child in enumerate(children) if not child.is_successful()]
    assert crashed == [250]
    assert children[250].name == "Crashed" and "died" in children[250].message
    assert [c.result() for i, c in enumerate(children) if i != 250] == [
        i for i in range(600) if i != 250
    ]


def test_one_dask_task_per_task_run_grouped_by_the_task(dask_cluster, home):
    from dask.utils import key_split
    from distributed import get_task_stream

    executor = DaskExecutor(address=dask_cluster)
    with executor:
        with Flow("one-each") as flow:
            out = total(double.map(list(range(50))))
        with get_task_stream(executor.client) as stream:
            state = flow.run(executor=executor)
        assert state[out].result() == 2 * sum(range(50))
    prefixes = [key_split(record["key"]) for record in stream.data]
    assert prefixes.count("double") == 50
    assert prefixes.count("total") == 1
    # and the shared parts: the two tasks' specs and the flow run's context
    assert sorted(p for p in prefixes if p not in ("double", "total")) == [
        "FlowRunContext",
        "TaskSpec",
        "TaskSpec",
    ]
