"""Function flows: `@flow` / `@task` called as plain Python (seed 004).

1. Every cell of seed 004 (the Prefect 2 intro notebook), translated, against a
   JSON server on 127.0.0.1 that stands in for time.jsontest.com and catfact.ninja.
2. The options of `@flow` and the rules of `engine/function_flow.py`: run names,
   parameter validation, retries on an injected clock, timeouts, executors, throttle,
   subflows, the DAG recorded from futures and values, mapping, `wait_for`, async
   flows (also inside a running event loop, as in Jupyter), and the final-state rule.
3. docs/function-flows.md: every ```python block runs; examples/functions.py runs as a
   script and prints what the notebook shows.

Tests that block (timeouts, concurrency) wait on `threading.Event`s with a backstop,
so a broken engine fails the test instead of hanging it; retry waits use ManualClock.
Log lines themselves are checked in test_function_logs.py.
"""

from __future__ import annotations

import ast
import asyncio
import datetime
import gc
import inspect
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from headrace import context, flatten, flow, task, triggers, unmapped
from headrace.engine import logs
from headrace.engine.clock import ManualClock
from headrace.engine.function_flow import FunctionRun, FutureList, TaskFuture, TaskRunRecord
from headrace.errors import MappingError, ParameterError
from headrace.executors import LocalExecutor, ProcessExecutor, ThreadExecutor
from headrace.functions import FunctionFlow
from headrace.signals import SKIP
from headrace.states import State, StateType
from headrace.tasks import Task
from markdown_blocks import python_blocks

# The seed's web APIs are stood in for by the example's local server, shared with it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.functions import FACT, http_get, start_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS_PAGE = ROOT / "docs" / "function-flows.md"
EXAMPLE = ROOT / "examples" / "functions.py"

# Blocked work gives up after this long, so a broken engine fails a test instead of hanging.
BACKSTOP = 10.0
SLUG = re.compile(r"[a-z]+-[a-z]+")


@pytest.fixture(scope="module")
def api():
    """Base URL of the local JSON server."""
    server, base = start_server()  # the example's stand-in for the notebook's web APIs
    yield base
    server.shutdown()
    server.server_close()


@pytest.fixture
def console():
    """headrace's console handler at INFO, whatever earlier tests or the environment set."""
    logs.configure()
    level = logs.ROOT.level
    logs.ROOT.setLevel("INFO")
    yield
    logs.ROOT.setLevel(level)


@task
def add_one(x):
    return x + 1


@task
def add(x, y):
    return x + y


@task
def make_list():
    return [1, 2, 3]


@task
def total(xs):
    return sum(xs)


def records_of(fn: FunctionFlow) -> dict[str, TaskRunRecord]:
    """The latest run's records by name."""
    return {r.name: r for r in fn.last_run.records}


# == 1. seed 004, cell by cell ============================================================


def test_in2_version_command():
    """In [2]: `!prefect version` is `headrace version`, with the database it reports."""
    from click.testing import CliRunner

    from headrace.cli import main

    result = CliRunner().invoke(main, ["version"])
    assert result.exit_code == 0, result.output
    for key in ("Version:", "Schema version:", "Python version:", "OS/Arch:", "Database:"):
        assert key in result.output
    assert "sqlite" in result.output and "SQLite version:" in result.output


def test_in3_a_task_called_in_a_flow_returns_its_value():
    seen = []

    @flow
    def my_flow():
        result = add_one(1)  # return int
        seen.append(result)

    assert my_flow() is None
    assert seen == [2] and type(seen[0]) is int
    (record,) = my_flow.last_run.records
    assert (record.name, record.task_name, record.kind) == ("add_one-0", "add_one", "task")
    assert record.state.is_successful() and record.state.result() == 2


def test_in4_to_6_return_state_gives_the_state_and_result_the_value():
    @flow
    def my_add_one_flow():
        state = add_one(1, return_state=True)  # return State
        return state

    # In [5]: Prefect 2.1's flow call returned the State; headrace's takes return_state=True.
    # The flow adopts the State it returns, so In [6]'s `state.result()` is 2.
    state = my_add_one_flow(return_state=True)
    assert isinstance(state, State)
    assert (state.type, state.name) == (StateType.COMPLETED, "Completed")
    assert state.result() == 2
    assert my_add_one_flow() == 2
    assert my_add_one_flow.name == "my-add-one-flow"
    assert SLUG.fullmatch(my_add_one_flow.last_run.name)


def test_in7_to_10_a_flow_returning_a_subflow_state(capsys):
    @flow
    def my_favorite_function():
        print("This function doesn't do much")
        return 42

    @flow
    def my_favorite_function_flow():
        return my_favorite_function(return_state=True)

    state = my_favorite_function_flow(return_state=True)  # In [8]
    assert capsys.readouterr().out == "This function doesn't do much\n"
    # In [9]: Prefect 2.1 shows Completed(message=None, type=COMPLETED, result=42). The
    # state is the subflow's, a run that started no task: it has no message either.
    assert repr(state) == "Completed(message=None, result=42)"
    assert state.result() == 42  # In [10]
    parent, child = my_favorite_function_flow.last_run, my_favorite_function.last_run
    assert parent.state.result() == 42 and parent.state is not child.state
    assert child.parent is parent
    assert [(r.kind, r.name, r.task_name) for r in parent.records] == [
        ("flow", child.name, "my-favorite-function")
    ]


