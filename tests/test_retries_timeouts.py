"""Task options `retries`, `retry_delay` and `timeout`, in graph flows.

Retry waits are checked exactly on a `ManualClock` (no real sleeping).
Timeout tests block on a `threading.Event` that is never set during the
run, so the only way out is the timeout; the event is set at teardown so
abandoned threads exit. That a timed-out body keeps its throttle slots is
tested in faults/test_limits.py.
"""

import datetime
import threading
import time

import pytest

from headrace import Flow, context, task
from headrace.engine.clock import ManualClock
from headrace.executors import LocalExecutor, ThreadExecutor

# -- shared helpers --------------------------------------------------------------

EXECUTORS = pytest.mark.parametrize(
    "make_executor",
    [LocalExecutor, lambda: ThreadExecutor(max_workers=4)],
    ids=["local", "threads"],
)

# A timed-out run must end far sooner than this; generous so CI load never flakes.
PROMPT = 5.0
# Blocked tasks give up after this long, so a broken timeout fails the test instead of hanging it.
BACKSTOP = 15.0


@pytest.fixture
def never_set():
    """An Event no task will see set during the test; set afterwards to free threads."""
    event = threading.Event()
    yield event
    event.set()


@task
def passthrough(x):
    return x


def failing_until(k, record):
    """A task body that fails (with the attempt number) until attempt `k`."""

    def body():
        n = context.task_run_count
        record.append(n)
        if n < k:
            raise ValueError(f"attempt {n}")
        return f"succeeded on attempt {n}"

    return body


def run_retrying(body, clock, executor=None, **options):
    """Run `task(body, **options)` feeding `passthrough`; return (state, node, after)."""
    t = task(body, name="retrying", **options)
    with Flow("retries") as flow:
        node = t()
        after = passthrough(node)
    return flow.run(clock=clock, executor=executor, return_tasks=[node]), node, after


NEVER = 10**9


# -- retries -----------------------------------------------------------------------


def test_no_retries_by_default():
    record = []
    clock = ManualClock()
    state, node, after = run_retrying(failing_until(NEVER, record), clock)
    assert state[node].name == "Failed"
    assert record == [1]
    assert clock.sleeps == []
    assert state[after].name == "TriggerFailed"


@EXECUTORS
def test_retry_delay_in_seconds(make_executor):
    record = []
    clock = ManualClock()
    state, node, _ = run_retrying(
        failing_until(NEVER, record), clock, make_executor(), retries=3, retry_delay=5
    )
    assert record == [1, 2, 3, 4]
    assert clock.sleeps == [5.0, 5.0, 5.0]
    assert state[node].name == "Failed"


def test_exhausted_retries_fail_with_the_last_exception():
    record = []
    clock = ManualClock()
    state, node, _ = run_retrying(failing_until(NEVER, record), clock, retries=2, retry_delay=1)
    assert state[node].name == "Failed"
    assert isinstance(state[node].exception, ValueError)
    assert str(state[node].exception) == "attempt 3"
    assert "attempt 3" in state[node].message
    with pytest.raises(ValueError, match="attempt 3"):
        state[node].result()
    assert state.name == "Failed"


def test_retry_delay_as_timedelta():
    record = []
    clock = ManualClock()
    run_retrying(
        failing_until(NEVER, record),
        clock,
        retries=2,
        retry_delay=datetime.timedelta(minutes=2),
    )
    assert clock.sleeps == [120.0, 120.0]


def test_retry_delay_list_is_per_attempt_and_the_last_repeats():
    record = []
    clock = ManualClock()
    run_retrying(failing_until(NEVER, record), clock, retries=5, retry_delay=[1, 2, 5])
    assert record == [1, 2, 3, 4, 5, 6]
    assert clock.sleeps == [1.0, 2.0, 5.0, 5.0, 5.0]


def test_retry_delay_list_longer_than_retries():
    record = []
    clock = ManualClock()
    run_retrying(failing_until(NEVER, record), clock, retries=2, retry_delay=[3, 7, 11])
    assert clock.sleeps == [3.0, 7.0]


