"""DaskExecutor under faults, against a real `dask scheduler` and `dask worker` started
as processes (dask_processes.py): a scheduler that cannot be reached is refused before
anything is recorded, and a result that cannot be pickled fails its own task runs
instead of hanging the run; on a LocalCluster, runs whose state events never come are
read from the workers.
"""

import socket
import sys
import time

import cloudpickle
import pytest

from dask_processes import dask_cluster_fixture  # noqa: F401  (a fixture)
from headrace import Flow, task
from headrace.executors import DaskExecutor

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_an_unreachable_scheduler_is_refused_before_anything_is_recorded(tmp_path, monkeypatch):
    from headrace.executors.dask import DaskUnreachableError
    from headrace.store import get_store, open_reader

    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    monkeypatch.delenv("HEADRACE_DATABASE_URL", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    ran = []

    @task
    def note():
        ran.append(1)

    with Flow("unreachable") as graph:
        note()
    executor = DaskExecutor(f"tcp://127.0.0.1:{port}", client_kwargs={"timeout": "2s"})
    with pytest.raises(
        DaskUnreachableError, match=f"cannot reach the scheduler at 'tcp://127.0.0.1:{port}'"
    ):
        graph.run(executor=executor)
    get_store().flush()
    assert ran == [] and open_reader().flow_runs() == []


def test_a_result_that_cannot_be_pickled_fails_its_run_instead_of_hanging(dask_cluster):
    import threading

    @task
    def make_lock(i):
        return threading.Lock()

    @task
    def count(locks):
        return len(locks)

    with Flow("unpicklable") as flow:
        made = make_lock.map(list(range(6)))
        counted = count(made)
    started = time.monotonic()
    state = flow.run(executor=DaskExecutor(address=dask_cluster))
    assert time.monotonic() - started < 60
    assert [s.name for s in state[made].map_states] == ["Failed"] * 6
    assert "is a lock, which cannot be pickled" in state[made].map_states[0].message
    assert state[counted].is_trigger_failed()


@task
def plus_one(x):
    return x + 1


def test_runs_whose_state_events_never_come_are_read_from_the_workers(monkeypatch):
    """The state of a finished run comes to the client as an event; when none comes, the
    executor's sweep fetches the state from the worker UNHEARD_SECONDS after the run's
    Dask task finished, and a task that errs fails its run: nothing hangs."""
    from headrace.executors import dask as dask_executor

    monkeypatch.setattr(dask_executor, "UNHEARD_SECONDS", 0.3)
    with Flow("unheard") as graph:
        mapped = plus_one.map(list(range(20)))
        broken = plus_one("not a number")
    with DaskExecutor(cluster_kwargs={"n_workers": 1}) as executor:
        executor.client.unsubscribe_topic(dask_executor.STATE_TOPIC)  # no event comes
        started = time.monotonic()
        state = graph.run(executor=executor)
        took = time.monotonic() - started
    assert state[mapped].result() == list(range(1, 21)) and took < 30
    assert state[broken].is_failed() and "TypeError" in state[broken].message