def test_in11_to_15_a_flow_with_a_parameter_calls_the_time_api(api):
    @task
    def call_api(url):
        return http_get(url).json()

    @flow
    def api_flow(url):
        return call_api(url, return_state=True)

    state = api_flow(f"{api}/time", return_state=True)  # In [13]
    result = state.result()  # In [14]
    assert set(result) == {"date", "milliseconds_since_epoch", "time"}
    assert isinstance(result["milliseconds_since_epoch"], int)
    assert re.fullmatch(r"\d\d-\d\d-\d{4}", result["date"])
    # In [15]: the state shows its result.
    assert repr(state).startswith("Completed(message='Task run succeeded.', result={'date': ")
    assert api_flow.name == "api-flow"
    assert api_flow.last_run.ctx.parameters == {"url": f"{api}/time"}


def test_in16_and_19_a_bad_url_raises_or_gives_a_failed_state(api, console, capsys):
    raised = []

    @task
    def call_api(url):
        try:
            return http_get(url).json()
        except ValueError as exc:
            raised.append(exc)
            raise

    @flow
    def api_flow(url):
        return call_api(url, return_state=True)

    # In [16] without return_state: the task's exception reaches the caller.
    with pytest.raises(ValueError, match="unknown url type: 'foo'") as info:
        api_flow("foo")
    assert info.value is raised[0]
    capsys.readouterr()

    state_bad = api_flow("foo", return_state=True)  # never raises
    # In [19]: the variable exists (the seed's NameError came from the raising cell).
    assert state_bad.is_failed() and state_bad.name == "Failed"
    assert state_bad.exception is raised[1]
    assert "ValueError: unknown url type: 'foo'" in state_bad.message
    assert state_bad.result(raise_on_failure=False) is raised[1]
    err = capsys.readouterr().err
    assert err.count("Traceback (most recent call last)") == 1, err
    assert err.count("Encountered exception during execution") == 1, err
    assert "ValueError: unknown url type: 'foo'\n" in err


def test_in20_21_a_named_task_in_a_named_flow(api, capsys):
    @task(name="cat-url")
    def call_api(url):
        response = http_get(url)
        print(f"Response: {response.status_code}")
        return response.json()

    @flow(name="cat")
    def api_flow(url):
        fact_json = call_api(url)
        assert fact_json["fact"] == FACT
        return

    state = api_flow(f"{api}/fact")
    assert state is None
    assert capsys.readouterr().out == "Response: 200\n"
    assert api_flow.name == "cat"
    assert [r.name for r in api_flow.last_run.records] == ["cat-url-0"]
    assert api_flow.last_run.state.name == "Completed"


def test_in22_to_24_tasks_pass_results_to_tasks(api, capsys):
    @task(name="t-example3-1")
    def call_api(url):
        response = http_get(url)
        print(response.status_code)
        return response.json()

    @task(name="t-example3-2")
    def parse_fact(response):
        print(response["fact"])
        return

    @flow(name="f-example3")
    def api_flow(url):
        fact_json = call_api(url)
        parse_fact(fact_json)
        return

    state = api_flow(f"{api}/fact")
    assert capsys.readouterr().out == f"200\n{FACT}\n"
    # In [24]: Prefect 2.1 printed the list of task states; a headrace flow that returns
    # None returns None, and the task runs are in the run's records.
    assert state is None
    runs = records_of(api_flow)
    assert list(runs) == ["t-example3-1-0", "t-example3-2-0"]
    assert [r.state.name for r in runs.values()] == ["Completed", "Completed"]
    assert runs["t-example3-1-0"].state.result() == {"fact": FACT, "length": len(FACT)}
    # The dict passed from one task to the next makes an edge of the run's DAG.
    assert runs["t-example3-2-0"].upstream == [runs["t-example3-1-0"].id]


def test_in25_26_a_flow_within_a_flow(capsys):
    @flow
    def common_flow(config: dict):
        print("I am a subgraph that shows up in lots of places!")
        intermediate_result = 42
        return intermediate_result

    data_seen = []

    @flow
    def main_flow():
        # do some things
        # then call another flow function
        data = common_flow(config={})
        data_seen.append(data)
        # do more things

    flow_state = main_flow()
    assert flow_state is None
    assert data_seen == [42]
    assert capsys.readouterr().out == "I am a subgraph that shows up in lots of places!\n"
    parent, child = main_flow.last_run, common_flow.last_run
    assert child.parent is parent and parent.parent is None
    assert child.id != parent.id and SLUG.fullmatch(child.name) and child.name != parent.name
    (record,) = parent.records
    assert (record.kind, record.id, record.task_name) == ("flow", child.id, "common-flow")
    assert record.state.result() == 42


def test_in29_30_async_flow_with_asyncio_run_and_in_a_running_loop(api, capsys):
    @task(name="async-url")
    async def call_api(url):
        response = http_get(url)
        print(response.status_code)
        return response.json()

    facts = []

    @flow(name="async-flow")
    async def async_flow(url):
        fact_json = await call_api(url)
        facts.append(fact_json["fact"])
        return

    # In [30] in a script: asyncio.run works.
    assert asyncio.run(async_flow(f"{api}/fact")) is None
    assert facts == [FACT]
    assert capsys.readouterr().out == "200\n"
    assert [r.name for r in async_flow.last_run.records] == ["async-url-0"]

    # In [30] under Jupyter, where a loop is already running: asyncio.run refuses (that is
    # Python's rule, the seed's RuntimeError), and awaiting the flow works.
    async def notebook_cell():
        coroutine = async_flow(f"{api}/fact")
        with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
            asyncio.run(coroutine)
        coroutine.close()
        return await async_flow(f"{api}/fact")

    assert asyncio.run(notebook_cell()) is None
    assert facts == [FACT, FACT]


# == 2. the @flow options ====================================================================


def test_flow_name_defaults_to_the_function_name_with_dashes():
    @flow
    def my_add_one_flow():
        return 1

    assert my_add_one_flow.name == "my-add-one-flow"
    assert flow(name="given")(lambda: 1).name == "given"
    assert isinstance(my_add_one_flow, FunctionFlow)
    assert my_add_one_flow.__name__ == "my_add_one_flow"  # functools.update_wrapper