def test_retry_delay_callable_gets_the_attempt_number():
    asked = []

    def backoff(attempt):
        asked.append(attempt)
        return 2**attempt

    record = []
    clock = ManualClock()
    run_retrying(failing_until(NEVER, record), clock, retries=3, retry_delay=backoff)
    assert asked == [1, 2, 3]
    assert clock.sleeps == [2.0, 4.0, 8.0]


def test_retry_delay_callable_may_return_a_timedelta():
    record = []
    clock = ManualClock()
    run_retrying(
        failing_until(NEVER, record),
        clock,
        retries=2,
        retry_delay=lambda attempt: datetime.timedelta(seconds=10 * attempt),
    )
    assert clock.sleeps == [10.0, 20.0]


@EXECUTORS
@pytest.mark.parametrize("k", [1, 2, 4])
def test_success_on_attempt_k_is_completed(make_executor, k):
    record = []
    clock = ManualClock()
    state, node, after = run_retrying(
        failing_until(k, record), clock, make_executor(), retries=5, retry_delay=3
    )
    assert state[node].name == "Completed"
    assert state[node].result() == f"succeeded on attempt {k}"
    assert state[after].result() == f"succeeded on attempt {k}"
    assert record == list(range(1, k + 1))
    assert clock.sleeps == [3.0] * (k - 1)
    assert state.name == "Completed"


def test_task_run_count_restarts_for_each_task():
    counts = {}

    @task(retries=2, retry_delay=1)
    def flaky(label):
        counts.setdefault(label, []).append(context.task_run_count)
        if context.task_run_count < 2:
            raise ValueError(label)
        return label

    with Flow("two") as flow:
        a = flaky("a")
        b = flaky("b", upstream_tasks=[a])
    state = flow.run(clock=ManualClock())
    assert counts == {"a": [1, 2], "b": [1, 2]}
    assert state[b].result() == "b"


@EXECUTORS
def test_a_map_child_retries_only_itself(make_executor):
    calls = []

    @task(retries=2, retry_delay=7)
    def fetch(x):
        calls.append((x, context.task_run_count))
        if x == "b" and context.task_run_count == 1:
            raise ConnectionError("reset")
        return x.upper()

    clock = ManualClock()
    with Flow("map-retry") as flow:
        m = fetch.map(["a", "b", "c"])
        out = passthrough.map(m)
    state = flow.run(clock=clock, executor=make_executor(), return_tasks=[m])
    assert state[m].result() == ["A", "B", "C"]
    assert state[out].result() == ["A", "B", "C"]
    assert sorted(calls) == [("a", 1), ("b", 1), ("b", 2), ("c", 1)]
    assert clock.sleeps == [7.0]


def test_a_map_child_that_exhausts_retries_fails_alone():
    calls = []

    @task(retries=1, retry_delay=2)
    def fetch(x):
        calls.append(x)
        if x == 2:
            raise ConnectionError(f"item {x}")
        return x

    clock = ManualClock()
    with Flow("map-retry") as flow:
        m = fetch.map([1, 2, 3])
    state = flow.run(clock=clock)
    assert [c.name for c in state[m].map_states] == ["Completed", "Failed", "Completed"]
    assert sorted(calls) == [1, 2, 2, 3]
    assert str(state[m].map_states[1].exception) == "item 2"
    assert clock.sleeps == [2.0]


@pytest.mark.parametrize(
    "options, match",
    [
        ({"retries": -1}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"retry_delay": -1}, "retry_delay"),
        ({"retry_delay": []}, "retry_delay"),
        ({"retry_delay": "soon"}, "retry_delay"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -2}, "timeout"),
    ],
)
def test_bad_options_are_refused_when_the_task_is_made(options, match):
    with pytest.raises(ValueError, match=match):
        task(lambda: None, **options)


