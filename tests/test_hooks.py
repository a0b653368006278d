"""State hooks `on_failure` and `on_completion`: called with (task, state) once per task run."""

import threading

import pytest

from headrace import Flow, context, task
from headrace.engine.clock import ManualClock
from headrace.executors import LocalExecutor, ThreadExecutor
from headrace.signals import SKIP

# -- shared helpers --------------------------------------------------------------

EXECUTORS = pytest.mark.parametrize(
    "make_executor",
    [LocalExecutor, lambda: ThreadExecutor(max_workers=4)],
    ids=["local", "threads"],
)


class Recorder:
    """A hook that records (hook label, task, state) for each call; thread-safe."""

    calls: list

    def __init__(self):
        self.calls = []
        self._lock = threading.Lock()

    def hook(self, label):
        def record(t, state):
            with self._lock:
                self.calls.append((label, t, state))

        record.__name__ = f"record_{label}"
        return record

    def labels(self):
        return [label for label, _, _ in self.calls]


# A blocked task gives up after this long, so a broken timeout fails instead of hanging.
BACKSTOP = 15.0


def raising_hook(t, state):
    raise RuntimeError("the hook itself broke")


# -- tests --------------------------------------------------------------------------


@EXECUTORS
def test_on_completion_is_called_once_with_the_node_and_its_state(make_executor):
    rec = Recorder()

    @task(on_completion=rec.hook("done"), on_failure=rec.hook("failed"))
    def ok():
        return 5

    with Flow("hooks") as flow:
        node = ok()
    state = flow.run(executor=make_executor())
    assert rec.labels() == ["done"]
    _, t, s = rec.calls[0]
    assert t is node
    assert s is state[node]
    assert s.name == "Completed"
    assert s.result() == 5


@EXECUTORS
def test_on_failure_is_called_once_with_the_failed_state(make_executor):
    rec = Recorder()

    @task(on_completion=rec.hook("done"), on_failure=rec.hook("failed"))
    def bad():
        raise ValueError("nope")

    with Flow("hooks") as flow:
        node = bad()
    state = flow.run(executor=make_executor())
    assert rec.labels() == ["failed"]
    _, t, s = rec.calls[0]
    assert t is node
    assert s is state[node]
    assert s.name == "Failed"
    assert isinstance(s.exception, ValueError)


def test_a_list_of_hooks_is_called_in_order():
    rec = Recorder()

    @task(on_completion=[rec.hook("first"), rec.hook("second"), rec.hook("third")])
    def ok():
        return 1

    with Flow("hooks") as flow:
        ok()
    flow.run()
    assert rec.labels() == ["first", "second", "third"]


def test_hooks_are_per_node():
    rec = Recorder()

    @task(on_completion=rec.hook("done"))
    def ok(x):
        return x

    with Flow("hooks") as flow:
        a = ok(1)
        b = ok(2)
    flow.run()
    assert {t: s.result() for _, t, s in rec.calls} == {a: 1, b: 2}
    assert len(rec.calls) == 2


@EXECUTORS
def test_hooks_run_once_per_map_child(make_executor):
    rec = Recorder()

    @task(on_completion=rec.hook("done"), on_failure=rec.hook("failed"))
    def check(x):
        if x % 2:
            raise ValueError(f"odd {x}")
        return x

    with Flow("map-hooks") as flow:
        m = check.map([0, 1, 2, 3, 4])
    state = flow.run(executor=make_executor())
    assert sorted(rec.labels()) == ["done"] * 3 + ["failed"] * 2
    assert all(t is m for _, t, _ in rec.calls)
    # each child state was given to a hook exactly once
    assert sorted(id(s) for _, _, s in rec.calls) == sorted(id(s) for s in state[m].map_states)
    done = sorted(s.result() for label, _, s in rec.calls if label == "done")
    assert done == [0, 2, 4]


def test_hooks_run_once_after_retries_not_per_attempt():
    rec = Recorder()

    @task(retries=2, retry_delay=1, on_failure=rec.hook("failed"), on_completion=rec.hook("done"))
    def flaky():
        if context.task_run_count < 3:
            raise ConnectionError("again")
        return "ok"

    @task(retries=2, retry_delay=1, on_failure=rec.hook("failed"))
    def hopeless():
        raise ConnectionError("never")

    with Flow("retry-hooks") as flow:
        f = flaky()
        h = hopeless()
    state = flow.run(clock=ManualClock())
    assert state[f].name == "Completed"
    assert [(label, t) for label, t, _ in rec.calls if t is f] == [("done", f)]
    assert [(label, t) for label, t, _ in rec.calls if t is h] == [("failed", h)]


@pytest.mark.parametrize("which", ["on_completion", "on_failure"])
def test_a_hook_that_raises_does_not_change_the_state(which, capsys):
    rec = Recorder()

    def body():
        if which == "on_failure":
            raise ValueError("task error")
        return "value"

    t = task(body, name="guarded", **{which: [raising_hook, rec.hook("after")]})
    with Flow("raising-hook") as flow:
        node = t()
    state = flow.run()
    if which == "on_completion":
        assert state[node].name == "Completed"
        assert state[node].result() == "value"
        assert state.name == "Completed"
    else:
        assert state[node].name == "Failed"
        assert isinstance(state[node].exception, ValueError)
    # the next hook still ran, and saw the unchanged state
    assert rec.calls == [("after", node, state[node])]
    # the hook's error is reported on the run log (stderr), not swallowed silently
    assert "the hook itself broke" in capsys.readouterr().err


def test_a_hook_that_raises_in_a_map_child_changes_nothing():
    @task(on_completion=raising_hook)
    def ok(x):
        return x + 1

    with Flow("raising-map-hook") as flow:
        m = ok.map([1, 2, 3])
    state = flow.run()
    assert state[m].result() == [2, 3, 4]
    assert state.name == "Completed"


def test_no_hook_runs_for_a_task_that_skips():
    rec = Recorder()

    @task(on_completion=rec.hook("done"), on_failure=rec.hook("failed"))
    def skipper():
        raise SKIP("nothing to do")

    with Flow("skip-hooks") as flow:
        s = skipper()
    state = flow.run()
    assert state[s].name == "Skipped"
    assert rec.calls == []


def test_on_failure_sees_a_timed_out_state():
    rec = Recorder()
    never = threading.Event()

    @task(timeout=0.2, on_failure=rec.hook("failed"))
    def hang():
        never.wait(BACKSTOP)

    with Flow("timeout-hooks") as flow:
        h = hang()
    try:
        flow.run()
    finally:
        never.set()
    assert [(label, t, s.name) for label, t, s in rec.calls] == [("failed", h, "TimedOut")]


def test_hooks_must_be_callable():
    with pytest.raises(TypeError, match="hook"):
        task(lambda: 1, on_failure="page me")
    with pytest.raises(TypeError, match="hook"):
        task(lambda: 1, on_completion=[print, 42])
