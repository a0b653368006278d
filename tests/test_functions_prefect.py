"""Function flows as Prefect 2/3 users know them: failure states, parameters, async
subflows, futures and options. Each test pins one rule of docs/function-flows.md (or a
difference listed in docs/coming-from-prefect.md)."""

from __future__ import annotations

import dataclasses
import threading
import warnings

import pydantic
import pytest

from headrace import context, flow, task
from headrace.engine.clock import ManualClock
from headrace.errors import ParameterError
from headrace.executors import LocalExecutor
from headrace.states import Cancelled, Completed, Failed
from headrace.store import get_store, open_reader


@pytest.fixture
def history(tmp_path, monkeypatch):
    """A fresh run history; returns a function that reads it once everything is written."""
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HEADRACE_DATABASE_URL", raising=False)
    monkeypatch.delenv("HEADRACE_HISTORY", raising=False)

    def read():
        get_store().flush()
        return open_reader()

    return read


@task
def one():
    return 1


@task
def ident(x):
    return x


@task
def boom():
    raise ValueError("boom")


# -- 1. against our own docs ------------------------------------------------------------------


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


@dataclasses.dataclass
class Size:
    width: int


def test_a_model_or_dataclass_parameter_is_built_from_a_dict():
    @flow
    def takes(point: Point, size: Size):
        return point, size

    point, size = takes({"x": "3"}, {"width": "4"})
    assert point == Point(x=3, y=0) and size == Size(width=4)
    with pytest.raises(ParameterError, match="point="):
        takes({"y": 1}, {"width": 4})


def test_return_state_never_raises_for_a_downstream_that_could_not_run(history):
    @flow
    def downstream_of_a_failure():
        return ident.submit(boom.submit())  # TriggerFailed: the future's result raises

    state = downstream_of_a_failure(return_state=True)
    assert state.is_failed()
    assert "'boom-0' (ValueError: boom)" in state.message
    assert "'ident-0' TriggerFailed" in state.message
    recorded = history().flow_run(state.flow_run_id)
    assert recorded.state_name == "Failed" and recorded.end_time is not None


def test_a_subflow_given_a_future_gets_its_value_and_records_the_edge(history):
    seen = []

    @flow
    def child(x, items):
        seen.append((x, items))
        return x

    @flow
    def parent():
        f = one.submit()
        return child(f, [f, 2])

    assert parent() == 1
    assert seen == [(1, [1, 2])]
    [one_record, child_record] = parent.last_run.records
    assert child_record.kind == "flow" and child_record.upstream == [one_record.id]
    reader = history()
    [recorded_child] = reader.flow_runs(parent_id=parent.last_run.id)
    assert recorded_child.upstream == [one_record.id]


# -- 2. a sync flow calling an async subflow --------------------------------------------------


def test_a_sync_flow_runs_an_async_subflow_and_gets_its_value():
    @flow
    async def async_child(x):
        return x + (await ident(1))

    @flow
    def parent():
        return async_child(41)

    state = parent(return_state=True)
    assert state.is_completed() and state.result() == 42
    [child] = parent.last_run.records
    assert child.kind == "flow" and child.state.result() == 42


# -- 3. failure through returned states --------------------------------------------------------


def test_returned_states_decide_the_flow():
    @flow
    def two_of_three_failed():
        return [one(return_state=True), Failed("first"), Failed("second")]

    state = two_of_three_failed(return_state=True)
    assert state.is_failed() and state.message == "2/3 states failed."

    @flow
    def a_tuple_with_one_failure():
        return (Completed(), boom(return_state=True))

    assert a_tuple_with_one_failure(return_state=True).message == "1/2 states failed."
    with pytest.raises(ValueError, match="boom"):
        a_tuple_with_one_failure()

    @flow
    def cancels():
        return Cancelled("stopped by hand")

    cancelled = cancels(return_state=True)
    assert cancelled.is_cancelled() and cancelled.message == "stopped by hand"

    @flow
    def all_completed():
        return [one(return_state=True), Completed(result=2)]

    done = all_completed(return_state=True)
    assert done.is_completed() and [s.result() for s in done.result()] == [1, 2]


def test_a_returned_failed_state_keeps_its_message_and_data():
    @flow
    def fails_with_data():
        return Failed("three rows were bad", result={"bad": 3})

    state = fails_with_data(return_state=True)
    assert state.is_failed() and state.message == "three rows were bad"
    assert state.result(raise_on_failure=False) == {"bad": 3}
    with pytest.raises(RuntimeError, match="three rows were bad"):
        state.result()


# -- 4. bad parameters -------------------------------------------------------------------------


@flow
def typed(n: int):
    return n


def test_bad_parameters_with_return_state_give_a_failed_state(history):
    state = typed("many", return_state=True)
    assert state.is_failed() and "n='many'" in state.message
    with pytest.raises(ParameterError, match="n='many'"):
        state.result()
    with pytest.raises(ParameterError, match="n='many'"):
        typed("many")  # without return_state: the error itself
    with pytest.raises(ParameterError, match="cannot be called that way"):
        typed(1, 2, return_state=True).result()
    recorded = history().flow_run(state.flow_run_id)
    assert recorded.state_name == "Failed" and "n='many'" in recorded.state_message


def test_a_subflow_with_bad_parameters_is_a_failed_subflow_run_the_parent_sees():
    @flow
    def parent():
        bad = typed("x", return_state=True)
        return bad.is_failed(), typed(5)

    assert parent() == (True, 5)
    first, second = parent.last_run.records
    assert first.kind == "flow" and first.state.is_failed() and "n='x'" in first.state.message
    assert second.state.result() == 5


# -- 5. subflows take wait_for ----------------------------------------------------------------


