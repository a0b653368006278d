"""Run history in the SQLite store (src/headrace/store, engine/recorder.py).

1. Everything a run does is recorded: a graph flow (map, reduce, a failing
   child, a retry) and a function flow with a subflow leave their flow runs,
   task runs, states and log lines, read back through the store's own API.
   Reads go through a Reader (`open_reader()`), after flushing the recorder.
2. Flush: when `flow.run()` (or a top-level @flow call) returns, its rows are
   readable at once from a separate connection.
3. Retention: HEADRACE_HISTORY_RETENTION prunes old finished runs when a
   recorder is opened; `SQLRecorder.prune` and `reset`.
4. `get_store()`: HEADRACE_HISTORY=off, one recorder per database and process,
   runs left Running by a dead or silent process read Crashed, and a failed
   write warns once, before `flush()` returns.
5. Identity: task keys, map indexes, parents and edges are stored and read back.
6. A Reader changes nothing: the file's bytes and its siblings stay as they were.

Each test records into its own SQLite file under tmp_path (HEADRACE_HOME set per
test; `get_store()` opens a recorder per database URL and process). Faults (locks,
kill -9, foreign files, unwritable or full disks) are in faults/test_history.py.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from headrace import Flow, Parameter, flow, get_run_logger, task
from headrace.engine.clock import ManualClock
from headrace.executors import ThreadExecutor
from headrace.store import NULL, get_store, open_reader, open_recorder, retention
from headrace.store.records import FlowRun, LogRecord, StateRecord, TaskRun
from headrace.store.sql import PARAMETER_LIMIT, SCHEMA_VERSION, STALE_SECONDS, StoreError

BACKSTOP = 10.0  # seconds a blocked thread waits before the test fails instead of hanging
DAY = 86400.0


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh HEADRACE_HOME; the path of its database."""
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HEADRACE_DATABASE_URL", raising=False)
    monkeypatch.delenv("HEADRACE_HISTORY", raising=False)
    monkeypatch.delenv("HEADRACE_HISTORY_RETENTION", raising=False)
    return tmp_path / "home" / "headrace.db"


def read():
    """A Reader on this test's history, once the recorder has written everything."""
    get_store().flush()
    return open_reader()


def by_name(task_runs) -> dict:
    return {tr.name: tr for tr in task_runs}


def state_names(store, task_run_id: str) -> list[str]:
    return [s.name for s in store.states(task_run_id)]


