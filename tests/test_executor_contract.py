"""One contract, every executor: the same flows give the same states on each.

Local, threads, processes and a Dask LocalCluster run every test here. The
cluster and the pools are started once per module (a run leaves an executor
it did not start running).
"""

import os
import sys
import time

import cloudpickle
import pytest

from headrace import Flow, Parameter, flow, task, triggers, unmapped
from headrace.engine.clock import ManualClock
from headrace.executors import (
    DaskExecutor,
    LocalExecutor,
    ProcessExecutor,
    ThreadExecutor,
)
from headrace.signals import LOOP, SKIP
from headrace.states import StateType

# Worker processes cannot import this test module by name: send its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

EXECUTORS = {
    "local": LocalExecutor,
    "threads": lambda: ThreadExecutor(4),
    "processes": lambda: ProcessExecutor(2),
    "dask": lambda: DaskExecutor(cluster_kwargs={"n_workers": 2}),
}


@pytest.fixture(scope="module", params=list(EXECUTORS))
def executor(request):
    ex = EXECUTORS[request.param]()
    with ex:
        yield ex


@task
def numbers(n):
    return list(range(n))


@task
def square(x):
    return x * x


@task
def total(xs):
    return sum(xs)


@task
def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad {x}")
    return x


def test_map_chain_and_reduce(executor):
    with Flow("contract") as flow:
        n = Parameter("n")
        sq = square.map(numbers(n))
        again = square.map(sq)
        t = total(again)
    state = flow.run(parameters={"n": 50}, executor=executor)
    assert state.is_successful()
    assert state[t].result() == sum(i**4 for i in range(50))
    assert len(state[again].map_states) == 50


def test_failure_is_isolated_to_its_child(executor):
    with Flow("isolation") as flow:
        a = fail_on.map([1, 2, 3], bad=unmapped(2))
        b = square.map(a)
        t = total(b)
    state = flow.run(executor=executor)
    assert [s.name for s in state[b].map_states] == ["Completed", "TriggerFailed", "Completed"]
    assert state[t].name == "TriggerFailed"
    assert state.type is StateType.FAILED
    assert isinstance(state[a].map_states[1].exception, ValueError)


def test_retries_on_the_injected_clock(executor, tmp_path):
    marker = tmp_path / "attempts"

    @task(retries=3, retry_delay=[1, 5])
    def flaky():
        # A file counts attempts: it is shared by every kind of worker.
        with open(marker, "a") as f:
            f.write("x")
        if len(marker.read_text()) < 3:
            raise ConnectionError("try again")
        return "ok"

    clock = ManualClock()
    with Flow("retries") as flow:
        f = flaky()
    state = flow.run(executor=executor, clock=clock)
    assert state[f].result() == "ok"
    assert clock.sleeps == [1, 5]
    assert marker.read_text() == "xxx"


def test_loop_runs_until_done(executor):
    from headrace import context

    @task
    def countdown(start):
        value = context.task_loop_result if context.task_loop_count > 1 else start
        if value > 0:
            raise LOOP(result=value - 1)
        return context.task_loop_count

    with Flow("loop") as flow:
        c = countdown.map([0, 3])
    assert flow.run(executor=executor)[c].result() == [1, 4]


def test_triggers_and_skips(executor):
    @task
    def boom():
        raise RuntimeError("boom")

    @task
    def skipper():
        raise SKIP("nothing to do")

    @task(trigger=triggers.any_failed)
    def cleanup(x):
        return "cleaned"

    @task
    def after(x):
        return "after"

    with Flow("triggers") as flow:
        c = cleanup(boom())
        s = after(skipper())
    state = flow.run(executor=executor)
    assert state[c].result() == "cleaned"
    assert state[s].name == "Skipped"


def test_throttle_holds_on_every_executor(executor):
    @task(tags=["web"])
    def visit(i):
        started = time.monotonic()  # one system-wide clock for all worker kinds
        time.sleep(0.02)
        return started, time.monotonic()

    with Flow("throttle") as flow:
        v = visit.map(list(range(12)))
    state = flow.run(executor=executor, throttle={"web": 2})
    spans = state[v].result()
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= 2
    if not executor.inline:
        assert peak == 2