def test_default_run_names_are_fresh_two_word_slugs():
    @flow
    def named():
        return context.flow_run_name

    names = {named() for _ in range(30)}
    assert all(SLUG.fullmatch(n) for n in names)
    assert len(names) > 1


def test_flow_run_name_template_uses_the_parameters():
    @flow(flow_run_name="double-{n}")
    def double(n: int):
        return context.flow_run_name

    assert double(5) == "double-5"
    assert double.last_run.name == "double-5"


def test_flow_run_name_callable():
    calls = []

    def namer():
        calls.append(1)
        return f"call-{len(calls)}"

    @flow(flow_run_name=namer)
    def named():
        return context.flow_run_name

    assert named() == "call-1"
    assert named() == "call-2"


def test_flow_run_name_template_naming_no_parameter_is_a_clear_error():
    @flow(flow_run_name="run-{missing}")
    def named(n):
        return n

    with pytest.raises(ParameterError, match=r"names 'missing'.*its parameters are: n"):
        named(1)


def test_description_comes_from_the_docstring_unless_given():
    @flow
    def documented():
        """Adds things up.

        More detail.
        """

    assert documented.description == "Adds things up.\n\nMore detail."
    assert flow(description="given")(documented.fn).description == "given"

    @flow
    def bare():
        pass

    assert bare.description is None


def test_parameters_are_coerced_by_their_annotations():
    @flow
    def typed(n: int, ratio: float = 0.5, label="x"):
        return n, ratio, label

    assert typed("5") == (5, 0.5, "x")
    assert typed(n="7", ratio="1.5") == (7, 1.5, "x")
    assert typed.last_run.ctx.parameters == {"n": 7, "ratio": 1.5, "label": "x"}


def test_an_invalid_parameter_is_a_clear_error_before_anything_runs():
    ran = []

    @flow
    def typed(n: int):
        ran.append(n)

    with pytest.raises(ParameterError) as info:
        typed("five")
    message = str(info.value)
    assert "Flow 'typed' got invalid parameters: n='five'" in message
    assert "validate_parameters=False" in message
    assert ran == []


def test_validate_parameters_false_passes_values_as_given():
    @flow(validate_parameters=False)
    def untyped(n: int):
        return n

    assert untyped("5") == "5"


def test_a_call_that_does_not_fit_the_signature_names_the_flow():
    @flow
    def one(n):
        return n

    with pytest.raises(ParameterError, match=r"Flow 'one' cannot be called that way.*one\(n\)"):
        one(1, 2)


def test_flow_retries_wait_on_the_injected_clock():
    clock = ManualClock()
    attempts = []

    @flow(retries=2, retry_delay=[3, 7], clock=clock)
    def flaky():
        attempts.append(add_one(len(attempts)))
        if len(attempts) < 3:
            raise RuntimeError(f"attempt {len(attempts)}")
        return "ok"

    assert flaky() == "ok"
    assert attempts == [1, 2, 3]
    assert clock.sleeps == [3.0, 7.0]
    # The run's records are those of the attempt that finished. Names and keys restart
    # with each attempt; a call with other arguments than last time runs again.
    assert [r.name for r in flaky.last_run.records] == ["add_one-0"]
    assert flaky.last_run.records[0].state.result() == 3


def test_flow_retries_exhausted_end_failed_with_the_last_error():
    clock = ManualClock()
    attempts = []

    @flow(retries=1, retry_delay=datetime.timedelta(seconds=2), clock=clock)
    def always():
        attempts.append(1)
        raise RuntimeError(f"attempt {len(attempts)}")

    state = always(return_state=True)
    assert state.is_failed() and str(state.exception) == "attempt 2"
    assert clock.sleeps == [2.0]
    with pytest.raises(RuntimeError, match="attempt 4"):
        always()


def test_task_retries_inside_a_flow_wait_on_the_flows_clock():
    attempts = []

    @task(retries=2, retry_delay=5)
    def shaky():
        attempts.append(context.task_run_count)
        if len(attempts) % 3:
            raise ValueError("not yet")
        return "done"

    clock = ManualClock()

    @flow(clock=clock)
    def direct():
        return shaky()

    assert direct() == "done" and attempts == [1, 2, 3] and clock.sleeps == [5.0, 5.0]

    attempts.clear()
    clock = ManualClock()

    @flow(clock=clock)
    def submitted():
        return shaky.submit().result()

    assert submitted() == "done" and attempts == [1, 2, 3] and clock.sleeps == [5.0, 5.0]


def test_a_flow_past_its_timeout_ends_timed_out():
    never_set = threading.Event()
    started = threading.Event()

    @flow(timeout=0.2)
    def stuck():
        started.set()
        never_set.wait(BACKSTOP)
        return "never"

    try:
        state = stuck(return_state=True)
        assert started.is_set()
        assert (state.name, state.type) == ("TimedOut", StateType.FAILED)
        assert "timeout of 0.2 s" in state.message
        with pytest.raises(TimeoutError):
            stuck()
    finally:
        never_set.set()  # the abandoned bodies finish in the background


def test_a_flow_timeout_does_not_wait_for_its_submitted_runs():
    release = threading.Event()

    @task
    def blocked():
        return release.wait(BACKSTOP)

    @flow(timeout=0.2)
    def stuck():
        return blocked.submit().result()

    box = {}
    caller = threading.Thread(target=lambda: box.update(state=stuck(return_state=True)))
    caller.start()
    try:
        caller.join(2.0)  # ten times the timeout
        assert not caller.is_alive(), "the flow call is still waiting for its submitted run"
        assert box["state"].name == "TimedOut"
    finally:
        release.set()
        caller.join(BACKSTOP)


