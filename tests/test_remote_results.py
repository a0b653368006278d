"""Results written on a worker of another host: a real `dask scheduler`, and a `dask
worker` process given a host name of its own (a UTS namespace, `unshare --uts`), so it
is "elsewhere" as a remote machine is, while the test can still look at its files.

A LocalStorage path there is that host's disk: the write is refused, naming
FSSpecStorage. An FSSpecStorage URL, or LocalStorage(path, shared=True), is written and
read back by the flow run.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from dask_processes import BIN, _die_with_parent, free_port, start, stop
from headrace import flow, task
from headrace.executors import DaskExecutor
from headrace.results import FSSpecStorage, LocalStorage

BIG = "z" * 5000  # past INLINE_BYTES: written to a file by the worker


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "--uts", "true"], capture_output=True)
    return done.returncode == 0


@pytest.fixture(scope="module")
def elsewhere():
    """The address of a scheduler whose one worker runs on host 'elsewhere'."""
    if not _can_unshare():
        pytest.skip("needs `unshare --uts` (root, or user namespaces) to name a worker's host")
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    command = (f"hostname elsewhere && exec {BIN / 'dask'} worker {address} --nthreads 1 "
               "--no-dashboard --host 127.0.0.1")  # fmt: skip
    worker = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", command],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
            assert list(client.run(__import__("socket").gethostname).values()) == ["elsewhere"]
        yield address
    finally:
        stop(worker)
        stop(scheduler)


def run_on(address: str, storage=None) -> list:
    seen = []

    @task(result_storage=storage)
    def big():
        return BIG

    @task
    def small():
        return 1

    @flow(executor=DaskExecutor(address=address))
    def remote():
        seen.extend([big.submit().wait(), small.submit().wait()])

    remote(return_state=True)
    return seen


def test_local_storage_on_a_remote_worker_is_refused_naming_fsspec(elsewhere):
    big, small = run_on(elsewhere)
    assert big.is_failed()
    assert "This worker runs on host 'elsewhere'" in big.message
    assert "result_storage=FSSpecStorage(" in big.message
    assert small.is_successful() and small.result() == 1  # inline: nothing written there


def test_fsspec_or_a_shared_path_is_written_there_and_read_here(elsewhere, tmp_path):
    for folder, storage in (
        ("fs", FSSpecStorage(f"file://{tmp_path / 'fs'}")),
        ("shared", LocalStorage(tmp_path / "shared", shared=True)),
    ):
        big, _ = run_on(elsewhere, storage)
        assert big.is_successful(), big.message
        [written] = [p for p in (tmp_path / folder).rglob("*") if p.is_file()]
        assert written.read_bytes() == storage_bytes(big)
        assert big.ref.load() == BIG  # read back from the file, by the flow run's process


def storage_bytes(state) -> bytes:
    return state.ref.storage.read(state.ref.key)