def raw(path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(sql, params).fetchall()
        conn.commit()
        return rows
    finally:
        conn.close()


# -- 1. everything recorded: a graph flow --------------------------------------------------


def graph_flow():
    """numbers -> invert.map (child 0 divides by zero) -> total (TriggerFailed); flaky retries."""
    attempts = []

    @task
    def numbers(n):
        return list(range(n))

    @task(tags=["math", "cpu"])
    def invert(x):
        get_run_logger().info("inverting %d", x)
        return 1 / x

    @task
    def total(xs):
        return sum(xs)

    @task(retries=1, retry_delay=5)
    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("first attempt fails")
        return "ok"

    with Flow("recorded-graph") as f:
        n = Parameter("n", default=4)
        Parameter("blob", default="x" * (PARAMETER_LIMIT + 10))
        Parameter("odd", default={1, 2})  # not JSON: recorded as a marker
        total(invert.map(numbers(n)))
        flaky()
    return f


def test_graph_flow_run_is_recorded_whole(home):
    clock = ManualClock()
    state = graph_flow().run(clock=clock)
    assert state.is_failed()
    assert clock.sleeps == [5]
    assert get_store().where == str(home)
    store = read()
    assert store.where == str(home)

    [run] = store.flow_runs()
    assert (run.flow_name, run.style, run.parent_id) == ("recorded-graph", "graph", None)
    assert (run.state_type, run.state_name) == ("FAILED", "Failed")
    assert run.state_message == state.message
    assert (run.host, run.pid) == (socket.gethostname(), os.getpid())
    assert run.executor == "LocalExecutor()"
    assert run.start_time <= run.end_time
    assert run.parameters["n"] == 4
    blob = run.parameters["blob"]
    assert blob["__truncated__"] is True
    assert (blob["type"], blob["size"]) == ("str", PARAMETER_LIMIT + 12)  # JSON adds quotes
    assert blob["repr"].startswith("'xxxx") and len(blob["repr"]) == 200
    assert run.parameters["odd"]["__truncated__"] is True
    assert run.parameters["odd"]["repr"] == "{1, 2}"

    runs = by_name(store.task_runs(run.id))
    assert set(runs) == {
        "numbers",
        "invert",
        "invert[0]",
        "invert[1]",
        "invert[2]",
        "invert[3]",
        "total",
        "flaky",
    }
    assert all(tr.flow_run_id == run.id for tr in runs.values())
    whole = runs["invert"]
    assert (whole.state_name, whole.map_index, whole.parent_task_run_id) == ("Mapped", None, None)
    assert whole.upstream == [runs["numbers"].id]
    for i in range(4):
        child = runs[f"invert[{i}]"]
        assert child.map_index == i
        assert child.parent_task_run_id == whole.id
        assert child.upstream == [runs["numbers"].id]
        assert child.tags == ["cpu", "math"]
        assert child.task_key == whole.task_key == "invert-1"
    assert runs["invert[0]"].state_name == "Failed"
    assert "ZeroDivisionError" in runs["invert[0]"].state_message
    assert runs["invert[3]"].state_name == "Completed"
    assert runs["total"].state_name == "TriggerFailed"
    assert runs["total"].upstream == [whole.id]
    assert runs["flaky"].run_count == 2
    assert runs["numbers"].run_count == 1

    assert state_names(store, runs["flaky"].id) == ["Running", "Retrying", "Completed"]
    retrying = store.states(runs["flaky"].id)[1]
    assert "ConnectionError: first attempt fails" in retrying.message
    assert state_names(store, runs["invert[0]"].id) == ["Running", "Failed"]
    assert state_names(store, runs["total"].id) == ["Running", "TriggerFailed"]
    times = [s.time for s in store.states(runs["flaky"].id)]
    assert times == sorted(times)

    lines = [record for _, record in store.logs(run.id)]
    assert all(line.flow_run_id == run.id for line in lines)
    first, last = lines[0], lines[-1]
    assert first.message == f"Created flow run {run.name!r} for flow 'recorded-graph'"
    assert (first.logger, first.task_run_id) == ("headrace.engine", None)
    assert last.message.startswith("Finished in state Failed(")
    assert (last.logger, last.task_run_id, last.level) == (f"Flow run {run.name!r}", None, 40)
    task_lines = {line.message: line for line in lines if line.message.startswith("inverting")}
    assert set(task_lines) == {f"inverting {i}" for i in range(4)}
    for i in range(4):
        line = task_lines[f"inverting {i}"]
        assert line.task_run_id == runs[f"invert[{i}]"].id
        assert line.logger == f"Task run 'invert[{i}]'"
    ids = [log_id for log_id, _ in store.logs(run.id)]
    assert store.logs(run.id, after=ids[1]) == store.logs(run.id)[2:]


def test_graph_flow_failure_traceback_is_recorded(home):
    graph_flow().run(clock=ManualClock())
    store = read()
    [run] = store.flow_runs()
    child = by_name(store.task_runs(run.id))["invert[0]"]
    lines = [record for _, record in store.logs(run.id)]
    tracebacks = [line for line in lines if "Encountered exception" in line.message]
    assert [line.task_run_id for line in tracebacks] == [child.id]


# -- 1. everything recorded: a function flow with a subflow ---------------------------------


def function_flows():
    failed_once: set[int] = set()

    @task(retries=1, tags=["io"])
    def fetch(i):
        get_run_logger().info("fetching %d", i)
        if i == 0 and i not in failed_once:
            failed_once.add(i)
            raise TimeoutError("slow server")
        return {"i": i}

    @task
    def merge(parts):
        return sorted(p["i"] for p in parts)

    @flow(name="recorded-child")
    def child(numbers):
        get_run_logger().info("child got %d numbers", len(numbers))
        return merge([{"i": n} for n in numbers])

    @flow(name="recorded-parent", clock=ManualClock())
    def parent(n, blob):
        first = fetch.submit(0)
        rest = fetch.map(range(1, n))
        merged = merge.submit([first, *rest])
        return child(merged.result())

    return parent


def test_function_flow_and_subflow_are_recorded(home):
    parent = function_flows()
    assert parent(3, "y" * (PARAMETER_LIMIT + 1)) == [0, 1, 2]
    store = read()

    runs = {r.flow_name: r for r in store.flow_runs()}
    assert set(runs) == {"recorded-parent", "recorded-child"}
    top, sub = runs["recorded-parent"], runs["recorded-child"]
    assert (top.style, sub.style) == ("function", "function")
    assert top.parent_id is None and sub.parent_id == top.id
    assert store.flow_runs(parent_id=top.id) == [sub]
    assert (top.state_name, sub.state_name) == ("Completed", "Completed")
    assert top.parameters["n"] == 3
    assert top.parameters["blob"]["__truncated__"] is True
    assert sub.parameters == {"numbers": [0, 1, 2]}
    assert top.start_time <= sub.start_time <= sub.end_time <= top.end_time

    tasks = by_name(store.task_runs(top.id))
    # The map has a record of its own, parent of its children, as in graph flows.
    assert set(tasks) == {"fetch-0", "fetch", "fetch[0]", "fetch[1]", "merge-0"}
    assert {tasks[f"fetch[{i}]"].parent_task_run_id for i in (0, 1)} == {tasks["fetch"].id}
    assert tasks["fetch-0"].run_count == 2
    assert tasks["fetch-0"].tags == ["io"]
    assert state_names(store, tasks["fetch-0"].id) == ["Running", "Retrying", "Completed"]
    assert [tasks[f"fetch[{i}]"].map_index for i in (0, 1)] == [0, 1]
    assert tasks["merge-0"].upstream == [
        tasks["fetch-0"].id,
        tasks["fetch[0]"].id,
        tasks["fetch[1]"].id,
    ]
    assert [tr.name for tr in store.task_runs(sub.id)] == ["merge-0"]

    lines = [record for _, record in store.logs(top.id)]
    messages = [line.message for line in lines]
    assert messages[0] == f"Created flow run {top.name!r} for flow 'recorded-parent'"
    assert "Created task run 'fetch-0' for task 'fetch'" in messages
    assert f"Created subflow run {sub.name!r} for flow 'recorded-child'" in messages
    assert messages[-1] == "Finished in state Completed('All states completed.')"
    fetching = [line for line in lines if line.message == "fetching 0"]
    assert [line.task_run_id for line in fetching] == [tasks["fetch-0"].id] * 2
    for i in (1, 2):
        [line] = [line for line in lines if line.message == f"fetching {i}"]
        assert line.task_run_id == tasks[f"fetch[{i - 1}]"].id
    sub_messages = [record.message for _, record in store.logs(sub.id)]
    assert "child got 3 numbers" in sub_messages
    assert "child got 3 numbers" not in messages
    assert sub_messages[-1].startswith("Finished in state Completed")


def test_function_flow_retry_line_names_its_task_run(home):
    function_flows()(2, "b")
    store = read()
    top = store.flow_runs(flow_name="recorded-parent")[0]
    fetch = by_name(store.task_runs(top.id))["fetch-0"]
    [retry] = [r for _, r in store.logs(top.id) if "Retrying in" in r.message]
    assert retry.task_run_id == fetch.id


def test_function_flow_lines_logged_on_worker_threads_are_recorded(home):
    submitted = threading.Event()

    @task
    def late():
        assert submitted.wait(BACKSTOP)  # finish only after submit() has returned
        return 1

    @flow(executor=ThreadExecutor(2))
    def worker_thread_flow():
        future = late.submit()
        submitted.set()
        return future.result()

    assert worker_thread_flow() == 1
    store = read()
    [run] = store.flow_runs()
    [late_run] = store.task_runs(run.id)
    assert late_run.state_name == "Completed"  # the record itself lands ...
    finished = [r for _, r in store.logs(run.id) if r.task_run_id == late_run.id]
    assert [r.message for r in finished] == ["Finished in state Completed()"]  # ... its line not


# -- 2. flush: a finished run is readable at once -------------------------------------------


def test_rows_are_readable_from_another_connection_when_run_returns(home):
    @task
    def one(x):
        get_run_logger().info("item %d", x)
        return x

    with Flow("flushed") as f:
        one.map(list(range(3000)))
    state = f.run()
    # No flush, no wait: the end of the run flushed. A second store is a second connection.
    other = open_reader(f"sqlite:///{home}")
    [run] = other.flow_runs()
    assert run.state_name == "Completed" and run.end_time is not None
    assert len(other.task_runs(run.id)) == 3001
    lines = other.logs(run.id)
    assert lines[-1][1].message == "Finished in state Completed('All reference tasks succeeded.')"
    assert sum(r.message.startswith("item ") for _, r in lines) == 3000
    rows = "SELECT (SELECT count(*) FROM task_runs) + (SELECT count(*) FROM task_run_children)"
    assert raw(home, rows)[0][0] == 3001  # (the children that completed alike: compact)
    assert state.is_successful()

    @flow
    def function_flow():
        return [one(i) for i in range(50)]

    function_flow()
    [fn_run] = [r for r in other.flow_runs() if r.style == "function"]
    assert fn_run.state_name == "Completed"
    assert len(other.task_runs(fn_run.id)) == 50


# -- 3. retention, prune, reset -------------------------------------------------------------


def record_runs(count: int) -> list[str]:
    """`count` finished graph-flow runs (a task, a retry, a log line each); their ids."""

    failed: set[int] = set()

    @task(retries=1)
    def step(i):
        get_run_logger().info("step %d", i)
        if i not in failed:
            failed.add(i)
            raise ValueError("retry me")
        return i

    with Flow("kept") as f:
        i = Parameter("i")
        step(i)
    for i in range(count):
        assert f.run(parameters={"i": i}, clock=ManualClock()).is_successful()
    return [r.id for r in sorted(read().flow_runs(), key=lambda r: r.start_time)]


def age(path, run_id: str, days: float) -> None:
    """Move a run's times `days` into the past, as if it ran then."""
    shift = days * DAY
    conn = sqlite3.connect(path)
    conn.execute(
        "UPDATE flow_runs SET start_time = start_time - ?, end_time = end_time - ? WHERE id = ?",
        (shift, shift, run_id),
    )
    conn.commit()
    conn.close()


def rows_of(path, run_id: str) -> dict[str, int]:
    return {
        table: raw(path, f"SELECT count(*) FROM {table} WHERE {column} = ?", (run_id,))[0][0]
        for table, column in (
            ("flow_runs", "id"),
            ("task_runs", "flow_run_id"),
            ("task_run_states", "flow_run_id"),
            ("logs", "flow_run_id"),
        )
    }


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("30d", 30 * DAY),
        ("12h", 12 * 3600.0),
        ("90m", 5400.0),
        ("45s", 45.0),
        (" 1.5H ", 5400.0),
        ("2 d", 2 * DAY),
        ("", None),
    ],
)
def test_retention_setting_is_parsed(monkeypatch, text, seconds):
    monkeypatch.setenv("HEADRACE_HISTORY_RETENTION", text)
    assert retention() == seconds


