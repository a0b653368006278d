"""The run-history store under faults (src/headrace/store): what the module docstrings promise.

1. Many writers: 8 processes each run a 1,000-task flow at once against one new
   SQLite file. Every run lands, no lock error reaches anyone, all exit 0 (this
   also races 8 processes creating the schema of a new file). No reader sees a
   half-made schema; a write lock held by someone else delays rows, loses none;
   a fork waits until the writer thread is out of SQLite.
2. kill -9 in the middle of a run: the file reads clean afterwards and the next
   open marks the run Crashed; what was flushed before the kill is still there.
3. Files that are not ours: not SQLite, someone else's tables, a newer schema.
   Each is refused with a StoreError naming the path and what to do, and the
   file is left byte for byte as it was (no WAL switch, no -wal or -shm files).
4. Unwritable history: HEADRACE_HOME under a regular file, on a read-only
   filesystem, on a full one. The flow runs and completes, and stderr says once
   that history is not being recorded. The read-only and full cases mount a
   tmpfs (tests run as root; chmod does not stop root) and are skipped, with the
   reason, where mount is not permitted. A PostgreSQL server that does not
   answer is warned of once, and the flows run.
5. A PostgreSQL server that goes away mid-run: the writer waits it out, and
   what it cannot write is counted in the run's end.
6. Text no driver encodes (a lone surrogate, a NUL) is recorded with visible
   escapes, on SQLite and on PostgreSQL, and the writer goes on.

Processes are real: children are `python -c` scripts started with the test's
HEADRACE_HOME; they signal readiness on stdout and the test releases them on
stdin, so nothing here waits on a timer. (The fork test's child polls for a state
its writer thread reaches, with a backstop; the outage tests run the writer on a
manual clock.)
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from headrace import Flow, Parameter, flow, get_run_logger, task
from headrace.engine.clock import ManualClock
from headrace.store import get_store, open_reader, open_recorder, sql
from headrace.store import sqlite as sqlite_store
from headrace.store.records import FlowRun, TaskRun
from headrace.store.sql import SCHEMA_VERSION, StoreError
from headrace.store.sqlite import DIALECT
from postgres_cluster import free_port, needs_pg

BACKSTOP = 60.0  # seconds a child may take before the test fails instead of hanging
WRITERS = 8
TASKS = 1000
WARNING = "Run history is not being recorded"


def child_env(home, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    env.update(HEADRACE_HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    return env


def start(script: str, home, *args: str, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=child_env(home, **env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_child(script: str, home, *args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=child_env(home, **env),
        capture_output=True,
        text=True,
        timeout=BACKSTOP,
    )


def integrity(path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


# -- 1. eight processes, one file ------------------------------------------------------------

WRITER = f"""
import sys, time
from headrace import Flow, task

@task
def numbers(n):
    return list(range(n))

@task(tags=["work"])
def inc(x):
    return x + 1

with Flow("many-writers") as f:
    inc.map(numbers({TASKS}))