def test_a_flow_within_its_timeout_completes():
    @flow(timeout=datetime.timedelta(seconds=BACKSTOP))
    def quick():
        return add_one(1)

    assert quick() == 2


def test_with_options_makes_a_changed_copy():
    @flow(retries=1, description="original")
    def base(x):
        return x

    renamed = base.with_options(name="renamed", timeout=5)
    assert (renamed.name, renamed.timeout, renamed.retries) == ("renamed", 5, 1)
    assert renamed.description == "original" and renamed(3) == 3
    assert (base.name, base.timeout) == ("base", None)


def test_with_options_keeps_the_retry_delay():
    clock = ManualClock()
    attempts = []

    @flow(retries=1, retry_delay=4, clock=clock)
    def flaky():
        attempts.append(1)
        if len(attempts) < 2:
            raise RuntimeError("first attempt")
        return "ok"

    assert flaky.with_options(name="other")() == "ok"
    assert clock.sleeps == [4.0]


def test_bad_options_are_refused_when_the_flow_is_made():
    with pytest.raises(ValueError, match="retries"):
        flow(retries=-1)(lambda: 1)
    with pytest.raises(ValueError, match="timeout"):
        flow(timeout=0)(lambda: 1)
    with pytest.raises(TypeError, match="@flow needs a function"):
        FunctionFlow(42)


@pytest.mark.parametrize(
    ("make_executor", "in_process"),
    [
        (lambda: ThreadExecutor(max_workers=2), True),
        (lambda: ProcessExecutor(max_workers=2), False),
    ],
    ids=["threads", "processes"],
)
def test_the_executor_option_runs_submitted_and_mapped_tasks(make_executor, in_process):
    @task
    def where(x):
        return x * x, threading.get_ident(), os.getpid()

    @flow(executor=make_executor())
    def spread(xs):
        direct = where(0)
        return direct, where.map(xs).result()

    for _ in range(2):  # the flow starts and stops its executor on every call
        direct, mapped = spread([1, 2, 3])
        assert [m[0] for m in mapped] == [1, 4, 9]
        # A direct call runs in the flow's own thread; map children on the executor.
        assert direct[1:] == (threading.get_ident(), os.getpid())
        if in_process:
            assert all(m[1] != threading.get_ident() and m[2] == os.getpid() for m in mapped)
        else:
            assert all(m[2] != os.getpid() for m in mapped)


@pytest.mark.parametrize(("throttle", "alone"), [({"db": 1}, 1), ({}, 0)], ids=["1", "none"])
def test_throttle_caps_running_task_runs_per_tag(throttle, alone):
    started = [threading.Event(), threading.Event()]

    @task(tags=["db"])
    def pair(i):
        started[i].set()
        # True when the other one runs at the same time. Under a cap of 1 it cannot, so
        # the first gives up after a short wait; without the cap both see each other.
        return started[1 - i].wait(0.3 if throttle else BACKSTOP)

    @flow(executor=ThreadExecutor(max_workers=2), throttle=throttle)
    def both():
        return pair.map([0, 1]).result()

    assert both().count(False) == alone


# == 2b. subflows, the DAG, mapping, wait_for ==================================================


def test_a_subflow_has_its_own_run_linked_to_the_parents():
    @flow
    def child(x):
        return add_one(x)

    @flow
    def parent():
        a = add_one(1)
        return child(a)

    assert parent() == 3
    prun, crun = parent.last_run, child.last_run
    assert isinstance(prun, FunctionRun) and crun.parent is prun and prun.parent is None
    assert [(r.kind, r.name) for r in prun.records] == [("task", "add_one-0"), ("flow", crun.name)]
    flow_record = prun.records[1]
    assert flow_record.id == crun.id and flow_record.state.result() == 3
    assert flow_record.state is crun.state
    # Task-run names count per flow run: the child starts again at 0.
    assert [r.name for r in crun.records] == ["add_one-0"]


def test_a_failed_subflow_fails_its_parent_unless_return_state():
    @task
    def boom():
        raise ValueError("inner")

    @flow
    def child():
        boom()

    @flow
    def strict():
        try:
            child()
        except ValueError:
            pass

    @flow
    def lenient():
        return child(return_state=True).name

    state = strict(return_state=True)
    assert state.is_failed() and str(state.exception) == "inner"
    assert lenient() == "Failed"


def test_futures_passed_as_arguments_are_resolved_and_recorded_upstream():
    futures = {}

    @flow
    def chained():
        a = add_one.submit(1)
        b = add_one.submit(10)
        c = add.submit(a, b)  # futures as arguments of a submit
        d = add(c, 100)  # and of a direct call
        e = total.submit([a, b])  # inside a list
        futures.update(a=a, b=b, c=c, e=e)
        return d, e.result()

    assert chained() == (113, 13)
    runs = records_of(chained)
    a, b, c = (futures[k].record.id for k in "abc")
    assert runs["add-0"].upstream == [a, b]
    assert runs["add-1"].upstream == [c]
    assert runs["total-0"].upstream == [a, b]
    assert runs["add_one-0"].upstream == [] and runs["add_one-1"].upstream == []
    assert isinstance(futures["c"], TaskFuture) and futures["c"].state.result() == 13


def test_values_returned_by_a_task_are_recorded_upstream_by_identity():
    @flow
    def by_value():
        xs = make_list()
        total(xs)  # the very list make_list returned
        total(list(xs))  # an equal copy: not a product of any task run
        n = add_one(1)
        add_one(n)  # ints are shared by the interpreter: not tracked (documented)

    by_value()
    runs = records_of(by_value)
    assert runs["total-0"].upstream == [runs["make_list-0"].id]
    assert runs["total-1"].upstream == []
    assert runs["add_one-1"].upstream == []