def test_retention_unset_keeps_everything(monkeypatch):
    monkeypatch.delenv("HEADRACE_HISTORY_RETENTION", raising=False)
    assert retention() is None


@pytest.mark.parametrize("text", ["30", "30x", "d", "-1d", "thirty days", "1w"])
def test_retention_setting_that_is_not_understood_is_refused(home, monkeypatch, text):
    monkeypatch.setenv("HEADRACE_HISTORY_RETENTION", text)
    with pytest.raises(StoreError, match=r"HEADRACE_HISTORY_RETENTION=.*s, m, h or d.*unset"):
        retention()
    with Flow("refused") as f:
        task(lambda: 1)()
    with pytest.raises(StoreError, match="HEADRACE_HISTORY_RETENTION"):
        f.run()
    assert not home.exists()  # refused before anything was opened or created


def test_retention_prunes_old_finished_runs_when_a_store_is_opened(home, monkeypatch):
    old, recent, fresh = record_runs(3)
    age(home, old, 40)
    age(home, recent, 10)
    # A run still going whose start is long past: alive (this process), so never pruned.
    conn = sqlite3.connect(home)
    conn.execute(
        "INSERT INTO flow_runs (id, name, flow_name, style, state_type, state_name, start_time,"
        " host, pid, heartbeat) VALUES ('going', 'going', 'kept', 'graph', 'RUNNING', 'Running',"
        " ?, ?, ?, ?)",
        (time.time() - 90 * DAY, socket.gethostname(), os.getpid(), time.time()),
    )
    conn.commit()
    conn.close()
    before = rows_of(home, old)
    assert before["task_runs"] == 1 and before["task_run_states"] == 1 and before["logs"] >= 3

    results = home.parent / "results"
    for run in (old, recent):  # persisted results (as a result too large to keep inline is)
        (results / run).mkdir(parents=True)
        (results / run / f"{run}-0").write_bytes(b"x" * 2000)

    monkeypatch.setenv("HEADRACE_HISTORY_RETENTION", "30d")
    open_recorder()
    store = open_reader()
    assert rows_of(home, old) == dict.fromkeys(before, 0)
    assert sorted(p.name for p in results.iterdir()) == [recent]  # the old run's results went
    assert [r.id for r in sorted(store.flow_runs(), key=lambda r: r.start_time)] == [
        "going",
        recent,
        fresh,
    ]
    assert rows_of(home, recent) == rows_of(home, fresh) != dict.fromkeys(before, 0)

    monkeypatch.setenv("HEADRACE_HISTORY_RETENTION", "5d")
    open_recorder()
    assert sorted(r.id for r in store.flow_runs()) == sorted(["going", fresh])

    monkeypatch.delenv("HEADRACE_HISTORY_RETENTION")
    age(home, fresh, 365)
    open_recorder()  # unset: keeps everything, however old
    assert sorted(r.id for r in store.flow_runs()) == sorted(["going", fresh])


