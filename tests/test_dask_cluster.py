"""DaskExecutor against a real `dask scheduler` and `dask worker` started as processes."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from headrace import Flow, task
from headrace.executors import DaskExecutor

cloudpickle.register_pickle_by_value(sys.modules[__name__])

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGTERM if pytest dies, so a killed run leaves no cluster behind."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start(*args: str) -> subprocess.Popen:
    # Dask would re-run a task whose worker died; with no such retries the death
    # reaches headrace at once, which is what these tests observe.
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    return subprocess.Popen(
        [str(BIN / "dask"), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so stopping it stops its worker processes too
        preexec_fn=_die_with_parent,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    port = address.rsplit(":", 1)[1]
    scheduler = start("scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard")
    workers = start(
        "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
        "--host", "127.0.0.1",
    )  # fmt: skip
    try:
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        stop(workers)
        stop(scheduler)


@task
def where(x):
    return os.getpid(), x * 2


@task
def total(pairs):
    return sum(v for _, v in pairs)


def test_runs_on_the_external_workers(cluster):
    with Flow("remote") as flow:
        w = where.map(list(range(40)))
        t = total(w)
    state = flow.run(executor=DaskExecutor(address=cluster), return_tasks=[w])
    assert state[t].result() == 2 * sum(range(40))
    pids = {pid for pid, _ in state[w].result()}
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2


def test_a_dying_worker_is_crashed_not_failed(cluster):
    @task
    def die():
        os._exit(1)  # the worker process disappears mid-task

    with Flow("crash") as flow:
        d = die()
    started = time.monotonic()
    state = flow.run(executor=DaskExecutor(address=cluster))
    assert time.monotonic() - started < 120
    assert state[d].name == "Crashed"
    assert state[d].is_failed() and state.is_failed()
    assert "executor failed" in state[d].message


def test_a_crashed_run_is_retried_per_its_retries(cluster, tmp_path):
    marker = tmp_path / "died-once"

    @task(retries=1)
    def die_once():
        if not marker.exists():
            marker.write_text("x")
            os._exit(1)
        return "survived"

    with Flow("crash-retry") as flow:
        d = die_once()
    state = flow.run(executor=DaskExecutor(address=cluster))
    assert state[d].result() == "survived"


class Tracked:
    """Notes, in a file, the pid of every process that unpickles it."""

    def __init__(self, log, value):
        self.log, self.value = str(log), value

    def __setstate__(self, state):
        self.__dict__.update(state)
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")


def test_intermediate_results_stay_on_the_workers(cluster, tmp_path):
    log = tmp_path / "unpickled"

    @task
    def make(i):
        return Tracked(log, i)

    @task
    def grow(t):
        return Tracked(log, t.value * 10)

    @task
    def total(ts):
        return sum(t.value for t in ts)

    with Flow("locality") as flow:
        made = make.map([1, 2, 3])
        grown = grow.map(made)
        t = total(grown)
    state = flow.run(executor=DaskExecutor(address=cluster))
    assert state[t].result() == 60
    pids = set(log.read_text().split()) if log.exists() else set()
    assert str(os.getpid()) not in pids  # no intermediate Tracked came back here


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


def test_a_result_that_cannot_be_pickled_fails_its_run_instead_of_hanging(cluster):
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
    state = flow.run(executor=DaskExecutor(address=cluster))
    assert time.monotonic() - started < 60
    assert [s.name for s in state[made].map_states] == ["Failed"] * 6
    assert "is a lock, which cannot be pickled" in state[made].map_states[0].message
    assert state[counted].is_trigger_failed()
