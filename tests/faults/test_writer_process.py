"""The history's writer process (src/headrace/store/writer_process.py) under faults.

1. A run past HANDOFF_ROWS hands its rows to a child process, which writes
   every one of them; a run that ends before the child is ready waits for
   nothing.
2. The child killed by SIGKILL mid-run: the parent warns once, writes again
   what was not answered, and the run's history is whole.
3. Ctrl-C at the terminal (SIGINT to the whole group) stops the run, which is
   recorded as stopped through the child; the child leaves with its parent.
4. The parent killed by SIGKILL: what it flushed is in the file, the file is
   clean, and the child is gone.
5. A process forked from the parent holds none of the child's pipes.
6. A setting that is not understood is refused.

The full-disk and kill -9 tests of faults/test_history.py run with both writers.
Processes are real; children signal on stdout, and the waits poll for a state
with a backstop.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from headrace import Flow, task
from headrace.store import get_store, open_reader, open_recorder, sql
from headrace.store.base import StoreError
from headrace.store.records import FlowRun, TaskRun

BACKSTOP = 30.0
ENDED = "Run history: the writer process (pid"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path / "home"))
    for name in ("HEADRACE_DATABASE_URL", "HEADRACE_HISTORY", "HEADRACE_HISTORY_RETENTION"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home" / "headrace.db"


def gone(pid: int) -> bool:
    """Whether `pid` has exited (a zombie no one reaped has, too)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def until(condition, what: str) -> None:
    deadline = time.monotonic() + BACKSTOP
    while not condition():
        assert time.monotonic() < deadline, f"not within {BACKSTOP} s: {what}"
        time.sleep(0.01)