def test_values_read_from_a_future_are_recorded_upstream_by_identity():
    @flow
    def via_future():
        made = make_list.submit()
        total(made.result())
        state = make_list(return_state=True)
        total(state.result())
        return made.record.id

    made_id = via_future()
    runs = records_of(via_future)
    assert runs["total-0"].upstream == [made_id]
    assert runs["total-1"].upstream == [runs["make_list-1"].id]


def test_a_state_passed_as_an_argument_gives_its_result():
    @flow
    def via_state():
        state = add_one(1, return_state=True)
        return add_one(state)

    assert via_state() == 3


def test_map_over_a_list_with_unmapped():
    @flow
    def mapped():
        futures = add.map([1, 2, 3], y=unmapped(10))
        assert isinstance(futures, FutureList) and all(isinstance(f, TaskFuture) for f in futures)
        return futures.result(), [f.wait().name for f in futures]

    assert mapped() == ([11, 12, 13], ["Completed"] * 3)
    runs = mapped.last_run.records
    assert [(r.name, r.map_index) for r in runs] == [("add[0]", 0), ("add[1]", 1), ("add[2]", 2)]


def test_a_futures_list_is_a_sequence_that_makes_its_futures_as_they_are_read():
    @flow
    def mapped():
        futures = add.map(range(10_000), y=unmapped(1))
        made = sum(isinstance(o, TaskFuture) for o in gc.get_objects())
        assert made < 10  # a million-item map holds no million futures either
        assert len(futures) == 10_000 and futures[-1].name == "add[9999]"
        assert [f.index for f in futures[2:5]] == [2, 3, 4] and futures[3] in futures
        with pytest.raises(IndexError, match="index 10000 out of range"):
            futures[10_000]
        with pytest.raises(TypeError):
            futures["1"]
        assert futures == futures and futures != list(futures)
        assert [f.name for f in futures[:1] + futures[9_999:]] == ["add[0]", "add[9999]"]
        return total(futures), futures[7].result(), futures.result()[:3]

    assert mapped() == (sum(range(1, 10_001)), 8, [1, 2, 3])


def test_map_over_a_futures_list_result():
    @flow
    def mapped():
        return add.map(make_list.submit(), y=unmapped(1)).result()

    assert mapped() == [2, 3, 4]


def test_map_with_an_unmapped_future_records_it_upstream_of_every_child():
    @flow
    def mapped():
        ten = add_one.submit(9)
        return add.map([1, 2], y=unmapped(ten)).result(), ten.record.id

    values, ten_id = mapped()
    assert values == [11, 12]
    children = [r for r in mapped.last_run.records if r.map_index is not None]
    assert [r.upstream for r in children] == [[ten_id], [ten_id]]


def test_map_children_record_the_run_that_made_their_items():
    @flow
    def mapped():
        made = make_list.submit()
        add.map(made, y=unmapped(1)).result()
        xs = make_list()
        add.map(xs, y=unmapped(2)).result()
        return made.record.id

    made_id = mapped()
    records = mapped.last_run.records
    direct_id = next(r.id for r in records if r.name == "make_list-1")
    children = [r.upstream for r in records if r.map_index is not None]
    assert children == [[made_id]] * 3 + [[direct_id]] * 3


def test_map_over_a_list_of_futures_is_element_wise():
    @flow
    def mapped():
        futures = [add_one.submit(i) for i in range(3)]
        return add_one.map(futures).result(), [f.record.id for f in futures]

    values, ids = mapped()
    assert values == [2, 3, 4]
    children = [r for r in mapped.last_run.records if r.map_index is not None]
    assert [r.upstream for r in children] == [[i] for i in ids]


def test_map_with_wait_for_waits_in_every_child():
    order = []
    gate = threading.Event()

    @task
    def first():
        gate.wait(BACKSTOP)
        order.append("first")

    @task
    def child(x):
        order.append(x)

    @flow(executor=ThreadExecutor(max_workers=4))
    def mapped():
        done = first.submit()
        children = child.map([1, 2], wait_for=[done])
        gate.set()
        children.result()
        return done.record.id

    first_id = mapped()
    assert order[0] == "first" and sorted(order[1:]) == [1, 2]
    children = [r for r in mapped.last_run.records if r.map_index is not None]
    assert [r.upstream for r in children] == [[first_id], [first_id]]


def test_map_over_a_flatten_in_a_flow():
    assert add_one.map(flatten([[1], [2, 3]])) == [2, 3, 4]  # outside a flow: works

    @flow
    def flat():
        return add_one.map(flatten([[1], [2, 3]])).result()

    assert flat() == [2, 3, 4]


def test_flatten_in_a_flow_passes_loose_items_through_and_warns_for_a_tasks_result(caplog):
    @task
    def nested():
        return [[1], 2]

    @flow
    def flat():
        return add_one.map(flatten(nested.submit())).result()

    with caplog.at_level("WARNING"):
        assert flat() == [2, 3]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "flatten(x): 1 item(s) were not lists and passed through as single items."
    ]


def test_map_with_upstream_tasks_in_a_flow_is_refused():
    @flow
    def mapped():
        first = add_one.submit(1)
        return add_one.map([1, 2], upstream_tasks=[first]).result()

    with pytest.raises(TypeError, match="wait_for"):
        mapped()


def test_futures_inside_a_dict_are_resolved():
    @task
    def keys_and_values(d):
        return d

    @flow
    def nested():
        one = add_one.submit(0)
        return keys_and_values({"one": one})

    assert nested() == {"one": 1}


def test_an_empty_map_has_no_children_and_a_reduce_gets_an_empty_list():
    @flow
    def empty():
        futures = add.map([], y=unmapped(1))
        return futures.result(), total(futures.result())

    assert empty() == ([], 0)
    assert [r.name for r in empty.last_run.records] == ["total-0"]