print("READY", flush=True)
sys.stdin.readline()  # the barrier: every process starts its run at once
started = time.perf_counter()
state = f.run()
print("DONE", state.name, round(time.perf_counter() - started, 3), flush=True)
"""


def test_eight_processes_write_one_sqlite_file_at_once(tmp_path, record_property):
    home = tmp_path / "home"  # a new file: the 8 also race to create the schema
    # Retention set: each process also prunes on open, under the same contention.
    children = [start(WRITER, home, HEADRACE_HISTORY_RETENTION="30d") for _ in range(WRITERS)]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "READY", child.stderr.read()
        began = time.perf_counter()
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=BACKSTOP) for child in children]
        wall = time.perf_counter() - began
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    record_property("wall_seconds", round(wall, 2))
    print(f"\n{WRITERS} processes x {TASKS} tasks on one SQLite file: {wall:.2f} s wall")
    for child, (out, err) in zip(children, outputs):
        assert child.returncode == 0, err
        assert out.startswith("DONE Completed"), out + err
        lowered = err.lower()
        assert "locked" not in lowered and "busy" not in lowered, err
        assert WARNING not in err and "Traceback" not in err, err

    db = home / "headrace.db"
    assert integrity(db) == "ok"
    store = open_reader(f"sqlite:///{db}")
    runs = store.flow_runs(limit=None)
    assert len(runs) == WRITERS
    assert {r.state_name for r in runs} == {"Completed"}
    assert len({r.pid for r in runs}) == WRITERS
    per_run = TASKS + 2  # numbers, the mapped inc as a whole, and its children
    for run in runs:
        task_runs = store.task_runs(run.id)
        assert len(task_runs) == per_run
        assert sum(tr.map_index is not None for tr in task_runs) == TASKS
        assert all(tr.state_type == "COMPLETED" for tr in task_runs)
        assert store.logs(run.id)[-1][1].message.startswith("Finished in state Completed")
    conn = sqlite3.connect(db)
    rows = "SELECT (SELECT count(*) FROM task_runs) + (SELECT count(*) FROM task_run_children)"
    assert conn.execute(rows).fetchone()[0] == WRITERS * per_run
    conn.close()


def test_no_one_sees_a_half_made_schema(tmp_path, monkeypatch):
    """Regression: the schema was made one autocommitted statement at a time, so a second
    process opening a new file could find headrace_meta before its rows and refuse the file
    as "not a headrace database" (1 run in 5 of the test above). Looked at from another
    connection after the first statement, the file must still be empty."""
    db = tmp_path / "new.db"
    seen = []

    def schema_watched(dialect):
        statements = sql.schema(dialect)
        assert "headrace_meta" in statements[0]
        yield statements[0]
        probe = sqlite3.connect(db, timeout=0)
        try:  # what another process opening the file now would see
            seen.append(sql.schema_version(probe, DIALECT, str(db)))
        finally:
            probe.close()
        yield from statements[1:]

    monkeypatch.setitem(sql.MIGRATIONS, 1, schema_watched)
    open_recorder(f"sqlite:///{db}")
    assert seen == [None]  # an empty database, to be made, not a foreign one
    assert open_reader(f"sqlite:///{db}").flow_runs() == []


def test_a_held_write_lock_delays_recording_and_loses_nothing(tmp_path, monkeypatch):
    db = tmp_path / "home" / "headrace.db"
    monkeypatch.setenv("HEADRACE_HOME", str(db.parent))
    monkeypatch.delenv("HEADRACE_DATABASE_URL", raising=False)
    store = get_store()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing, for a while
    started, results = threading.Event(), []

    @task
    def work(x):
        started.set()
        return x + 1

    with Flow("waits-for-the-lock") as f:
        work.map(list(range(100)))
    runner = threading.Thread(target=lambda: results.append(f.run()))
    runner.start()
    try:
        assert started.wait(BACKSTOP)  # running, its first rows queued behind the lock
    finally:
        holder.execute("COMMIT")
        holder.close()
    runner.join(BACKSTOP)
    assert results and results[0].is_successful()
    assert store.recording
    reader = open_reader()
    [run] = reader.flow_runs()
    assert run.state_name == "Completed"
    assert len(reader.task_runs(run.id)) == 101


FORKS_BESIDE_A_BUSY_WRITER = """
import os, sqlite3, sys, threading, time
from headrace.store import open_reader, open_recorder, sql
from headrace.store.records import LogRecord

def wait_until(condition):
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)

db = sys.argv[1]
store = open_recorder(f"sqlite:///{db}")
store.flush()  # the writer has connected: the lock it holds next is for the line below
holder = sqlite3.connect(db, isolation_level=None)
holder.execute("BEGIN IMMEDIATE")  # the writer's next batch waits inside SQLite
released, forked_after_release = threading.Event(), []
store.log(LogRecord("run", None, 20, time.time(), "x", "a line"))
wait_until(sql._DRIVER.locked)  # this process has no other writer: it is ours

