"""Signals a task raises to choose its own state: FAIL, SUCCESS, SKIP, RETRY, LOOP.

LOOP is headrace's form of seed 002 §3 ("dynamic tasks"): a task that runs
again with the result of its previous iteration, until it returns.
"""

import pytest

from headrace import Flow, Parameter, context, flow, task
from headrace.engine.clock import ManualClock
from headrace.executors import LocalExecutor, ThreadExecutor
from headrace.signals import FAIL, LOOP, RETRY, SKIP, SUCCESS

# -- shared helpers --------------------------------------------------------------

EXECUTORS = pytest.mark.parametrize(
    "make_executor",
    [LocalExecutor, lambda: ThreadExecutor(max_workers=4)],
    ids=["local", "threads"],
)


@task
def passthrough(x):
    return x


_iterations: dict = {}


@pytest.fixture(autouse=True)
def _fresh_iteration_counts():
    _iterations.clear()


def guard_runaway_loop(limit=1000):
    """Fail a looping task after `limit` calls, counted apart from the context, so a
    broken LOOP fails its test instead of hanging it."""
    key = (context.flow_run_id, context.task_run_name)
    _iterations[key] = _iterations.get(key, 0) + 1
    if _iterations[key] > limit:
        raise FAIL(f"loop ran away: {_iterations[key]} calls")


def run_one(t, *args, executor=None, clock=None, **kwargs):
    """Run a flow of `t(*args, **kwargs)` feeding `passthrough`; return (state, node, after).

    `node`'s result is kept (`return_tasks`) so tests can read it.
    """
    with Flow("signals") as flow:
        node = t(*args, **kwargs)
        after = passthrough(node)
    state = flow.run(executor=executor, clock=clock or ManualClock(), return_tasks=[node])
    return state, node, after


# -- FAIL ------------------------------------------------------------------------


def test_fail_gives_a_failed_state_with_the_message():
    reached = []

    @task
    def validate(row):
        if row < 0:
            raise FAIL(f"bad row {row}")
        reached.append(row)
        return row

    state, node, after = run_one(validate, -1)
    assert state[node].name == "Failed"
    assert state[node].message == "bad row -1"
    assert isinstance(state[node].exception, FAIL)
    with pytest.raises(FAIL, match="bad row -1"):
        state[node].result()
    assert reached == []
    assert state[after].name == "TriggerFailed"
    assert state.name == "Failed"


def test_fail_is_not_retried_past_retries():
    calls = []

    @task(retries=1, retry_delay=3)
    def always_fail():
        calls.append(context.task_run_count)
        raise FAIL("no")

    clock = ManualClock()
    state, node, _ = run_one(always_fail, clock=clock)
    assert state[node].name == "Failed"
    assert calls == [1, 2]
    assert clock.sleeps == [3.0]


# -- SUCCESS ---------------------------------------------------------------------------


def test_success_gives_completed_with_its_result():
    @task
    def early_exit():
        raise SUCCESS("done early", result={"rows": 3})

    state, node, after = run_one(early_exit)
    assert state[node].name == "Completed"
    assert state[node].is_successful()
    assert state[node].message == "done early"
    assert state[node].result() == {"rows": 3}
    assert state[after].result() == {"rows": 3}
    assert state.name == "Completed"


def test_success_without_result_gives_none():
    @task
    def nothing():
        raise SUCCESS()

    state, node, after = run_one(nothing)
    assert state[node].name == "Completed"
    assert state[after].result() is None


# -- SKIP --------------------------------------------------------------------------------


def test_skip_gives_skipped_and_skips_downstream():
    @task
    def maybe():
        raise SKIP("nothing new today")

    state, node, after = run_one(maybe)
    assert state[node].name == "Skipped"
    assert state[node].is_skipped()
    assert state[node].is_successful()
    assert state[node].message == "nothing new today"
    assert state[node].result() is None
    assert state[after].name == "Skipped"
    assert state.name == "Completed"