def test_unequal_map_lengths_are_an_error_naming_the_inputs():
    @flow
    def uneven():
        return add.map([1, 2], [1, 2, 3])

    with pytest.raises(MappingError, match=r"unequal lengths: x=2, y=3"):
        uneven()
    state = uneven(return_state=True)
    assert state.is_failed() and isinstance(state.exception, MappingError)
    assert uneven.last_run.records == []  # refused before any child was made


def test_mapping_over_a_string_is_refused():
    @flow
    def chars():
        return add_one.map("abc")

    with pytest.raises(MappingError, match="unmapped"):
        chars()


def test_wait_for_orders_runs_that_share_no_data():
    order = []
    gate = threading.Event()

    @task
    def first():
        gate.wait(BACKSTOP)
        order.append("first")

    @task
    def second():
        order.append("second")

    @task
    def third():
        order.append("third")

    ids = {}

    @flow(executor=ThreadExecutor(max_workers=4))
    def ordered():
        a = first.submit()
        b = second.submit(wait_for=[a])
        # `second` may not start while `first` is blocked: it has not run yet.
        assert not b.done() and order == []
        gate.set()
        third(wait_for=[b])  # a direct call waits too
        ids.update(a=a.record.id, b=b.record.id)

    ordered()
    assert order == ["first", "second", "third"]
    runs = records_of(ordered)
    assert runs["second-0"].upstream == [ids["a"]]
    assert runs["third-0"].upstream == [ids["b"]]


def test_wait_for_on_a_failed_run_stops_the_waiter():
    ran = []

    @task
    def boom():
        raise ValueError("no")

    @task
    def after():
        ran.append(1)

    @flow
    def blocked():
        f = boom.submit()
        return after.submit(wait_for=[f]).wait()

    state = blocked(return_state=True)
    assert state.is_failed() and ran == []
    assert records_of(blocked)["after-0"].state.name == "TriggerFailed"


def test_a_task_called_outside_any_flow_is_a_plain_call(console, capsys):
    assert add_one(1) == 2
    assert add.map([1, 2], y=unmapped(10)) == [11, 12]
    assert capsys.readouterr().err == ""  # no run, no run logs


def test_task_fn_is_the_raw_function():
    def raw(x):
        return x * 3

    tripled = task(raw)
    assert tripled.fn is raw
    assert not isinstance(add_one.fn, Task) and add_one.fn(1) == 2

    @flow
    def uses_fn():
        return tripled.fn(2)  # a plain call: no task run

    assert uses_fn() == 6
    assert uses_fn.last_run.records == []


def test_submit_outside_a_flow_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r"add_one.submit\(\) runs a task inside a @flow"):
        add_one.submit(1)


def test_reserved_parameter_names_are_refused_at_definition():
    from headrace.errors import ReservedArgumentError

    def takes_wait_for(x, wait_for=None):
        return x

    with pytest.raises(ReservedArgumentError, match="'wait_for', which is reserved"):
        task(takes_wait_for)
    with pytest.raises(ReservedArgumentError, match="'wait_for', which is reserved"):
        add_one.with_options(fn=takes_wait_for)
    for name in ("return_state", "wait_for"):
        namespace: dict = {}
        exec(f"def body(x, {name}=None):\n    return x", namespace)
        with pytest.raises(ReservedArgumentError, match=f"'{name}', which is reserved"):
            flow(namespace["body"])


# == 2c. async flows ===========================================================================


@task
def sync_inc(x):
    return x + 1


@task
async def async_inc(x):
    await asyncio.sleep(0)
    return x + 10


def test_an_async_flow_awaits_sync_and_async_tasks():
    @flow
    async def mixed(x):
        a = await sync_inc(x)
        b = await async_inc(a)
        state = await sync_inc(b, return_state=True)
        c = await async_inc.submit(state.result())
        return c

    assert asyncio.run(mixed(1)) == 23
    names = [r.name for r in mixed.last_run.records]
    assert names == ["sync_inc-0", "async_inc-0", "sync_inc-1", "async_inc-1"]
    assert mixed.is_async


def test_an_async_flow_awaited_inside_a_running_loop():
    # Jupyter runs cells inside an event loop: `await flow(...)` must work there.
    @flow
    async def notebook(x):
        return await sync_inc(x)

    @flow
    async def with_subflow():
        return await notebook(1) + 100

    async def main():
        first = await notebook(1)
        second = await with_subflow()
        return first, second

    assert asyncio.run(main()) == (2, 102)
    assert notebook.last_run.parent is with_subflow.last_run


def test_a_blocking_sync_task_does_not_block_the_event_loop():
    released = threading.Event()

    @task
    def waits_for_release():
        return released.wait(BACKSTOP)

    @task
    async def releases():
        await asyncio.sleep(0)
        released.set()
        return "released"

    @flow
    async def together():
        return await asyncio.gather(waits_for_release(), releases())

    assert asyncio.run(together()) == [True, "released"]


def test_the_flow_body_keeps_running_while_a_sync_task_blocks():
    # The setter is a plain coroutine of the flow's own loop: it can only run if the
    # sync task's wait happens off the loop.
    released = threading.Event()

    @task
    def waits_for_release():
        return released.wait(BACKSTOP)

    @flow
    async def together():
        async def release():
            await asyncio.sleep(0)
            released.set()
            return "released"

        return await asyncio.gather(waits_for_release(), release())

    assert asyncio.run(together()) == [True, "released"]


def test_an_async_flow_fails_like_a_sync_one():
    @task
    async def boom():
        raise ValueError("async boom")

    @flow
    async def failing():
        await boom()

    @flow
    async def lenient():
        return (await boom(return_state=True)).name

    state = asyncio.run(failing(return_state=True))
    assert state.is_failed() and str(state.exception) == "async boom"
    with pytest.raises(ValueError, match="async boom"):
        asyncio.run(failing())
    assert asyncio.run(lenient()) == "Failed"