def test_prune_deletes_only_finished_runs_that_ended_before_the_cutoff(home):
    first, second = record_runs(2)
    store = get_store()
    cutoff = read().flow_run(second).end_time  # `second` ended at, not before, the cutoff
    assert store.prune(cutoff) == 1
    assert [r.id for r in read().flow_runs()] == [second]
    assert rows_of(home, first) == dict.fromkeys(rows_of(home, first), 0)
    assert rows_of(home, second)["task_run_states"] == 1
    assert store.prune(cutoff) == 0
    raw(home, "UPDATE flow_runs SET state_type = 'RUNNING', end_time = 1 WHERE id = ?", (second,))
    assert store.prune(time.time()) == 0  # a running run is never pruned, whatever its times


def test_reset_empties_the_history_and_recording_goes_on(home):
    record_runs(2)
    store = get_store()
    store.reset()
    for table in ("flow_runs", "task_runs", "task_run_states", "logs", "cache_entries"):
        assert raw(home, f"SELECT count(*) FROM {table}") == [(0,)]
    assert dict(raw(home, "SELECT key, value FROM headrace_meta")) == {
        "app": "headrace",
        "schema_version": str(SCHEMA_VERSION),
    }
    [new] = record_runs(1)
    assert get_store() is store
    assert rows_of(home, new)["task_runs"] == 1