def test_skip_is_not_retried():
    calls = []

    @task(retries=3, retry_delay=1)
    def skipper():
        calls.append(1)
        raise SKIP()

    clock = ManualClock()
    state, node, _ = run_one(skipper, clock=clock)
    assert state[node].name == "Skipped"
    assert calls == [1]
    assert clock.sleeps == []


# -- RETRY -------------------------------------------------------------------------------


def test_retry_counts_against_retries_then_succeeds():
    counts = []

    @task(retries=2, retry_delay=4)
    def flaky():
        counts.append(context.task_run_count)
        if context.task_run_count < 3:
            raise RETRY("not yet")
        return "finally"

    clock = ManualClock()
    state, node, after = run_one(flaky, clock=clock)
    assert state[node].name == "Completed"
    assert state[after].result() == "finally"
    assert counts == [1, 2, 3]
    assert clock.sleeps == [4.0, 4.0]


def test_retry_past_retries_fails():
    counts = []

    @task(retries=1, retry_delay=2)
    def stubborn():
        counts.append(context.task_run_count)
        raise RETRY("again")

    clock = ManualClock()
    state, node, _ = run_one(stubborn, clock=clock)
    assert state[node].name == "Failed"
    assert state[node].message == "again"
    assert isinstance(state[node].exception, RETRY)
    assert counts == [1, 2]
    assert clock.sleeps == [2.0]


def test_retry_with_no_retries_fails_at_once():
    counts = []

    @task
    def once():
        counts.append(1)
        raise RETRY("please")

    clock = ManualClock()
    state, node, after = run_one(once, clock=clock)
    assert state[node].name == "Failed"
    assert counts == [1]
    assert clock.sleeps == []
    assert state[after].name == "TriggerFailed"


# -- LOOP ----------------------------------------------------------------------------------


@task
def fibonacci(n):
    """fib(n) by looping: the loop result carries the pair (fib(k-1), fib(k))."""
    guard_runaway_loop()
    k = context.task_loop_count
    a, b = context.task_loop_result or (0, 1)
    if k >= n:
        return a
    raise LOOP(message=f"fib step {k}", result=(b, a + b))


@EXECUTORS
@pytest.mark.parametrize("n, expected", [(1, 0), (2, 1), (10, 34), (30, 514229)])
def test_loop_computes_fibonacci(make_executor, n, expected):
    with Flow("fib") as flow:
        nth = Parameter("n")
        f = fibonacci(nth)
    state = flow.run(parameters={"n": n}, executor=make_executor())
    assert state[f].name == "Completed"
    assert state[f].result() == expected


def test_loop_reads_its_previous_result_and_count():
    seen = []

    @task
    def sum_until(bound):
        guard_runaway_loop()
        seen.append((context.task_loop_count, context.task_loop_result))
        total = (context.task_loop_result or 0) + context.task_loop_count
        if total < bound:
            raise LOOP(result=total)
        return total

    state, node, after = run_one(sum_until, 10)
    # 1, 1+2=3, 3+3=6, 6+4=10
    assert seen == [(1, None), (2, 1), (3, 3), (4, 6)]
    assert state[node].name == "Completed"
    assert state[node].result() == 10
    assert state[after].result() == 10


def test_loop_does_not_use_up_retries():
    counts = []

    @task  # retries=0: a LOOP is not a failure
    def ten_times():
        guard_runaway_loop()
        counts.append((context.task_loop_count, context.task_run_count))
        if context.task_loop_count < 10:
            raise LOOP(result=context.task_loop_count)
        return context.task_loop_result

    clock = ManualClock()
    state, node, _ = run_one(ten_times, clock=clock)
    assert state[node].result() == 9
    assert counts == [(k, 1) for k in range(1, 11)]
    assert clock.sleeps == []


def test_a_retry_resumes_the_loop_where_it_failed():
    seen = []

    @task(retries=1, retry_delay=5)
    def loop_with_hiccup():
        guard_runaway_loop()
        k, run = context.task_loop_count, context.task_run_count
        seen.append((k, run, context.task_loop_result))
        if k == 2 and run == 1:
            raise ConnectionError("hiccup")
        if k < 3:
            raise LOOP(result=(context.task_loop_result or 0) + k)
        return context.task_loop_result

    clock = ManualClock()
    state, node, _ = run_one(loop_with_hiccup, clock=clock)
    assert state[node].name == "Completed"
    assert state[node].result() == 3
    # The pass after the retry starts its attempts at 1 again, as in Prefect.
    assert seen == [(1, 1, None), (2, 1, 1), (2, 2, 1), (3, 1, 3)]
    assert clock.sleeps == [5.0]