def test_an_async_flow_past_its_timeout_ends_timed_out():
    @flow(timeout=0.2)
    async def stuck():
        await asyncio.Event().wait()  # never set: only the timeout ends it

    state = asyncio.run(stuck(return_state=True))
    assert (state.name, state.type) == ("TimedOut", StateType.FAILED)


def test_an_async_flow_retries_on_the_injected_clock():
    clock = ManualClock()
    attempts = []

    @flow(retries=2, retry_delay=3, clock=clock)
    async def flaky():
        attempts.append(await sync_inc(len(attempts)))
        if len(attempts) < 3:
            raise RuntimeError("again")
        return attempts

    assert asyncio.run(flaky()) == [1, 2, 3]
    assert clock.sleeps == [3.0, 3.0]


def test_async_flow_parameters_are_validated():
    @flow
    async def typed(n: int):
        return n

    assert asyncio.run(typed("7")) == 7


def test_await_a_map_in_an_async_flow():
    @flow
    async def mapped():
        return await sync_inc.map([1, 2])

    assert asyncio.run(mapped()) == [2, 3]


def test_an_async_flow_with_var_positional_parameters():
    @flow
    async def summed(*xs):
        return sum(xs)

    assert asyncio.run(summed(1, 2)) == 3


def test_a_sync_flow_with_var_positional_parameters():
    @flow
    def summed(*xs, scale=1):
        return sum(xs) * scale

    assert summed(1, 2, scale=2) == 6


# == 2d. the final-state rule ==================================================================


@task
def boom():
    raise ValueError("boom")


def test_a_failed_flow_names_the_task_runs_that_failed_first():
    @task
    def maybe_fail(x):
        if x == 3:
            raise ValueError("three is bad")
        return x

    @task
    def total(xs):
        return sum(xs)

    @flow
    def mapped():
        total.submit(maybe_fail.map([1, 2, 3, 4]))

    assert mapped(return_state=True).message == (
        "1 task run failed: 'maybe_fail[2]' (ValueError: three is bad); "
        "downstream: 'total-0' TriggerFailed."
    )


def test_a_failed_task_fails_the_flow_even_if_the_body_caught_it():
    @flow
    def catches():
        try:
            boom()
        except ValueError:
            pass
        return "carried on"

    state = catches(return_state=True)
    assert state.is_failed() and state.message == "1 task run failed: 'boom-0' (ValueError: boom)."
    assert isinstance(state.exception, ValueError) and str(state.exception) == "boom"
    with pytest.raises(ValueError, match="boom"):
        catches()


def test_a_failed_task_asked_for_with_return_state_is_allowed():
    @flow
    def inspects():
        return boom(return_state=True).name

    state = inspects(return_state=True)
    assert (state.name, state.message, state.result()) == (
        "Completed",
        "All states completed.",
        "Failed",
    )


def test_a_failed_task_consumed_by_an_all_finished_trigger_is_allowed():
    @task(trigger=triggers.all_finished)
    def cleanup(upstream):
        return f"cleaned up after {upstream!r}"

    @flow
    def direct():
        return cleanup(boom.submit())

    @flow
    def submitted():
        return cleanup.submit(boom.submit()).result()

    for fn in (direct, submitted):
        assert fn() == "cleaned up after ValueError('boom')"
        assert [r.state.name for r in fn.last_run.records] == ["Failed", "Completed"]


def test_a_failed_task_consumed_by_the_default_trigger_fails_the_flow():
    @flow
    def consumes():
        return add_one(boom.submit(), return_state=True).name

    state = consumes(return_state=True)
    assert state.is_failed()
    assert [r.state.name for r in consumes.last_run.records] == ["Failed", "TriggerFailed"]


def test_a_future_read_with_raise_on_failure_false_is_allowed():
    @flow
    def reads():
        return repr(boom.submit().result(raise_on_failure=False))

    assert reads() == "ValueError('boom')"


def test_a_failed_submitted_task_nobody_reads_fails_the_flow():
    @flow
    def fire_and_forget():
        boom.submit()
        return "done"

    state = fire_and_forget(return_state=True)
    assert state.is_failed() and str(state.exception) == "boom"


def test_a_flow_returning_a_failed_state_is_failed():
    @flow
    def returns_failure():
        return boom(return_state=True)

    state = returns_failure(return_state=True)
    assert state.is_failed() and str(state.exception) == "boom"


def test_a_flow_returning_a_state_adopts_it_as_its_own():
    # Seed 004, In [4] to [6]: `state.result()` of the flow is the task's result, 2.
    @flow
    def my_add_one_flow():
        return add_one(1, return_state=True)

    assert my_add_one_flow() == 2
    state = my_add_one_flow(return_state=True)
    assert state.is_successful() and state.result() == 2
    (record,) = my_add_one_flow.last_run.records
    assert state is not record.state  # the flow's own state, with the task's outcome


def test_a_flow_returning_a_failed_state_ends_in_that_state_and_raises_its_error():
    @task(timeout=0.01)
    def slow():
        threading.Event().wait(BACKSTOP)

    @flow
    def returns_timeout():
        return slow(return_state=True)

    state = returns_timeout(return_state=True)
    assert state.is_failed() and state.name == "TimedOut"
    with pytest.raises(Exception) as info:
        returns_timeout()
    assert info.value is returns_timeout.last_run.records[0].state.exception


def test_a_flow_returning_a_successful_state_still_fails_for_an_unaccepted_failure():
    @flow
    def hides_a_failure():
        boom.submit()
        return add_one(1, return_state=True)

    state = hides_a_failure(return_state=True)
    assert state.is_failed() and str(state.exception) == "boom"