# -- 4. get_store(), crash marking ------------------------------------------------------------


def test_history_off_records_nothing(home, monkeypatch):
    monkeypatch.setenv("HEADRACE_HISTORY", "off")
    assert get_store() is NULL
    with Flow("unrecorded") as f:
        task(lambda: 1)()
    assert f.run().is_successful()
    assert not home.exists()


def test_one_store_per_database_and_process(home, tmp_path, monkeypatch):
    store = get_store()
    assert get_store() is store
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path / "elsewhere"))
    other = get_store()
    assert other is not store and other.where == str(tmp_path / "elsewhere" / "headrace.db")
    monkeypatch.setenv("HEADRACE_HOME", str(home.parent))
    assert get_store() is not store  # reopened: one store is cached at a time


def test_a_new_process_opens_its_own_store(home, monkeypatch):
    """The cache is per database and process: a forked child must not write through the
    parent's store, whose writer thread did not come along. (A new pid stands in for a fork:
    forking the test process itself, threads and all, is what faults/test_history.py guards.)"""
    parent = get_store()
    real_getpid, real_pid = os.getpid, os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)
    child = get_store()
    assert child is not parent and child.where == parent.where
    assert get_store() is child
    with Flow("child-process") as f:
        task(lambda: 1)()
    assert f.run().is_successful()
    child.flush()
    [run] = open_reader().flow_runs()
    assert (run.pid, run.state_name) == (real_pid + 1, "Completed")
    monkeypatch.setattr(os, "getpid", real_getpid)
    again = get_store()  # back in the first process: opened again
    assert again not in (parent, child) and again.where == parent.where


def insert_running(path, run_id: str, host: str, pid: int, heartbeat: float) -> None:
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO flow_runs (id, name, flow_name, style, state_type, state_name, start_time,"
        " host, pid, heartbeat) VALUES (?, ?, 'f', 'graph', 'RUNNING', 'Running', ?, ?, ?, ?)",
        (run_id, run_id, heartbeat, host, pid, heartbeat),
    )
    conn.commit()
    conn.close()


def test_runs_of_dead_or_silent_processes_are_marked_crashed_on_open(home):
    open_recorder()  # the schema
    proc = multiprocessing.get_context("spawn").Process(target=int)
    proc.start()
    proc.join(BACKSTOP)
    here, now = socket.gethostname(), time.time()
    insert_running(home, "dead", here, proc.pid, now)
    insert_running(home, "alive", here, os.getpid(), now)
    insert_running(home, "silent", "elsewhere", 1, now - STALE_SECONDS - 5)
    insert_running(home, "remote", "elsewhere", 1, now)  # another host, beating: left alone

    open_recorder()
    store = open_reader()
    states = {r.id: (r.state_type, r.state_name) for r in store.flow_runs()}
    assert states == {
        "dead": ("CRASHED", "Crashed"),
        "silent": ("CRASHED", "Crashed"),
        "alive": ("RUNNING", "Running"),
        "remote": ("RUNNING", "Running"),
    }
    dead = store.flow_run("dead")
    assert dead.state_message == "The process running this flow run stopped before it finished."
    assert dead.end_time >= now


# -- the writer's warning -------------------------------------------------------------------