def test_timeout_accepts_a_timedelta():
    assert task(lambda: None, timeout=datetime.timedelta(milliseconds=250)).timeout == 0.25


# -- timeouts ---------------------------------------------------------------------------


@EXECUTORS
def test_timeout_abandons_a_blocked_task(make_executor, never_set):
    @task(timeout=0.2)
    def hang():
        never_set.wait(BACKSTOP)
        return "never"

    with Flow("timeout") as flow:
        h = hang()
        after = passthrough(h)
    start = time.monotonic()
    state = flow.run(executor=make_executor())
    elapsed = time.monotonic() - start
    assert elapsed < PROMPT
    assert state[h].name == "TimedOut"
    assert state[h].is_failed()
    assert "timeout" in state[h].message
    assert isinstance(state[h].exception, TimeoutError)
    assert state[after].name == "TriggerFailed"
    assert "'hang'" in state[after].message
    assert state.name == "Failed"


@EXECUTORS
def test_timeout_does_not_touch_other_tasks(make_executor, never_set):
    @task(timeout=datetime.timedelta(milliseconds=200))
    def hang():
        never_set.wait(BACKSTOP)

    @task
    def quick():
        return "quick"

    with Flow("timeout") as flow:
        h = hang()
        q = quick()
        after = passthrough(q)
    start = time.monotonic()
    state = flow.run(executor=make_executor())
    assert time.monotonic() - start < PROMPT
    assert state[h].name == "TimedOut"
    assert state[after].result() == "quick"


@EXECUTORS
def test_a_task_within_its_timeout_keeps_its_result_and_errors(make_executor):
    @task(timeout=30)
    def fast(x):
        return x * 2

    @task(timeout=30)
    def broken():
        raise KeyError("missing")

    with Flow("fast") as flow:
        f = passthrough(fast(21))
        b = broken()
    state = flow.run(executor=make_executor())
    assert state[f].result() == 42
    assert state[b].name == "Failed"  # its own error, not a timeout
    assert isinstance(state[b].exception, KeyError)


@EXECUTORS
def test_timeout_with_retries_retries_then_times_out(make_executor, never_set):
    attempts = []

    @task(timeout=0.2, retries=2, retry_delay=9)
    def hang():
        attempts.append(context.task_run_count)
        never_set.wait(BACKSTOP)

    clock = ManualClock()
    with Flow("timeout-retries") as flow:
        h = hang()
        after = passthrough(h)
    start = time.monotonic()
    state = flow.run(executor=make_executor(), clock=clock)
    assert time.monotonic() - start < PROMPT
    assert attempts == [1, 2, 3]
    assert clock.sleeps == [9.0, 9.0]
    assert state[h].name == "TimedOut"
    assert state[after].name == "TriggerFailed"


def test_a_timed_out_attempt_can_be_retried_to_success(never_set):
    @task(timeout=0.2, retries=1, retry_delay=1)
    def slow_first():
        if context.task_run_count == 1:
            never_set.wait(BACKSTOP)
        return "second time lucky"

    clock = ManualClock()
    with Flow("timeout-then-ok") as flow:
        s = slow_first()
    state = flow.run(clock=clock)
    assert state[s].name == "Completed"
    assert state[s].result() == "second time lucky"
    assert clock.sleeps == [1.0]


@EXECUTORS
def test_timeout_of_a_map_child_affects_only_that_child(make_executor, never_set):
    @task(timeout=0.2)
    def maybe_hang(x):
        if x == 1:
            never_set.wait(BACKSTOP)
        return x

    with Flow("map-timeout") as flow:
        m = maybe_hang.map([0, 1, 2])
        out = passthrough.map(m)
    start = time.monotonic()
    state = flow.run(executor=make_executor())
    assert time.monotonic() - start < PROMPT
    assert [c.name for c in state[m].map_states] == ["Completed", "TimedOut", "Completed"]
    assert [c.name for c in state[out].map_states] == ["Completed", "TriggerFailed", "Completed"]