def child_env(home, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    env.update(HEADRACE_HOME=str(home), PYTHONUNBUFFERED="1", HEADRACE_PROGRESS="off", **extra)
    return env


def task_run(run_id: str, i: int) -> TaskRun:
    return TaskRun(f"{run_id}-{i}", run_id, "inc", f"inc[{i}]", "inc-1", i, None, [], [],
                   "COMPLETED", "Completed", None, 1.0, 2.0, 1)  # fmt: skip


# -- 1. the hand-over ----------------------------------------------------------------------------


def test_a_busy_recorder_hands_its_rows_to_a_child_that_writes_every_one(home, monkeypatch):
    monkeypatch.setenv("HEADRACE_HISTORY_WRITER", "auto")
    store = open_recorder(f"sqlite:///{home}")
    store.flow_run_started(FlowRun("busy", "busy", "busy", "graph", start_time=1.0))
    rows = 4 * sql.HANDOFF_ROWS
    for i in range(rows):
        store.task_run(task_run("busy", i))
        if i == sql.HANDOFF_ROWS + sql.BATCH:  # past the hand-over: wait for the child
            store.flush()
            until(lambda: store._process is not None and store._process.ready(), "ready")
    store.flow_run_ended("busy", "COMPLETED", "Completed", None, 3.0)
    store.flush()
    child = store._process.proc
    assert child.pid != os.getpid() and child.poll() is None
    with open_reader(f"sqlite:///{home}") as reader:
        assert len(reader.task_runs("busy")) == rows
        run = reader.flow_run("busy")
    assert (run.state_name, run.state_message) == ("Completed", None)


def test_a_flush_alone_in_its_batch_waits_for_what_the_child_has_not_answered(home, monkeypatch):
    """Regression: a flush that the writer thread took in a batch of its own (its rows
    already sent) returned before the child had committed them (1 run in 15)."""
    monkeypatch.setenv("HEADRACE_HISTORY_WRITER", "process")
    store = open_recorder(f"sqlite:///{home}")
    store.flow_run_started(FlowRun("alone", "alone", "alone", "graph", start_time=1.0))
    store.flush()
    assert store._process.writing
    for i in range(sql.BATCH):
        store.task_run(task_run("alone", i))
    until(store._queue.empty, "the writer thread took the rows")  # sent, maybe not written
    store.flush()
    with open_reader(f"sqlite:///{home}") as reader:
        assert len(reader.task_runs("alone")) == sql.BATCH


def test_a_run_that_ends_before_the_child_is_ready_waits_for_nothing(home, monkeypatch):
    """The thread writes on until the child says it is ready; the child, given nothing
    to write, leaves when its parent's recorder goes."""
    monkeypatch.setenv("HEADRACE_HISTORY_WRITER", "auto")
    store = open_recorder(f"sqlite:///{home}")
    store.flow_run_started(FlowRun("short", "short", "short", "graph", start_time=1.0))
    for i in range(sql.HANDOFF_ROWS + 1):
        store.task_run(task_run("short", i))
    store.flush()
    process = store._process
    assert process is not None and not process.writing  # started, and not waited for
    with open_reader(f"sqlite:///{home}") as reader:
        assert len(reader.task_runs("short")) == sql.HANDOFF_ROWS + 1
    process.proc.stdin.close()  # as the parent's exit does
    assert process.proc.wait(BACKSTOP) == 0


# -- 2. the child killed -------------------------------------------------------------------------

KILLS_ITS_WRITER = """
import os, signal, sys, time
from headrace import Flow, task
from headrace.store import get_store

@task
def inc(i):
    if i == 3000:
        store = get_store()
        store.flush()  # every batch so far is answered; the rows after go through the child
        print("WRITER", store._process.proc.pid, flush=True)
        os.kill(store._process.proc.pid, signal.SIGKILL)
    return i + 1

@task
def total(xs):
    return sum(xs)

with Flow("kills-its-writer") as f:
    t = total(inc.map(list(range(int(sys.argv[1])))))
state = f.run()
print("RESULT", state.name, state[t].result(), get_store()._writes, flush=True)
"""


def test_a_killed_writer_process_loses_no_row(tmp_path):
    home, n = tmp_path / "home", 12_000
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLS_ITS_WRITER), str(n)],
        env=child_env(home, HEADRACE_HISTORY_WRITER="process"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    writer, outcome = result.stdout.splitlines()
    pid = int(writer.split()[1])
    assert outcome == f"RESULT Completed {sum(range(1, n + 1))} thread"
    [warning] = [line for line in result.stderr.splitlines() if ENDED in line]
    assert f"(pid {pid}) ended (exit code -9)" in warning
    with open_reader(f"sqlite:///{home}/headrace.db") as reader:
        [run] = reader.flow_runs()
        runs = reader.task_runs(run.id)
    assert (run.state_name, run.state_message) == ("Completed", "All reference tasks succeeded.")
    assert len(runs) == len({r.id for r in runs}) == n + 2  # the children, the map, the total
    assert sorted(r.map_index for r in runs if r.map_index is not None) == list(range(n))


# -- 3. Ctrl-C at the terminal -------------------------------------------------------------------

INTERRUPTED = """
import threading, sys
from headrace import Flow, task
from headrace.store import get_store

@task
def inc(i):
    if i == 3000:
        store = get_store()
        store.flush()
        print("WRITER", store._process.proc.pid, flush=True)
        threading.Event().wait(60)  # Ctrl-C arrives here
    return i + 1

with Flow("interrupted") as f:
    inc.map(list(range(10_000)))
f.run()
"""


def test_ctrl_c_stops_the_run_and_its_end_is_written_through_the_child(tmp_path):
    home = tmp_path / "home"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(INTERRUPTED)],
        env=child_env(home, HEADRACE_HISTORY_WRITER="process"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        line = child.stdout.readline()
        assert line.startswith("WRITER"), child.stderr.read()
        writer = int(line.split()[1])
        os.killpg(child.pid, signal.SIGINT)  # the writer process is in the group too
        child.wait(timeout=BACKSTOP)
        until(lambda: gone(writer), "the writer process leaves with its parent")
    finally:
        child.kill()
        stderr = child.communicate()[1]
    assert child.returncode in (130, -signal.SIGINT), stderr
    assert ENDED not in stderr  # it outlived the Ctrl-C and wrote the run's end
    with open_reader(f"sqlite:///{home}/headrace.db") as reader:
        [run] = reader.flow_runs()
        done = [r for r in reader.task_runs(run.id) if r.state_name == "Completed"]
    assert run.state_type not in ("RUNNING", "CRASHED"), run
    assert len(done) >= 3000  # the children before the Ctrl-C


# -- 4. the parent killed ------------------------------------------------------------------------

FLUSHES_THEN_BLOCKS = """
import sys, threading
from headrace.store import get_store
from headrace.store.records import FlowRun, TaskRun

store = get_store()
store.flow_run_started(FlowRun("killed", "killed", "killed", "graph", start_time=1.0))
for i in range(12_000):
    store.task_run(TaskRun(f"killed-{i}", "killed", "inc", f"inc[{i}]", map_index=i,
                           state_type="COMPLETED", state_name="Completed"))
store.flush()
print("FLUSHED", store._process.proc.pid, flush=True)
threading.Event().wait(60)
"""


def test_a_parent_killed_by_sigkill_leaves_its_rows_and_no_writer_process(tmp_path):
    home = tmp_path / "home"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(FLUSHES_THEN_BLOCKS)],
        env=child_env(home, HEADRACE_HISTORY_WRITER="process"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = child.stdout.readline()
        assert line.startswith("FLUSHED"), child.stderr.read()
        writer = int(line.split()[1])
    finally:
        child.kill()
        child.communicate(timeout=BACKSTOP)
    until(lambda: gone(writer), "the writer process leaves when its parent dies")
    conn = sqlite3.connect(home / "headrace.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM task_runs").fetchone()[0] == 12_000
    finally:
        conn.close()


# -- 5. a fork --------------------------------------------------------------------------------------


def test_a_forked_process_holds_none_of_the_writer_processs_pipes(home, monkeypatch):
    monkeypatch.setenv("HEADRACE_HISTORY_WRITER", "process")

    @task
    def inc(x):
        return x + 1

    with Flow("forks") as f:
        inc.map(list(range(sql.BATCH + 1)))
    assert f.run().is_successful()
    process = get_store()._process
    assert process is not None and process.writing
    pid = os.fork()
    if pid == 0:  # the child: both pipe ends now read /dev/null
        ends = {os.readlink(f"/proc/self/fd/{fd}") for fd in (process._to, process._from)}
        os._exit(0 if ends == {os.devnull} else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert os.readlink(f"/proc/self/fd/{process._to}").startswith("pipe:")


# -- 6. a bad setting ----------------------------------------------------------------------------


def test_a_writer_setting_that_is_not_understood_is_refused(home, monkeypatch, caplog):
    monkeypatch.setenv("HEADRACE_HISTORY_WRITER", "fast")
    with pytest.raises(StoreError) as refused:
        open_recorder(f"sqlite:///{home}")
    assert str(refused.value) == (
        "HEADRACE_HISTORY_WRITER='fast' is not understood: use auto (the default: a writer "
        "process once a run records many rows), thread or process."
    )
    with caplog.at_level(logging.WARNING):
        monkeypatch.setenv("HEADRACE_HISTORY_WRITER", "Thread")
        assert open_recorder(f"sqlite:///{home}")._writes == "thread"
    assert caplog.records == []