def test_a_failed_write_warns_once_and_flush_waits_for_the_warning(home):
    """Regression: `_disable` set its flag before warning, so `flush()` could return on the
    flag and the process exit before the warning was printed (seen 2 in 60 runs)."""
    store = open_recorder(f"sqlite:///{home}")
    raw(home, "DROP TABLE logs")  # the writer's next batch fails: not a lock, so history stops
    entered, release, seen = threading.Event(), threading.Event(), []

    class Gate(logging.Handler):
        def emit(self, record):
            entered.set()
            assert release.wait(BACKSTOP)
            seen.append(record.getMessage())

    logger = logging.getLogger("headrace.store")
    gate = Gate()
    logger.addHandler(gate)
    try:
        store.log(LogRecord("run", None, 20, time.time(), "x", "a line"))
        assert entered.wait(BACKSTOP)
        # The writer is printing its warning: a flush now must not return before it is out.
        assert store.recording
        flushed = []

        def flush() -> None:
            store.flush(BACKSTOP)
            flushed.append(list(seen))  # what had been printed when flush() returned

        flusher = threading.Thread(target=flush)
        flusher.start()
        release.set()
        flusher.join(BACKSTOP)
        assert flushed == [[flushed[0][0]]]  # the warning was out before flush returned
        assert not store.recording
        store.log(LogRecord("run", None, 20, time.time(), "x", "another line"))
        store.flush(BACKSTOP)
    finally:
        logger.removeHandler(gate)
    [warning] = seen
    assert warning.startswith(f"Run history is not being recorded: writing to {home} failed: ")
    assert "no such table: logs" in warning


# -- 5. identity: keys, map indexes, parents and edges are stored and read back ----------------


def identity_records(flow_run_id: str) -> list[TaskRun]:
    """A graph-style map (a whole and its children), a function-style map per call, a reduce."""
    t0 = 1000.0
    source = TaskRun(f"{flow_run_id}-src", flow_run_id, "source", "source", task_key="source-1",
                     start_time=t0, end_time=t0 + 1, state_type="COMPLETED",
                     state_name="Completed")  # fmt: skip
    whole = TaskRun(f"{flow_run_id}-m", flow_run_id, "double", "double", task_key="double-1",
                    upstream=[source.id], state_type="COMPLETED", state_name="Mapped")  # fmt: skip
    children = [
        TaskRun(f"{flow_run_id}-m.{i}", flow_run_id, "double", f"double[{i}]",
                task_key="double-1", map_index=i, parent_task_run_id=whole.id,
                upstream=[source.id], tags=["web", "cpu"], start_time=t0 + 2 + i,
                end_time=t0 + 3 + i, state_type="FAILED" if i == 1 else "COMPLETED",
                state_name="Failed" if i == 1 else "Completed", run_count=1 + (i == 1))
        for i in range(3)
    ]  # fmt: skip
    loose = [  # two maps of one task, only their children recorded, told apart by task_key
        TaskRun(f"{flow_run_id}-f{call}.{i}", flow_run_id, "add", f"add[{i}]",
                task_key=f"add-{call}", map_index=i, start_time=t0 + 10 * call + i,
                end_time=t0 + 10 * call + i + 1, state_type="COMPLETED",
                state_name="Completed")
        for call in (1, 2) for i in range(2)
    ]  # fmt: skip
    reduce = TaskRun(f"{flow_run_id}-r", flow_run_id, "total", "total", task_key="total-1",
                     upstream=[whole.id, *(c.id for c in loose)], start_time=t0 + 30,
                     end_time=t0 + 31, state_type="FAILED", state_name="TriggerFailed",
                     state_message="upstream failed")  # fmt: skip
    return [source, whole, *children, *loose, reduce]


def record_identity(recorder, flow_run_id: str) -> list[TaskRun]:
    recorder.flow_run_started(FlowRun(flow_run_id, "identity-run", "identity", "graph",
                                      start_time=999.0))  # fmt: skip
    records = identity_records(flow_run_id)
    for record in records:
        recorder.task_run(record)
    recorder.task_state(StateRecord(records[3].id, flow_run_id, "PENDING", "Retrying",
                                    "try again", 1003.5))  # fmt: skip
    recorder.flow_run_ended(flow_run_id, "FAILED", "Failed", "boom", 1040.0)
    recorder.flush()
    return records


def check_identity(reader, flow_run_id: str, records: list[TaskRun]) -> None:
    """What `record_identity` wrote, read back field for field through a Reader."""
    expected = {r.id: r for r in records}
    for r in records:
        r.tags = sorted(r.tags)
    got = reader.task_runs(flow_run_id)
    assert {t.id: t for t in got} == expected
    assert got[0].id == f"{flow_run_id}-m"  # the mapped task's own run (no start) leads
    child = {t.id: t for t in got}[f"{flow_run_id}-m.1"]
    assert (child.task_key, child.map_index, child.parent_task_run_id, child.upstream) == (
        "double-1", 1, f"{flow_run_id}-m", [f"{flow_run_id}-src"],
    )  # fmt: skip
    assert reader.task_runs(flow_run_id, limit=3, offset=2) == got[2:5]
    assert reader.task_runs(flow_run_id, offset=9) == got[9:]
    assert {t.id for t in reader.task_runs(flow_run_id, children=False)} == {
        f"{flow_run_id}-{k}" for k in ("src", "m", "r")
    }
    assert len(reader.task_runs(flow_run_id, children=True)) == 7

    groups = reader.map_groups(flow_run_id)
    assert [(g.parent_task_run_id, g.task_key, g.task_name, g.size) for g in groups] == [
        (f"{flow_run_id}-m", "double-1", "double", 3),
        (None, "add-1", "add", 2),
        (None, "add-2", "add", 2),
    ]
    assert groups[0].counts == {"Completed": 2, "Failed": 1}
    assert groups[0].failed == ["double[1]"] and groups[1].failed == []
    assert (groups[0].start_time, groups[0].end_time) == (1002.0, 1005.0)
    assert [s.name for s in reader.states(child.id)] == ["Running", "Retrying", "Failed"]