def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    forked_after_release.append(released.is_set())
    os.waitpid(pid, 0)

forker = threading.Thread(target=fork)
forker.start()
wait_until(lambda: sql._forking)  # the fork waits for the driver
released.set()
holder.execute("COMMIT")
holder.close()
forker.join(60)
store.flush(60)
print(forked_after_release, [r.message for _, r in open_reader(f"sqlite:///{db}").logs("run")])
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_waits_until_the_writer_is_out_of_sqlite(tmp_path):
    """Regression: SQLite's mutexes do not survive fork(). A child forked while the writer
    thread was inside SQLite hung on its first connect (9 children in 100, forked beside a
    busy writer); a process executor's worker logging a line is such a child. A fork now
    waits for the writer to leave the driver. (In a process of its own: the lock it watches
    is every writer's in a process, and this one has only the test's.)"""
    result = run_child(FORKS_BESIDE_A_BUSY_WRITER, tmp_path, str(tmp_path / "fork.db"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[True] ['a line']"


# -- 2. kill -9 mid-run ----------------------------------------------------------------------

BLOCKED = """
import sys
from headrace import Flow, get_run_logger, task
from headrace.store import get_store

@task
def before():
    get_run_logger().info("before the block")
    return 1

@task
def block(x, fifo):
    get_store().flush()  # what came before is written: the kill loses nothing of it
    print("BLOCKED", flush=True)
    with open(fifo) as f:  # no one ever opens the other end
        f.read()

with Flow("killed") as f:
    block(before(), sys.argv[1])
f.run()
"""


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_kill_9_mid_run_leaves_a_clean_file_and_a_crashed_run(tmp_path, writer):
    home = tmp_path / "home"
    fifo = tmp_path / "never"
    os.mkfifo(fifo)
    child = start(BLOCKED, home, str(fifo), HEADRACE_HISTORY_WRITER=writer)
    try:
        assert child.stdout.readline().strip() == "BLOCKED", child.stderr.read()
        db = home / "headrace.db"
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        [(run_id, state_type, pid)] = conn.execute(
            "SELECT id, state_type, pid FROM flow_runs"
        ).fetchall()
        conn.close()
        assert (state_type, pid) == ("RUNNING", child.pid)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=BACKSTOP)  # reaped: its pid is gone, not a zombie
    assert child.returncode == -signal.SIGKILL

    assert integrity(db) == "ok"
    open_recorder(f"sqlite:///{db}")
    assert integrity(db) == "ok"
    store = open_reader(f"sqlite:///{db}")
    run = store.flow_run(run_id)
    assert (run.state_type, run.state_name) == ("CRASHED", "Crashed")
    assert run.state_message == "The process running this flow run stopped before it finished."
    assert run.end_time >= run.start_time
    assert [tr.name for tr in store.task_runs(run_id)] == ["before"]  # flushed before the kill
    assert "before the block" in [r.message for _, r in store.logs(run_id)]

    # A new process reading the file sees the same, and records on top of it.
    result = run_child(
        """
        from headrace import Flow, task
        from headrace.store import open_reader
        with Flow("after") as f:
            task(lambda: 1)()
        print(f.run().name, sorted(r.state_name for r in open_reader().flow_runs()))
        """,
        home,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Completed ['Completed', 'Crashed']"
    assert integrity(db) == "ok"


# -- 3. files that are not ours --------------------------------------------------------------


def not_sqlite(path) -> None:
    path.write_bytes(b"name,value\nalpha,1\n" * 200)


def foreign_sqlite(path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.commit()
    conn.close()


def newer_headrace(path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE headrace_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("CREATE TABLE flow_runs (id TEXT PRIMARY KEY, shape TEXT)")
    conn.executemany(
        "INSERT INTO headrace_meta VALUES (?, ?)", [("app", "headrace"), ("schema_version", "99")]
    )
    conn.commit()
    conn.close()


def other_meta(path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE headrace_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO headrace_meta VALUES ('app', 'someone-else')")
    conn.commit()
    conn.close()


REFUSED = {
    "not-sqlite": (not_sqlite, r"is not a SQLite database.*Move it away, or point HEADRACE_HOME"),
    "foreign-tables": (
        foreign_sqlite,
        r"is not a headrace database \(it has tables customers\).*Point HEADRACE_HOME",
    ),
    "schema-99": (
        newer_headrace,
        rf"has schema version 99, made by a newer headrace; this one understands up to "
        rf"{SCHEMA_VERSION}.*Upgrade headrace, or point HEADRACE_HOME elsewhere",
    ),
    "someone-elses-meta": (other_meta, r"is not a headrace database.*Point HEADRACE_HOME"),
}


@pytest.mark.parametrize("kind", list(REFUSED))
@pytest.mark.parametrize("how", ["graph flow", "function flow", "get_store"])
def test_a_database_that_is_not_ours_is_refused_and_left_unchanged(
    tmp_path, monkeypatch, kind, how
):
    make, says = REFUSED[kind]
    home = tmp_path / "home"
    home.mkdir()
    db = home / "headrace.db"
    make(db)
    before = db.read_bytes()
    monkeypatch.setenv("HEADRACE_HOME", str(home))
    monkeypatch.delenv("HEADRACE_DATABASE_URL", raising=False)
    ran = []

    @task
    def side_effect():
        ran.append(1)

    with Flow("refused") as graph:
        side_effect()

    @flow
    def function_flow():
        side_effect()

    call = {"graph flow": graph.run, "function flow": function_flow, "get_store": get_store}[how]
    with pytest.raises(StoreError, match=says) as raised:
        call()
    assert str(db) in str(raised.value)
    assert "Nothing was changed" in str(raised.value)
    assert ran == []
    assert db.read_bytes() == before
    assert sorted(p.name for p in home.iterdir()) == ["headrace.db"]  # no -wal, no -shm
    with pytest.raises(StoreError):  # refused again, not cached as a working store
        get_store()


# -- 4. unwritable history -------------------------------------------------------------------

RUNS_ANYWAY = """
from headrace import Flow, flow, get_run_logger, task

@task
def numbers(n):
    return list(range(n))

@task
def square(x):
    get_run_logger().info("squaring %d", x)
    return x * x

@task
def total(xs):
    return sum(xs)

with Flow("unrecorded") as f:
    t = total(square.map(numbers(200)))

@flow
def child(n):
    return square(n)

@flow
def parent():
    return [child(i) for i in range(3)]

state = f.run()
print("RESULT", state.name, state[t].result(), parent())
"""


def assert_runs_and_warns_once(home, *expected: str, before: str = "", **env) -> str:
    """Run RUNS_ANYWAY (after `before`) with this HEADRACE_HOME; it completes and warns once."""
    result = run_child(textwrap.dedent(before) + textwrap.dedent(RUNS_ANYWAY), home, **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "RESULT Completed 2646700 [0, 1, 4]"
    [warning] = [line for line in result.stderr.splitlines() if WARNING in line]
    assert "Traceback" not in result.stderr
    for words in expected:
        assert words in warning, warning
    return warning


def test_home_under_a_regular_file(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    warning = assert_runs_and_warns_once(
        blocker / "home", str(blocker / "home"), "set HEADRACE_HOME to a writable directory"
    )
    assert "Not a directory" in warning or "File exists" in warning
    assert blocker.read_text() == "not a directory"


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a tmpfs: `mount_at(options)` returns its directory; unmounted at teardown."""
    mounted = []

    def mount_at(options: str):
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(
                f"cannot mount a tmpfs ({result.stderr.strip() or result.returncode}); "
                "a read-only or full filesystem needs root with CAP_SYS_ADMIN to stage"
            )
        mounted.append(where)
        return where

    yield mount_at
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


FILL_AFTER_OPENING = """
import errno, os
from headrace.store import get_store

store = get_store()
store.flush()  # the writer has connected: opened while there was room
assert store.recording
with open(os.path.join(os.environ["HEADRACE_HOME"], "filler"), "wb", buffering=0) as filler:
    try:
        while True:
            filler.write(bytes(4096))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
"""


def remount_read_only(directory) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
    with pytest.raises(OSError):  # the point: root cannot write here either
        (directory / "probe").write_text("x")


def make_history(home) -> bytes:
    """A headrace database with one small recorded run, written by another process."""
    result = run_child(
        """
        from headrace import Flow, task
        with Flow("earlier") as f:
            task(lambda: 1)()
        assert f.run().is_successful()
        """,
        home,
    )
    assert result.returncode == 0, result.stderr
    return (home / "headrace.db").read_bytes()


def test_home_on_a_read_only_filesystem(tmpfs):
    home = tmpfs("ro,size=1m")
    assert_runs_and_warns_once(home, f"{home}/headrace.db", "Read-only file system")


def test_existing_history_on_a_filesystem_made_read_only(tmpfs):
    home = tmpfs("size=2m")
    before = make_history(home)
    remount_read_only(home)
    assert_runs_and_warns_once(home, f"{home}/headrace.db", "readonly database")
    assert (home / "headrace.db").read_bytes() == before


def test_home_on_a_disk_too_full_to_create_the_database(tmpfs):
    home = tmpfs("size=64k")
    assert_runs_and_warns_once(home, f"{home}/headrace.db", "full")


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_history_on_a_disk_that_fills_up(tmpfs, writer):
    home = tmpfs("size=2m")
    make_history(home)
    warning = assert_runs_and_warns_once(
        home, f"writing to {home}/headrace.db failed", before=FILL_AFTER_OPENING,
        HEADRACE_HISTORY_WRITER=writer,
    )  # fmt: skip
    assert "database or disk is full" in warning
    (home / "filler").unlink()
    assert integrity(home / "headrace.db") == "ok"


def test_an_unwritable_history_does_not_stop_a_flow_in_process(tmp_path, monkeypatch):
    """In the test process too: runs go on, and the store warns once however often asked."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("HEADRACE_HOME", str(blocker / "home"))
    monkeypatch.delenv("HEADRACE_DATABASE_URL", raising=False)
    warnings = []
    counter = logging.Handler()
    counter.emit = lambda record: warnings.append(record.getMessage())
    logger = logging.getLogger("headrace.store")
    logger.addHandler(counter)
    try:
        with Flow("in-process") as f:
            n = Parameter("n", default=3)
            doubled = task(lambda n: n * 2)(n)

        @flow
        def nested():
            return f.run()[doubled].result()

        assert f.run()[doubled].result() == 6
        assert nested() == 6
        assert get_store().recording is False
    finally:
        logger.removeHandler(counter)
    [warning] = warnings
    assert warning.startswith(f"{WARNING}: cannot open sqlite:///{blocker}/home/headrace.db")
    assert not (blocker / "home").exists()


def test_a_run_with_its_history_server_down_warns_once_and_runs(monkeypatch, caplog):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("HEADRACE_DATABASE_URL", f"postgresql://alice@127.0.0.1:{port}/history")
    ran = []

    @task
    def note():
        ran.append(1)

    with Flow("unrecorded") as f:
        note()

    @flow
    def unrecorded():
        note()

    with caplog.at_level("WARNING", logger="headrace"):
        assert f.run().is_successful()
        unrecorded()
    assert ran == [1, 1]
    warnings = [r.getMessage() for r in caplog.records if "not being recorded" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"port {port}" in warnings[0] and "Flows still run" in warnings[0]


FILLS_UP = """
import errno, os, sys
from headrace import Flow, flow, task
from headrace.store import get_store, open_reader


def fill_disk():
    get_store().flush()  # the run's start and its first tasks are written
    with open_reader() as reader:
        [run] = reader.flow_runs(state="Running")
        print("WRITTEN", len(reader.task_runs(run.id)), flush=True)
    with open(os.path.join(os.environ["HEADRACE_HOME"], "filler"), "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(4096))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@task
def square(x):
    return x * x


@task
def fill(xs):
    fill_disk()
    return xs


@task
def total(xs):
    return sum(xs)


with Flow("fills-up") as graph:
    total(square.map(fill(square.map(list(range(100))))))


@flow(name="fills-up")
def function():
    xs = fill([square(i) for i in range(100)])
    return sum(square(x) for x in xs)


state = graph.run() if sys.argv[1] == "graph" else function(return_state=True)
print("RESULT", state.name, state.flow_run_id, flush=True)
"""


@pytest.mark.parametrize("writer", ["thread", "process"])
@pytest.mark.parametrize("style", ["graph", "function"])
def test_a_run_that_outlives_a_full_disk_is_recorded_finished_not_crashed(tmpfs, style, writer):
    home = tmpfs("size=2m")
    result = run_child(FILLS_UP, home, style, HEADRACE_HISTORY_WRITER=writer)
    assert result.returncode == 0, result.stderr
    written, ended = result.stdout.splitlines()
    outcome, state_name, run_id = ended.split()
    assert outcome == "RESULT" and state_name == "Completed", result.stdout
    [warning] = [line for line in result.stderr.splitlines() if WARNING in line]
    assert "database or disk is full" in warning
    assert "could not be recorded either" not in result.stderr
    assert not (home / "headrace.db-reserve").exists()  # spent on the end of the run

    (home / "filler").unlink()
    later = run_child("from headrace.store import get_store; get_store().flush()", home)
    assert later.returncode == 0, later.stderr  # this process marks the runs of dead ones
    assert (home / "headrace.db-reserve").stat().st_size == sqlite_store.RESERVE_BYTES
    assert integrity(home / "headrace.db") == "ok"
    with open_reader(f"sqlite:///{home}/headrace.db") as reader:
        run = reader.flow_run(run_id)
        recorded = len(reader.task_runs(run_id))
    assert (run.state_type, run.state_name) == ("COMPLETED", "Completed")
    assert run.state_message.startswith(
        f"History incomplete: writing to {home}/headrace.db failed: database or disk is full."
    )
    assert f"WRITTEN {recorded}" == written  # what was written before the disk filled stays


# -- 5. a PostgreSQL server that goes away mid-run ------------------------------------------------


class OutageClock(ManualClock):
    """The writer's clock. It tells when the writer first waits for the server
    (`waiting`), and once `seconds` have passed on it calls `then()`, in the writer's
    thread: the server comes back at an exact point of the outage, whatever the machine."""

    def __init__(self, seconds: float, then=None):
        super().__init__()
        self.seconds, self.then = seconds, then
        self.waiting = threading.Event()

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.waiting.set()
        if self.then is not None and self.monotonic() >= self.seconds:
            then, self.then = self.then, None
            then()


def record_tasks(store, run_id: str, start: int, n: int) -> None:
    for i in range(start, start + n):
        store.task_run(TaskRun(f"{run_id}-{i}", run_id, "t", f"t[{i}]", map_index=i,
                               state_type="COMPLETED", state_name="Completed"))  # fmt: skip


def started_run(store, run_id: str, tasks: int) -> None:
    store.flow_run_started(FlowRun(id=run_id, name=run_id, flow_name="f", style="graph"))
    record_tasks(store, run_id, 0, tasks)
    store.flush()


@needs_pg
def test_a_server_restart_mid_run_loses_no_row(cluster, pg_url):
    clock = OutageClock(35.0, then=cluster.start)  # back after 35 s on the writer's clock
    store = open_recorder(pg_url, clock=clock)
    started_run(store, "through", 3000)
    cluster.stop()
    record_tasks(store, "through", 3000, 3000)  # queued while the server is down
    store.flow_run_ended("through", "COMPLETED", "Completed", None, time.time())
    store.flush(timeout=BACKSTOP)
    assert clock.then is None, "the server was not started again"
    assert 35.0 <= clock.monotonic() < sql.OUTAGE_SECONDS
    reader = open_reader(pg_url)
    assert len(reader.task_runs("through")) == 6000
    run = reader.flow_run("through")
    assert (run.state_name, run.state_message) == ("Completed", None)
    assert store.recording  # the writer is still on


@needs_pg
def test_an_outage_longer_than_the_writer_waits_ends_the_run_as_incomplete(cluster, pg_url, caplog):
    clock = OutageClock(float("inf"))
    store = open_recorder(pg_url, clock=clock)
    started_run(store, "outlasted", 100)
    cluster.stop()
    try:
        record_tasks(store, "outlasted", 100, 100)
        store.flush(timeout=BACKSTOP)  # the writer gives up after OUTAGE_SECONDS on its clock
        assert not store.recording
        assert clock.monotonic() >= sql.OUTAGE_SECONDS
    finally:
        cluster.start()
    record_tasks(store, "outlasted", 200, 100)  # history is off: not recorded
    store.flow_run_ended("outlasted", "COMPLETED", "Completed", "All done.", time.time())
    store.flush(timeout=BACKSTOP)
    reader = open_reader(pg_url)
    assert len(reader.task_runs("outlasted")) == 100
    run = reader.flow_run("outlasted")
    assert run.state_name == "Completed"
    assert run.state_message.startswith(f"History incomplete: writing to {store.where} failed")
    assert run.state_message.endswith(". All done.")
    assert "could not be recorded either" not in caplog.text


@needs_pg
def test_rows_past_the_queue_limit_in_an_outage_are_counted_in_the_runs_end(
    cluster, pg_url, monkeypatch
):
    monkeypatch.setattr(sql, "QUEUE_LIMIT", 100)
    burst_queued = threading.Event()

    def back_after_the_burst():
        burst_queued.wait(BACKSTOP)
        cluster.start()

    clock = OutageClock(35.0, then=back_after_the_burst)
    store = open_recorder(pg_url, clock=clock)
    started_run(store, "bounded", 10)
    cluster.stop()
    record_tasks(store, "bounded", 10, 1)  # the writer takes it and meets the outage
    assert clock.waiting.wait(BACKSTOP)
    record_tasks(store, "bounded", 11, 500)
    store.flow_run_ended("bounded", "COMPLETED", "Completed", None, time.time())
    burst_queued.set()
    store.flush(timeout=BACKSTOP)
    reader = open_reader(pg_url)
    recorded = len(reader.task_runs("bounded"))
    run = reader.flow_run("bounded")
    assert run.state_name == "Completed"
    [dropped] = re.findall(
        r"^History incomplete: (\d+) records were dropped while ", run.state_message
    )
    assert recorded + int(dropped) == 511
    assert recorded >= 10 + 1 + sql.QUEUE_LIMIT
    assert store.recording


# -- 6. text no driver encodes ---------------------------------------------------------------


def test_text_no_driver_encodes_is_recorded_visibly_and_the_writer_goes_on(url, monkeypatch):
    monkeypatch.setenv("HEADRACE_LOGGING_LEVEL", "INFO")
    undecodable = os.fsdecode(b"caf\xe9")  # a lone surrogate, as in a non-UTF-8 file name

    @task(name=f"read-{undecodable}")
    def read_file():
        get_run_logger().info("opened %s, NUL \x00 inside", undecodable)
        return 1

    @flow(name=f"files-{undecodable}")
    def files():
        return read_file()

    started = time.monotonic()
    assert files() == 1 and files() == 1  # the second run is recorded as well
    get_store().flush(timeout=10)
    assert time.monotonic() - started < 5  # no flush waited for a dead writer
    reader = open_reader(url)
    runs = reader.flow_runs()
    assert [r.flow_name for r in runs] == ["files-caf\\udce9"] * 2
    [task_run] = reader.task_runs(runs[0].id)
    assert task_run.name == "read-caf\\udce9-0" and task_run.state_name == "Completed"
    messages = [r.message for _, r in reader.logs(runs[0].id)]
    assert "opened caf\\udce9, NUL \\x00 inside" in messages
