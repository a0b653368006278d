"""Graph flows and function flows keep one contract: retries, throttle, failure propagation.

Each test builds the same work in both styles and asserts the same outcome,
so the two doors into the engine cannot drift apart.
"""

import re
import threading
import time

import pytest

from headrace import Flow, flow, task, unmapped
from headrace.engine.clock import ManualClock
from headrace.executors import ThreadExecutor
from headrace.store import get_store, open_reader
from test_executor_contract import numbers, square, total

STYLES = ["graph", "function"]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def make_flaky(fail_times: int):
    attempts = []

    @task(retries=3, retry_delay=[1, 2])
    def flaky(x):
        attempts.append(x)
        if len(attempts) <= fail_times:
            raise ConnectionError(f"attempt {len(attempts)}")
        return x * 10

    return flaky, attempts


@pytest.mark.parametrize("style", STYLES)
def test_retries_wait_on_the_clock_then_succeed(style):
    flaky, attempts = make_flaky(2)
    clock = ManualClock()
    if style == "graph":
        with Flow("retries") as graph:
            f = flaky(4)
        state = graph.run(clock=clock)
        result, final = state[f].result(), state
    else:

        @flow(clock=clock)
        def retries():
            return flaky(4)

        final = retries(return_state=True)
        result = final.result()
    assert result == 40
    assert final.is_successful()
    assert attempts == [4, 4, 4]
    assert clock.sleeps == [1, 2]


@pytest.mark.parametrize("style", STYLES)
def test_exhausted_retries_fail_the_flow(style):
    flaky, attempts = make_flaky(10)
    clock = ManualClock()
    if style == "graph":
        with Flow("retries") as graph:
            flaky(1)
        final = graph.run(clock=clock)
    else:

        @flow(clock=clock)
        def retries():
            flaky(1)

        final = retries(return_state=True)
    assert final.is_failed()
    assert isinstance(final.exception, ConnectionError)
    assert len(attempts) == 4
    assert clock.sleeps == [1, 2, 2]


class Probe:
    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.peak = 0

    def __enter__(self):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc):
        with self.lock:
            self.now -= 1


@pytest.mark.parametrize("style", STYLES)
def test_throttle_caps_concurrent_runs_of_a_tag(style):
    probe = Probe()

    @task(tags=["web"])
    def fetch(i):
        with probe:
            time.sleep(0.01)  # long enough for runs to overlap when the cap allows
        return i

    items = list(range(12))
    executor = ThreadExecutor(6)
    if style == "graph":
        with Flow("throttle") as graph:
            m = fetch.map(items)
        result = graph.run(executor=executor, throttle={"web": 2})[m].result()
    else:

        @flow(executor=executor, throttle={"web": 2})
        def throttled():
            direct = fetch(99)  # a direct call takes a slot too
            return [direct, *fetch.map(items).result()]

        result = throttled()[1:]
    assert result == items
    assert probe.peak == 2


@task
def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad {x}")
    return x


@task
def double(x):
    return 2 * x


@pytest.mark.parametrize("style", STYLES)
def test_a_failed_child_fails_only_its_own_downstream_and_the_flow(style):
    if style == "graph":
        with Flow("propagation") as graph:
            a = fail_on.map([1, 2, 3], bad=unmapped(2))
            b = double.map(a)
        final = graph.run()
        names = [s.name for s in final[b].map_states]
    else:
        seen = {}

        @flow
        def propagation():
            a = fail_on.map([1, 2, 3], bad=unmapped(2))
            b = double.map(a)
            seen["states"] = b.wait()

        final = propagation(return_state=True)
        names = [s.name for s in seen["states"]]
    assert names == ["Completed", "TriggerFailed", "Completed"]
    assert final.is_failed()
    assert isinstance(final.exception, ValueError) and str(final.exception) == "bad 2"


@task
def plus_one(x):
    return x + 1


@pytest.mark.parametrize("style", STYLES)
def test_every_state_names_its_run(style):
    """Flow-run states carry flow_run_id, task-run states task_run_id, in one id format."""
    if style == "graph":
        with Flow("ids") as graph:
            children = plus_one.map([1, 2])
        state = graph.run()
        task_states = [state[children], *state[children].map_states]
    else:

        @flow
        def ids():
            return plus_one.map([1, 2]).wait()

        state = ids(return_state=True)
        task_states = state.result()
    assert re.fullmatch(UUID, state.flow_run_id) and state.task_run_id is None
    get_store().flush()
    recorded = {t.id for t in open_reader().task_runs(state.flow_run_id)}
    assert len(task_states) >= 2
    for task_state in task_states:
        assert task_state.flow_run_id == state.flow_run_id
        assert task_state.task_run_id in recorded


def recorded_shape(flow_run_id: str) -> dict:
    """Per task run (task key, map index): its map group's key and its upstream keys."""
    get_store().flush()
    with open_reader() as reader:
        runs = reader.task_runs(flow_run_id)
    keys = {r.id: (r.task_key, r.map_index) for r in runs}
    return {
        keys[r.id]: (
            keys[r.parent_task_run_id] if r.parent_task_run_id else None,
            sorted(keys[u] for u in r.upstream),
        )
        for r in runs
    }


def test_one_pipeline_written_both_ways_records_the_same_shape():
    with Flow("shape") as graph:
        t = total(square.map(numbers(3)))
    graph_state = graph.run()
    assert graph_state[t].result() == 5

    @flow
    def shape():
        return total(square.map(numbers(3)))

    function_state = shape(return_state=True)
    assert function_state.result() == 5

    expected = {
        ("numbers-1", None): (None, []),
        ("square-1", None): (None, [("numbers-1", None)]),
        **{("square-1", i): (("square-1", None), [("numbers-1", None)]) for i in range(3)},
        ("total-1", None): (None, [("square-1", None)]),
    }
    assert recorded_shape(graph_state.flow_run_id) == expected
    assert recorded_shape(function_state.flow_run_id) == expected