def test_a_subflow_waits_for_the_runs_it_is_told_to():
    done = []

    @task
    def side_effect():
        done.append("task")

    @flow
    def child():
        return list(done)

    @flow
    def parent():
        f = side_effect.submit()
        return child(wait_for=[f])

    assert parent() == ["task"]
    waited, record = parent.last_run.records
    assert record.upstream == [waited.id]


def test_a_subflow_waiting_for_a_failed_run_does_not_run():
    ran = []

    @flow
    def child():
        ran.append(1)

    @flow
    def parent():
        return child(wait_for=[boom.submit()], return_state=True)

    state = parent(return_state=True)
    assert ran == []
    [_, record] = parent.last_run.records
    assert record.state.is_trigger_failed() and "'boom-0' failed" in record.state.message
    assert state.is_failed()


# -- 6. futures ---------------------------------------------------------------------------------


def test_wait_with_a_timeout_returns_without_raising():
    release = threading.Event()

    @task
    def held():
        release.wait(10)
        return "out"

    @flow
    def parent():
        f = held.submit()
        early = f.wait(0.05)
        now = f.state
        with pytest.raises(TimeoutError, match="did not finish within"):
            f.result(timeout=0.01)
        release.set()
        return early, now.is_pending(), f.wait(5).result()

    assert parent() == (None, True, "out")


def test_a_wait_timeout_is_on_the_flows_clock():
    clock = ManualClock()

    @flow(clock=clock, executor=LocalExecutor())
    def parent():
        f = ident.submit(3)
        return f.wait(30).result()  # an inline run finishes before the clock has to move

    assert parent() == 3


def test_a_future_in_a_condition_warns():
    @flow
    def parent():
        f = one.submit()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            truth = bool(f)
        return truth, [str(w.message) for w in caught]

    truth, messages = parent()
    assert truth is True
    assert len(messages) == 1 and "not of its result" in messages[0]


def test_map_takes_a_state_or_a_future_whose_value_is_a_list():
    @flow
    def parent():
        from_state = ident.map(Completed(result=[1, 2])).result()
        from_future = ident.map(ident.submit([3, 4])).result()
        return from_state, from_future

    assert parent() == ([1, 2], [3, 4])


# -- 7. names and options ------------------------------------------------------------------------


def test_a_run_name_callable_reads_the_parameters_from_the_context():
    @flow(flow_run_name=lambda: f"report-{context.parameters['day']}")
    def report(day: str):
        return context.flow_run_name

    assert report("monday") == "report-monday"


def test_a_run_name_that_is_not_a_string_names_the_callable():
    def numbered():
        return 7

    @flow(flow_run_name=numbered)
    def counted():
        return 1

    with pytest.raises(TypeError, match=r"flow_run_name .*numbered of flow 'counted' returned 7"):
        counted()


def test_task_with_options_is_public_and_unsets_a_timeout():
    slow = task(timeout=5, retries=1, name="slow")(lambda: 1)
    quick = slow.with_options(timeout=None, name="quick")
    assert (quick.timeout, quick.name, quick.retries) == (None, "quick", 1)
    assert (slow.timeout, slow.name) == (5, "slow")
    with pytest.raises(ValueError, match="timeout must be > 0"):
        slow.with_options(timeout=0)
    with pytest.raises(TypeError, match="unknown task option 'color'; the options are"):
        slow.with_options(color="red")


# -- 9. a flow's own retries reuse what completed ----------------------------------------------


def test_a_flow_retry_reuses_the_task_runs_that_completed(history):
    calls = []

    @task
    def step(x):
        calls.append(x)
        return x * 10

    @task
    def flaky(x):
        calls.append("flaky")
        if calls.count("flaky") == 1:
            raise ValueError("first attempt")
        return x

    @flow
    def child(x):
        calls.append(f"child {x}")
        return x

    @flow(retries=1, clock=ManualClock())
    def parent():
        a = step(1)
        b = step.submit(2)
        mapped = step.map([3, 4])
        c = child(5)
        return flaky(a + b.result() + sum(mapped.result()) + c)

    state = parent(return_state=True)
    assert state.result() == 10 + 20 + 30 + 40 + 5
    assert calls == [1, 2, 3, 4, "child 5", "flaky", "flaky"]
    records = parent.last_run.records
    assert [r.kind for r in records] == ["task"] * 4 + ["flow", "task"]
    assert all(r.state.is_completed() for r in records)
    recorded = history().task_runs(state.flow_run_id)
    # Each reused run was recorded once, by the attempt that ran it, under the id it keeps.
    assert sorted(r.name for r in recorded) == sorted(
        ["step-0", "step-1", "step", "step[0]", "step[1]", "flaky-0", "flaky-0"]
    )
    assert {r.id for r in records if r.kind == "task"} <= {r.id for r in recorded}


def test_a_flow_retry_runs_again_a_call_with_other_arguments():
    calls = []

    @task
    def step(x):
        calls.append(x)
        return x

    @flow(retries=1, clock=ManualClock())
    def parent():
        step(len(calls))
        if len(calls) == 1:
            raise RuntimeError("once")
        return "ok"

    assert parent() == "ok"
    assert calls == [0, 1]


def test_a_flow_retry_runs_again_a_subflow_called_with_other_arguments():
    calls = []

    @flow
    def child(x):
        calls.append(x)
        return x

    @flow(retries=1, clock=ManualClock())
    def parent():
        child(len(calls))
        child(7)
        if len(calls) == 2:
            raise RuntimeError("once")
        return "ok"

    assert parent() == "ok"
    assert calls == [0, 7, 2]  # child(7) was reused; child(len(calls)) was not