def test_timeouts(executor, tmp_path):
    # A FIFO with no writer blocks its reader in any process until the test opens it.
    fifo = tmp_path / "never"
    os.mkfifo(fifo)

    @task(timeout=0.3)
    def stuck():
        with open(fifo) as f:
            f.read()

    @task
    def after(x):
        return x

    with Flow("timeout") as flow:
        s = stuck()
        a = after(s)
    started = time.monotonic()
    state = flow.run(executor=executor)
    try:  # let an abandoned thread finish; a killed reader leaves none (ENXIO)
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass
    assert time.monotonic() - started < 10
    assert state[s].name == "TimedOut"
    assert state[a].name == "TriggerFailed"


def test_task_states_and_start_tasks(executor, tmp_path):
    calls = tmp_path / "calls"

    @task
    def expensive(x):
        with open(calls, "a") as f:
            f.write("x")
        return x * 10

    with Flow("reuse") as flow:
        e = expensive.map([1, 2])
    first = flow.run(executor=executor)
    with flow:
        t = total(e)
    second = flow.run(executor=executor, task_states=first.task_states, start_tasks=[t])
    assert second[t].result() == 30
    assert calls.read_text() == "xx"


def test_async_tasks(executor):
    import asyncio

    @task
    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    with Flow("async") as flow:
        d = double.map([1, 2, 3])
    assert flow.run(executor=executor)[d].result() == [2, 4, 6]


# -- both styles on the one core ------------------------------------------------------------------


@task(tags=["web"])
def visit(i):
    started = time.monotonic()  # one system-wide clock for all worker kinds
    time.sleep(0.02)
    return started, time.monotonic()


def peak_overlap(spans) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def test_a_subflow_honours_its_parents_throttle(executor):
    @flow(executor=executor)
    def child(n):
        return visit.map(range(n)).result()

    @flow(executor=executor, throttle={"web": 2})
    def parent():
        return child(6) + child.with_options(name="again")(6)

    spans = parent()
    assert len(spans) == 12
    assert peak_overlap(spans) <= 2
    if not executor.inline:
        assert peak_overlap(spans) == 2


@task(tags=["store-limited"])
def visit_limited(i):
    started = time.monotonic()
    time.sleep(0.02)
    return started, time.monotonic()


@pytest.mark.parametrize("style", ["graph", "function"])
def test_a_tag_limit_in_the_store_holds_on_every_executor(executor, style):
    """The store's limit (`headrace limits set`) caps the run and its subflows; when the
    run ends, every slot is back in the store."""
    from headrace.store import open_limits

    limits = open_limits()
    limits.set("store-limited", 2)
    try:
        if style == "graph":
            with Flow("limited") as graph:
                v = visit_limited.map(list(range(12)))
            spans = graph.run(executor=executor)[v].result()
        else:

            @flow(executor=executor)
            def child(n):
                return visit_limited.map(range(n)).result()

            @flow(executor=executor)
            def parent():
                return child(6) + visit_limited.map(range(6)).result()

            spans = parent()
        assert len(spans) == 12 and peak_overlap(spans) <= 2
        if not executor.inline:
            assert peak_overlap(spans) == 2
        [limit] = [lim for lim in limits.read() if lim.tag == "store-limited"]
        assert (limit.holders, limit.waiting) == ([], 0)
    finally:
        limits.remove("store-limited")


@task
def load(i):
    return [i] * 1000


@task
def grow(block):
    return [x + 1 for x in block]


@task
def size(block):
    return block[0]


def released(state) -> bool:
    """Dropped from memory, and read again from where it was persisted."""
    return state.is_released() and state.result() is not None


@pytest.mark.parametrize("style", ["graph", "function"])
def test_a_chained_map_releases_intermediates(executor, style):
    """Each intermediate result is released once its consumer started; the end result stays.

    (How many are alive at once is measured in the flow's process by test_memory.)
    """
    n = 30
    if style == "graph":
        with Flow("chain") as chain:
            loaded = load.map(list(range(n)))
            grown = grow.map(loaded)
            t = total(size.map(grown))
        state = chain.run(executor=executor)
        assert state[t].result() == sum(range(1, n + 1))
        intermediates = [*state[loaded].map_states, *state[grown].map_states]
    else:

        @flow(executor=executor)
        def chain():
            return total(size.map(grow.map(load.map(range(n)))))

        assert chain() == sum(range(1, n + 1))
        records = chain.last_run.records
        intermediates = [r.state for r in records if r.task_name in ("load", "grow")]
    assert len(intermediates) == 2 * n
    assert all(released(s) for s in intermediates)
