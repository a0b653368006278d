"""Ctrl-C (a real SIGINT) stops a run: nothing new starts, the run is recorded as
Cancelled, control comes back at once, and no worker process is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from headrace.store import open_reader

SCRIPT = """
import json, os, signal, sys, threading, time
from headrace import Flow, flow, task
from headrace.executors import LocalExecutor, ThreadExecutor
from headrace.store import get_store, open_reader

ran = []

under_way = threading.Event()  # set here, in the flow's process, as task runs complete

@task(on_completion=[lambda task, state: under_way.set()])
def work(i):
    threading.Event().wait(0.02)
    ran.append(i)
    return i

if sys.argv[2] == "dask":
    from headrace.executors import DaskExecutor
    executor = DaskExecutor(cluster_kwargs={"n_workers": 2})
    executor.start()  # the cluster's start-up is not the run's
elif sys.argv[2] == "processes":
    from headrace.executors import ProcessExecutor
    executor = ProcessExecutor(max_workers=2)  # the run starts it, and cancels it
else:
    executor = {"threads": ThreadExecutor(4), "local": LocalExecutor()}[sys.argv[2]]
interrupted = []

def interrupt_once_under_way():
    under_way.wait()
    threading.Event().wait(0.1)
    interrupted.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=interrupt_once_under_way, daemon=True).start()
try:
    if sys.argv[1] == "graph":
        with Flow("big") as big:
            work.map(list(range(2000)))
        big.run(executor=executor)
    elif sys.argv[1] == "function":
        @flow(executor=executor)
        def big():
            return work.map(range(2000)).result()
        big()
    else:
        import asyncio

        @flow(executor=executor)
        async def big():
            first = await work.map(range(1000))  # submitted to the executor
            return first + list(await asyncio.gather(*(work(i) for i in range(1000))))

        asyncio.run(big())
    outcome = "finished"
except KeyboardInterrupt:
    outcome = "interrupted"
back = time.monotonic() - interrupted[0]
if executor.started:  # the Dask cluster this script started: the script stops it
    executor.shutdown()
at_interrupt = len(ran)
threading.Event().wait(0.5)
get_store().flush()

def children():
    # This process's live children, but multiprocessing's resource tracker.
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            command = open(f"/proc/{pid}/cmdline").read()
        except OSError:
            continue
        if fields[1] == str(os.getpid()) and fields[0] != "Z" and "resource_tracker" not in command:
            out.append(int(pid))
    return out

for _ in range(100):  # up to 5 s for killed workers to be gone
    if not children():
        break
    threading.Event().wait(0.05)
reader = open_reader()
[run] = reader.flow_runs()
completed = sum(t.state_name == "Completed" for t in reader.task_runs(run.id))
print(json.dumps({"outcome": outcome, "back": back, "at_interrupt": at_interrupt,
                  "later": len(ran) - at_interrupt, "state": run.state_name,
                  "message": run.state_message, "completed": completed,
                  "children": children()}))
"""


@pytest.mark.parametrize("executor", ["threads", "local", "processes", "dask"])
@pytest.mark.parametrize("style", ["graph", "function", "async"])
def test_ctrl_c_stops_the_run_and_records_it_cancelled(style, executor, tmp_path):
    env = {**os.environ, "HEADRACE_HOME": str(tmp_path), "HEADRACE_PROGRESS": "off",
           "HEADRACE_LOGGING_LEVEL": "CRITICAL"}  # fmt: skip
    env.pop("HEADRACE_DATABASE_URL", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), style, executor],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["outcome"] == "interrupted", (result, done.stderr[-3000:])  # where it went
    assert result["back"] < 5 and time.monotonic() - started < 30
    assert 0 < result["completed"] < 2000  # some ran, and the rest never started
    if executor in ("threads", "local"):  # (the others run task bodies in other processes)
        assert result["later"] <= 8  # only what was already running or queued ends
    assert result["state"] == "Cancelled" and "interrupted (Ctrl-C)" in result["message"]
    assert result["children"] == []  # no worker process is left behind


GROUP_SCRIPT = """
import asyncio, sys, threading
from headrace import Flow, flow, task, unmapped
from headrace.executors import ProcessExecutor, ThreadExecutor

@task
def work(i):
    threading.Event().wait(0.02)
    return i

@task
def announce():
    print("RUNNING", flush=True)

if sys.argv[2] == "dask":
    from headrace.executors import DaskExecutor
    executor = DaskExecutor(cluster_kwargs={"n_workers": 2})
else:
    executor = {"threads": ThreadExecutor(4), "processes": ProcessExecutor(2)}[sys.argv[2]]

if sys.argv[1] == "graph":
    with Flow("big") as big:
        work.map(list(range(2000)), upstream_tasks=[unmapped(announce())])
    big.run(executor=executor)
elif sys.argv[1] == "function":
    @flow(executor=executor)
    def big():
        announce()
        return work.map(range(2000)).result()
    big()
else:
    @flow(executor=executor)
    async def big():
        await announce()
        return await work.map(range(2000))
    asyncio.run(big())
"""


def session_members(sid: int) -> list[int]:
    """Live processes of session `sid` (zombies aside)."""
    members = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[3] == str(sid) and fields[0] != "Z":
            members.append(int(pid))
    return members


@pytest.mark.parametrize("executor", ["threads", "processes", "dask"])
@pytest.mark.parametrize("style", ["graph", "function", "async"])
def test_ctrl_c_twice_at_the_terminal_returns_at_once_and_leaves_nothing(style, executor, tmp_path):
    """As a terminal does: SIGINT to the whole process group (workers too), then again."""
    env = {**os.environ, "HEADRACE_HOME": str(tmp_path), "HEADRACE_PROGRESS": "off",
           "HEADRACE_LOGGING_LEVEL": "CRITICAL"}  # fmt: skip
    env.pop("HEADRACE_DATABASE_URL", None)
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(GROUP_SCRIPT), style, executor],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "RUNNING", child.stderr.read()
        os.killpg(child.pid, signal.SIGINT)
        interrupted = time.monotonic()
        threading.Event().wait(0.05)
        os.killpg(child.pid, signal.SIGINT)
        child.wait(timeout=30)
        back = time.monotonic() - interrupted
        for _ in range(100):  # up to 5 s for killed workers to be gone
            if not session_members(child.pid):
                break
            threading.Event().wait(0.05)
    finally:
        for pid in session_members(child.pid):
            os.kill(pid, signal.SIGKILL)
        child.kill()
        child.communicate()
    assert child.returncode in (130, -signal.SIGINT), child.stderr
    assert back < 5
    assert session_members(child.pid) == []
    reader = open_reader(f"sqlite:///{tmp_path}/headrace.db")
    run = reader.flow_runs()[0]
    failed = [
        (t.name, t.state_message) for t in reader.task_runs(run.id) if t.state_name == "Failed"
    ]
    assert run.state_name == "Cancelled", (run.state_message, failed[:3])
    assert "interrupted (Ctrl-C)" in run.state_message