def test_identity_fields_are_stored_and_read_back(home):
    records = record_identity(get_store(), "identity-1")
    with open_reader() as reader:
        check_identity(reader, "identity-1", records)
        run = reader.flow_run("identity-run")
        assert (run.state_name, run.end_time, run.host) == ("Failed", 1040.0, socket.gethostname())


def test_recorded_upstream_ids_of_any_shape_stay_json(home):
    odd = ['quote"d', "back\\slash", "new\nline"]
    get_store().task_run(TaskRun("odd", "run", "t", "t", upstream=odd))
    get_store().flush()
    assert open_reader().task_runs("run")[0].upstream == odd


# -- 6. a Reader changes nothing ----------------------------------------------------------------

RECORD_SOME = """
from headrace import Flow, task
@task(retries=1)
def check(x):
    if x == 1:
        raise ValueError("bad")
    return x
with Flow("quiet") as f:
    check.map([0, 1, 2])
f.run()
"""


def fingerprint(path) -> tuple:
    siblings = tuple(os.path.exists(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-journal"))
    return path.read_bytes(), siblings, sorted(os.listdir(path.parent))


def every_query(reader) -> None:
    """Every query a Reader has, with every filter."""
    runs = reader.flow_runs(limit=None)
    for state in ("crashed", "running", "FAILED", "Completed"):
        reader.flow_runs(state=state)
    reader.flow_runs(flow_name="quiet", limit=1, before=time.time())
    reader.flow_runs(parent_id=runs[0].id)
    for run in runs:
        assert reader.flow_run(run.id) == reader.flow_run(run.id[:13]) == reader.flow_run(run.name)
        for task_run in reader.task_runs(run.id):
            reader.states(task_run.id)
        reader.task_runs(run.id, limit=2, offset=1, children=True)
        reader.map_groups(run.id)
        reader.logs(run.id, after=1, limit=3)


def test_opening_a_reader_and_reading_changes_nothing(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    env.update(HEADRACE_HOME=str(home.parent), HEADRACE_PROGRESS="off")
    done = subprocess.run([sys.executable, "-c", RECORD_SOME], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    # What a writer would change on opening: a dead process's Running run, an old finished run
    # under a retention setting.
    proc = multiprocessing.get_context("spawn").Process(target=int)
    proc.start()
    proc.join(BACKSTOP)
    insert_running(home, "dead", socket.gethostname(), proc.pid, time.time())
    age(home, raw(home, "SELECT id FROM flow_runs WHERE id != 'dead'")[0][0], 40)
    assert not os.path.exists(f"{home}-wal")  # no connection is open: a quiet WAL file
    assert raw(home, "PRAGMA journal_mode") == [("wal",)]
    before, threads = fingerprint(home), threading.active_count()

    os.environ["HEADRACE_HISTORY_RETENTION"] = "1d"  # the fixture's monkeypatch restores it
    reader = open_reader()
    every_query(reader)
    assert reader.flow_run("dead").state_name == "Crashed"  # shown so, not written so
    assert [r.id for r in reader.flow_runs(state="crashed")] == ["dead"]
    assert "dead" not in {r.id for r in reader.flow_runs(state="running")}
    reader.close()
    assert fingerprint(home) == before
    assert threading.active_count() == threads
    assert raw(home, "SELECT state_type FROM flow_runs WHERE id = 'dead'") == [("RUNNING",)]

    # With a writer's connection open (its -wal and -shm exist), reading adds nothing either.
    writer = sqlite3.connect(home)
    writer.execute("SELECT count(*) FROM flow_runs").fetchall()
    try:
        before = fingerprint(home)
        assert before[1][:2] == (True, True)
        every_query(open_reader())
        assert fingerprint(home) == before
    finally:
        writer.close()


def test_a_reader_refuses_what_it_cannot_read_and_says_what_to_do(home, tmp_path):
    from headrace.store import StoreMissing

    with pytest.raises(StoreMissing, match="No run history has been recorded in"):
        open_reader()
    assert not home.parent.exists()  # nothing was created, not even the directory

    open_recorder()
    raw(home, "UPDATE headrace_meta SET value = '0' WHERE key = 'schema_version'")
    before = fingerprint(home)
    with pytest.raises(StoreError, match=r"schema version 0.*Run `headrace db upgrade`"):
        open_reader()
    raw(home, "UPDATE headrace_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99, made by a newer headrace"):
        open_reader()

    foreign = tmp_path / "foreign.db"
    raw(foreign, "CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreError, match="is not a headrace database"):
        open_reader(f"sqlite:///{foreign}")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all, just some bytes" * 20)
    with pytest.raises(StoreError, match="is not a SQLite database"):
        open_reader(f"sqlite:///{junk}")
    assert junk.read_bytes() == b"not a database at all, just some bytes" * 20
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="Cannot open the run history at .* is not a directory"):
        open_reader(f"sqlite:///{blocker}/home/headrace.db")
    assert fingerprint(home)[1:] == before[1:]


def test_a_graph_run_records_to_the_recorder_it_is_given(home, tmp_path):
    @task
    def one():
        return 1

    with Flow("elsewhere") as graph:
        one()
    other = open_recorder(f"sqlite:///{tmp_path / 'other.db'}")
    state = graph.run(recorder=other)
    other.flush()
    with open_reader(f"sqlite:///{tmp_path / 'other.db'}") as reader:
        assert [r.id for r in reader.flow_runs()] == [state.flow_run_id]
        assert [t.task_key for t in reader.task_runs(state.flow_run_id)] == ["one-1"]
    silent = graph.run(recorder=NULL)
    assert silent.is_successful()
    get_store().flush()
    with open_reader() as reader:  # the settings' store got neither run
        assert {state.flow_run_id, silent.flow_run_id}.isdisjoint(
            r.id for r in reader.flow_runs(limit=1000)
        )


def test_a_version_1_store_is_upgraded_and_keeps_its_runs(home):
    from headrace.store.sql import SCHEMA_VERSION, schema
    from headrace.store.sqlite import DIALECT

    home.parent.mkdir(parents=True)
    conn = sqlite3.connect(home)
    for statement in schema(DIALECT):
        conn.execute(statement)
    conn.execute("INSERT INTO headrace_meta VALUES ('app', 'headrace'), ('schema_version', '1')")
    conn.execute(
        "INSERT INTO flow_runs (id, name, flow_name, style, state_type, state_name, start_time)"
        " VALUES ('old', 'old-run', 'old-flow', 'function', 'COMPLETED', 'Completed', 1.0)"
    )
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="headrace db upgrade"):
        open_reader()  # reading changes nothing, so it cannot upgrade
    open_recorder()  # a writer migrates as it opens
    reader = open_reader()
    assert reader.schema_version() == SCHEMA_VERSION == 6
    assert {"schedules", "scheduled_runs", "tag_limits", "limit_claims", "task_run_children"} <= {
        name for (name,) in raw(home, "SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    old = reader.flow_run("old")
    assert (old.name, old.state_name, old.upstream, old.resumed_from) == (
        "old-run",
        "Completed",
        [],
        None,
    )


def test_the_history_is_readable_by_its_owner_only(tmp_path, monkeypatch):
    home = tmp_path / "new" / "home"
    monkeypatch.setenv("HEADRACE_HOME", str(home))
    monkeypatch.delenv("HEADRACE_DATABASE_URL", raising=False)
    monkeypatch.delenv("HEADRACE_HISTORY", raising=False)
    record_runs(1)
    get_store().flush()
    assert (home.stat().st_mode & 0o777, home.parent.stat().st_mode & 0o777) == (0o700, 0o700)
    files = [p for p in home.iterdir() if p.name.startswith("headrace.db")]
    assert files and all(p.stat().st_mode & 0o777 == 0o600 for p in files), [
        (p.name, oct(p.stat().st_mode)) for p in files
    ]


def test_a_run_faster_than_the_writer_keeps_a_bounded_backlog_and_loses_nothing(home):
    """The writer falls behind a fast producer: the producer waits once BACKLOG rows are
    queued (its run's end would wait for them anyway), so memory stays flat."""
    from headrace.store.sql import BACKLOG, BATCH

    store = open_recorder(f"sqlite:///{home}")
    run_id = "ba0c" + "0" * 28
    store.flow_run_started(FlowRun(run_id, "backlog", "backlog", "graph", start_time=time.time()))
    seen = []
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.002):
            seen.append(store._queue.qsize())

    sampler = threading.Thread(target=sample)
    sampler.start()
    lines = 6 * BACKLOG
    try:
        for i in range(lines):
            store.log(LogRecord(run_id, None, logging.INFO, time.time(), "flow", f"line {i}"))
    finally:
        sampling.set()
        sampler.join()
    store.flush()
    assert max(seen) <= BACKLOG + BATCH, max(seen)
    with open_reader(f"sqlite:///{home}") as reader:
        assert len(list(reader.logs(run_id))) == lines