def test_a_flow_returning_none_returns_none():
    # Prefect 2.1 returned the list of task states here (seed 004, In [24]).
    @flow
    def nothing():
        add_one(1)

    assert nothing() is None
    state = nothing(return_state=True)
    assert state.is_successful() and state.result() is None


def test_a_flow_returning_a_future_or_futures_returns_their_results():
    @flow
    def one():
        return add_one.submit(1)

    @flow
    def many():
        return add_one.map([1, 2])

    assert one() == 2
    assert many() == [2, 3]


# == 3. the docs page and the example ==========================================================


DOC_BLOCKS = python_blocks(DOCS_PAGE.read_text()) if DOCS_PAGE.exists() else []


def test_the_docs_page_has_examples():
    assert len(DOC_BLOCKS) >= 10


@pytest.mark.parametrize(
    "code", [pytest.param(code, id=f"L{line}-{heading}") for heading, line, code in DOC_BLOCKS]
)
def test_docs_page_example_runs(code, console):
    # A fresh namespace per block, as a reader pastes it. Top-level `await` is allowed, as
    # in a notebook; such a block runs inside an event loop like a Jupyter cell.
    namespace = {"__name__": "function_flows_example"}
    compiled = compile(code, str(DOCS_PAGE), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if compiled.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(compiled, namespace))
    else:
        exec(compiled, namespace)


def test_docs_page_examples_check_something():
    silent = [line for _, line, code in DOC_BLOCKS if "assert" not in code]
    assert not silent, f"function-flows.md blocks without assertions start at lines {silent}"


def test_the_example_script_prints_what_the_notebook_shows():
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HEADRACE_LOGGING_LEVEL": "INFO"},
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    expected = [
        "In [2]:\nVersion:           ",
        "In [5]:\nCompleted(message='Task run succeeded.', result=2)\n",
        "In [6]:\n2\n",
        "In [8]:\nThis function doesn't do much\n",
        "In [9]:\nCompleted(message=None, result=42)\n",
        "In [10]:\n42\n",
        "In [16]:\napi_flow('foo') raised ValueError: unknown url type: 'foo'\n",
        'In [19]:\nFailed(message="Task run encountered an exception ValueError: unknown url '
        "type: 'foo'\")\nstate_bad.exception: ValueError(\"unknown url type: 'foo'\")\n",
        "In [21]:\nResponse: 200\n",
        "In [23]:\n200\nThe first cartoon cat was Felix the Cat in 1919.",
        "In [24]:\nNone\n[('t-example3-1-0', 'Completed'), ('t-example3-2-0', 'Completed')]\n",
        "In [26]:\nI am a subgraph that shows up in lots of places!\nNone\n"
        "subflow of 'main-flow': True\n",
        "In [30]:\n200\nNone\n200\nNone\n",
    ]
    missing = [text for text in expected if text not in out]
    assert not missing, f"missing from the example's output: {missing}\n--- output:\n{out}"
    assert re.search(
        r"In \[14\]:\n\{'date': '\d\d-\d\d-\d{4}', 'milliseconds_since_epoch': \d+", out
    )
    err = done.stderr
    assert re.search(
        r"^\d\d:\d\d:\d\d\.\d{3} \| INFO    \| Flow run '[a-z]+-[a-z]+' - Created task run "
        r"'t-example3-2-0' for task 't-example3-2'$",
        err,
        re.M,
    )
    assert "Created subflow run" in err
    # Two calls with the bad URL (raising, then return_state): one traceback each.
    assert err.count("Traceback (most recent call last)") == 2


# == the core under function flows: several threads calling tasks ===============================


def test_an_async_flows_sync_task_calls_run_at_the_same_time():
    both = threading.Barrier(2, timeout=BACKSTOP)

    @task
    def meet(x):
        both.wait()  # breaks (raising) unless the other call runs meanwhile
        return x

    @flow
    async def gathered():
        return await asyncio.gather(meet(1), meet(2))

    assert asyncio.run(gathered()) == [1, 2]


def test_a_task_may_call_a_task_directly_or_from_a_worker():
    @task
    def inner(x):
        return x * 10

    @task
    def outer(x):
        return inner(x) + 1

    @flow(executor=ThreadExecutor(2))
    def nested():
        here = outer(1)  # inline, on the flow's thread
        there = outer.submit(2)  # on a worker, outside the run: `inner` is a plain call
        return here, there.result()

    assert nested() == (11, 21)
    names = sorted(r.name for r in nested.last_run.records)
    assert names == ["inner-0", "outer-0", "outer-1"]


def test_an_async_flows_inline_task_may_call_a_task():
    @task
    def inner(x):
        return x * 10

    @task
    def outer(x):
        return inner(x) + 1  # runs while its caller holds the core's turn

    @flow(executor=LocalExecutor())
    async def nested():
        return await outer.submit(1), await outer(2)

    assert asyncio.run(nested()) == (11, 21)
    assert sorted(r.name for r in nested.last_run.records) == [
        "inner-0", "inner-1", "outer-0", "outer-1",
    ]  # fmt: skip


def test_a_map_decided_as_a_whole_is_one_record():
    @task
    def skipper():
        raise SKIP("nothing to do")

    @flow
    def skipped_maps():
        gate = skipper.submit()
        first = add_one.map([1, 2], wait_for=[gate])
        add_one.map(first).wait()

    assert skipped_maps(return_state=True).is_successful()
    records = [(r.name, r.map_index, r.state.name) for r in skipped_maps.last_run.records]
    assert records == [
        ("skipper-0", None, "Skipped"), ("add_one", None, "Skipped"), ("add_one", None, "Skipped"),
    ]  # fmt: skip
