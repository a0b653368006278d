"""ProcessExecutor and DaskExecutor refuse, before the run, what cannot cross a process boundary."""

import threading

import pytest

from headrace import Flow, task
from headrace.executors import ProcessExecutor
from headrace.executors.processes import UnpicklableTaskError

LOCK = threading.Lock()


def test_an_unpicklable_global_is_named_and_nothing_runs(tmp_path):
    ran = tmp_path / "ran"

    @task
    def first():
        ran.write_text("yes")

    @task
    def guarded(x):
        with LOCK:
            return x

    with Flow("payloads") as flow:
        guarded(first())
    with pytest.raises(UnpicklableTaskError) as info:
        flow.run(executor=ProcessExecutor(1))
    message = str(info.value)
    assert "Task 'guarded'" in message
    assert "global 'LOCK'" in message and "lock" in message
    assert "ThreadExecutor" in message
    assert not ran.exists()


def test_an_unpicklable_constant_argument_is_named():
    @task
    def use(value):
        return value

    with Flow("payloads") as flow:
        use(threading.Event())
    with pytest.raises(UnpicklableTaskError, match="Task 'use'.*argument 'value'"):
        flow.run(executor=ProcessExecutor(1))
