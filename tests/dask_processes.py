"""A real `dask scheduler` and `dask worker` started as processes, for the DaskExecutor tests.

`dask_cluster` is one scheduler with two one-thread worker processes per test
module; its value is the scheduler's address. Import `dask_cluster_fixture`
(with `# noqa: F401`) and pytest finds the fixture by its name, `dask_cluster`.
The processes get SIGTERM if pytest dies, and Dask does not re-run a task whose
worker died, so that death reaches headrace at once.
"""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module", name="dask_cluster")
def dask_cluster_fixture():
    """The scheduler's address, with two one-thread workers connected; stopped at the end."""
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
