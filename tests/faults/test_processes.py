"""Worker processes do not outlive their run: a killed parent takes its ProcessExecutor
workers with it, and a task killed by its timeout takes the processes it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from headrace import Flow, task
from headrace.executors import ProcessExecutor


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        threading.Event().wait(0.05)
    return condition()


PARENT = """
import os, sys, threading
from pathlib import Path
from headrace import Flow, task
from headrace.executors import ProcessExecutor

@task
def hold(i):
    Path(sys.argv[1], str(os.getpid())).touch()
    threading.Event().wait(60)

if __name__ == "__main__":
    with Flow("held") as flow:
        hold.map([1, 2])
    flow.run(executor=ProcessExecutor(max_workers=2))
"""


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    env = {**os.environ, "HEADRACE_HOME": str(tmp_path / "home"), "HEADRACE_PROGRESS": "off"}
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PARENT), str(tmp_path)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_until(lambda: len([p for p in tmp_path.iterdir() if p.name.isdigit()]) == 2, 60)
        workers = [int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()]
        assert all(alive(pid) for pid in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_until(lambda: not any(alive(pid) for pid in workers), 10), workers
    finally:
        parent.kill()


@task(timeout=1)
def starts_a_sleeper(pid_file: str):
    sleeper = subprocess.Popen(["sleep", "60"])
    Path(pid_file).write_text(str(sleeper.pid))
    sleeper.wait()


def test_a_task_killed_by_its_timeout_takes_its_subprocesses_with_it(tmp_path):
    pid_file = tmp_path / "sleeper"
    with Flow("sleeps") as flow:
        run = starts_a_sleeper(str(pid_file))
    state = flow.run(executor=ProcessExecutor(max_workers=1))
    assert state[run].is_timed_out()
    sleeper = int(pid_file.read_text())
    assert wait_until(lambda: not alive(sleeper), 10), f"sleep {sleeper} outlived its task"


@task
def dies_at_two(i: int, marker: str):
    if i == 2 and not Path(marker).exists():
        Path(marker).touch()  # only the first time: a retry runs on a new worker
        os._exit(1)  # the worker process disappears mid-run
    threading.Event().wait(0.05)
    return i


def test_a_dead_worker_crashes_only_the_run_it_held(tmp_path):
    from headrace import flow, unmapped

    with Flow("one dies") as graph:
        runs = dies_at_two.map(list(range(8)), unmapped(str(tmp_path / "graph")))
    state = graph.run(executor=ProcessExecutor(max_workers=3), return_tasks=[runs])
    names = [s.name for s in state[runs].map_states]
    assert names == ["Completed"] * 2 + ["Crashed"] + ["Completed"] * 5
    assert "worker process (pid" in state[runs].map_states[2].message
    assert state[runs].map_states[7].result() == 7

    @flow(executor=ProcessExecutor(max_workers=3))
    def one_dies():
        again = dies_at_two.with_options(retries=1)
        return again.map(range(8), unmapped(str(tmp_path / "function"))).result()

    assert one_dies() == list(range(8))  # the retry ran on a fresh pool