def test_each_loop_pass_has_its_own_retries():
    seen = []

    @task(retries=1, retry_delay=[1, 7])
    def flaky_every_pass():
        guard_runaway_loop()
        k, run = context.task_loop_count, context.task_run_count
        seen.append((k, run))
        if run == 1:
            raise ConnectionError(f"hiccup in pass {k}")
        if k < 3:
            raise LOOP(result=k)
        return context.task_loop_result

    clock = ManualClock()
    state, node, _ = run_one(flaky_every_pass, clock=clock)
    assert state[node].result() == 2
    assert seen == [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]
    assert clock.sleeps == [1.0, 1.0, 1.0]  # the first retry's delay, once per pass

    @flow(clock=clock)
    def in_a_function_flow():
        return flaky_every_pass()

    seen.clear()
    assert in_a_function_flow() == 2
    assert seen == [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]
    assert clock.sleeps == [1.0] * 6


def test_loop_then_fail_gives_failed():
    @task
    def loop_then_fail():
        guard_runaway_loop()
        if context.task_loop_count < 3:
            raise LOOP(result=context.task_loop_count)
        raise FAIL(f"gave up after {context.task_loop_result}")

    state, node, _ = run_one(loop_then_fail)
    assert state[node].name == "Failed"
    assert state[node].message == "gave up after 2"


@EXECUTORS
def test_loop_inside_a_map_child_loops_only_that_child(make_executor):
    calls = []

    @task
    def count_up(bound):
        guard_runaway_loop()
        calls.append((context.map_index, context.task_loop_count))
        k = context.task_loop_count
        if k < bound:
            raise LOOP(result=(context.task_loop_result or 0) + k)
        return (context.task_loop_result or 0) + k

    with Flow("map-loop") as flow:
        m = count_up.map([3, 1, 4])
    state = flow.run(executor=make_executor())
    assert state[m].result() == [6, 1, 10]
    assert [c.name for c in state[m].map_states] == ["Completed"] * 3
    by_child = {i: sorted(k for j, k in calls if j == i) for i in range(3)}
    assert by_child == {0: [1, 2, 3], 1: [1], 2: [1, 2, 3, 4]}


def test_loop_state_is_fresh_for_each_map_child():
    @task
    def first_result(x):
        guard_runaway_loop()
        if context.task_loop_count == 1:
            assert context.task_loop_result is None
            raise LOOP(result=x * 100)
        return context.task_loop_result

    with Flow("fresh") as flow:
        m = first_result.map([1, 2, 3])
    state = flow.run()
    assert state[m].result() == [100, 200, 300]


@task
def count_to_five():
    """Prefect's idiom: a field with no value yet reads as absent through `get`."""
    guard_runaway_loop()
    n = context.get("task_loop_result", 0)
    if n < 5:
        raise LOOP(result=n + 1)
    return n


@EXECUTORS
def test_context_get_gives_the_default_before_the_first_loop_in_a_graph_flow(make_executor):
    with Flow("count") as flow:
        counted = count_to_five()
    state = flow.run(executor=make_executor())
    assert state[counted].is_successful()
    assert state[counted].result() == 5


def test_context_get_gives_the_default_before_the_first_loop_in_a_function_flow():
    @flow
    def count():
        return count_to_five()

    assert count() == 5


def test_context_get_gives_the_default_for_every_field_without_a_value():
    @task
    def unset_fields():
        return {
            name: context.get(name, "absent")
            for name in ("map_index", "task_loop_result", "task_run_count")
        }

    with Flow("unset") as flow:
        fields = unset_fields()
    assert flow.run()[fields].result() == {
        "map_index": "absent",
        "task_loop_result": "absent",
        "task_run_count": 1,
    }
