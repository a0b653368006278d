"""Run history on PostgreSQL: the same records and read API as SQLite, shared by processes.

The PostgreSQL tests run on a throwaway PostgreSQL 15 cluster per module
(`postgres_cluster.py`, whose `cluster`, `pg_url` and `url` fixtures
conftest.py shares); each test gets its own database.

They skip only when /usr/lib/postgresql/15/bin/initdb is absent. The SQLite
half of the shared read-API test runs everywhere. The history under faults
(a server that is down, text no driver encodes) is in faults/test_history.py;
run references read as text are in faults/test_text.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from headrace import Flow, Parameter, context, flow, get_run_logger, task
from headrace.engine.clock import ManualClock
from headrace.store import get_store, open_reader, open_recorder
from headrace.store.records import FlowRun, LogRecord
from headrace.store.sql import StoreError, _is_lock
from postgres_cluster import free_port, needs_pg

# -- flows used by the tests ---------------------------------------------------------------------------


@task(retries=1)
def numbers(n):
    if context.task_run_count == 1:
        raise ValueError("flaky on the first try")
    return list(range(n))


@task(tags=["b", "a"])
def double(x):
    if x == 1:
        get_run_logger().info("doubling %s", x)
    if x == 2:
        raise ValueError("two is not allowed")
    return 2 * x


@task
def total(xs):
    return sum(xs)


def etl_flow() -> Flow:
    with Flow("etl") as f:
        n = Parameter("n")
        total(double.map(numbers(n)))
    return f


@task
def inc(x):
    return x + 1


@flow(name="inner")
def inner(x):
    return inc(x)


@flow(name="outer")
def outer():
    a = inc.submit(1)
    b = inc(a)
    get_run_logger().info("calling inner with %s", b)
    return inner(b)


def record_everything():
    """Two graph runs (one fails, one retries), a function flow with a subflow."""
    f = etl_flow()
    failed = f.run(parameters={"n": 3}, clock=ManualClock())
    assert failed.is_failed()
    ok = f.run(parameters={"n": 2}, clock=ManualClock())
    assert ok.is_successful()
    assert outer() == 4
    get_store().flush()


# -- recording -----------------------------------------------------------------------------------


@needs_pg
def test_graph_and_function_flows_are_recorded(pg_url, monkeypatch):
    monkeypatch.setenv("HEADRACE_DATABASE_URL", pg_url)
    record_everything()
    store = open_reader(pg_url)
    assert store.where == pg_url
    runs = store.flow_runs()
    assert sorted(r.flow_name for r in runs) == ["etl", "etl", "inner", "outer"]
    [inner_run] = store.flow_runs(flow_name="inner")
    [outer_run] = store.flow_runs(flow_name="outer")
    assert inner_run.parent_id == outer_run.id and outer_run.parent_id is None
    assert (inner_run.style, outer_run.style) == ("function", "function")
    assert inner_run.parameters == {"x": 3}

    ok = store.flow_runs(flow_name="etl", state="Completed")[0]
    tasks = store.task_runs(ok.id)
    ids = {t.name: t.id for t in tasks}
    assert [t.name for t in tasks] == ["double", "numbers", "double[0]", "double[1]", "total"]
    assert tasks[2].upstream == [ids["numbers"]]
    assert tasks[2].parent_task_run_id == ids["double"]
    assert tasks[-1].upstream == [ids["double"]]
    assert tasks[2].tags == ["a", "b"]
    assert [s.name for s in store.states(ids["numbers"])] == ["Running", "Retrying", "Completed"]
    assert store.states(ids["numbers"])[1].message.endswith("ValueError: flaky on the first try")
    lines = [(r.task_run_id, r.message) for _, r in store.logs(ok.id)]
    assert (ids["double[1]"], "doubling 1") in lines

    outer_tasks = store.task_runs(outer_run.id)
    first, second = (t for t in outer_tasks if t.task_name == "inc")
    assert second.upstream == [first.id]  # a future passed on links the runs
    assert [r.message for _, r in store.logs(outer_run.id)].count("calling inner with 3") == 1
    get_store().flush()


# -- the read API, the same on both databases ----------------------------------------------------------


def test_read_api_is_the_same_on_sqlite_and_postgresql(url):
    started = time.time()
    record_everything()
    store = open_reader(url)

    runs = store.flow_runs()
    assert [r.flow_name for r in runs] == ["inner", "outer", "etl", "etl"]  # newest first
    assert all(isinstance(r, FlowRun) for r in runs)
    inner_run, outer_run, ok, failed = runs
    assert [r.state_name for r in runs] == ["Completed", "Completed", "Completed", "Failed"]
    assert [r.state_type for r in runs] == ["COMPLETED", "COMPLETED", "COMPLETED", "FAILED"]
    for r in runs:
        assert started <= r.start_time <= r.end_time <= time.time()
        assert type(r.start_time) is float and type(r.pid) is int
        assert (r.pid, r.host) == (os.getpid(), socket.gethostname())
    assert ok.parameters == {"n": 2} and failed.parameters == {"n": 3}
    assert (ok.style, ok.executor, ok.parent_id) == ("graph", "LocalExecutor()", None)

    # filters
    assert [r.id for r in store.flow_runs(flow_name="etl")] == [ok.id, failed.id]
    for spelling in ("failed", "FAILED", "Failed"):
        assert [r.id for r in store.flow_runs(state=spelling)] == [failed.id]
    assert len(store.flow_runs(state="completed")) == 3
    assert [r.id for r in store.flow_runs(parent_id=outer_run.id)] == [inner_run.id]
    assert [r.id for r in store.flow_runs(limit=1)] == [inner_run.id]
    assert store.flow_runs(flow_name="no-such-flow") == []

    # one run by id, prefix (any case) or name
    for ref in (ok.id, ok.id[:10], ok.id[:10].upper(), ok.name):
        assert store.flow_run(ref) == ok
    with pytest.raises(StoreError, match="No flow run has the id, id prefix or name ''"):
        store.flow_run("")  # not the prefix of every id
    with pytest.raises(StoreError, match="No flow run has the id, id prefix or name 'zzz'"):
        store.flow_run("zzz")

    # task runs, states, logs
    tasks = store.task_runs(ok.id)
    shape = [
        (t.name, t.task_name, t.task_key, t.map_index, t.state_name, t.tags, t.run_count)
        for t in tasks
    ]
    assert shape == [
        ("double", "double", "double-1", None, "Mapped", ["a", "b"], 1),
        ("numbers", "numbers", "numbers-1", None, "Completed", [], 2),
        ("double[0]", "double", "double-1", 0, "Completed", ["a", "b"], 1),
        ("double[1]", "double", "double-1", 1, "Completed", ["a", "b"], 1),
        ("total", "total", "total-1", None, "Completed", [], 1),
    ]
    assert all(t.flow_run_id == ok.id for t in tasks)
    assert tasks[0].start_time is None and type(tasks[1].start_time) is float
    bad = {t.name: t for t in store.task_runs(failed.id)}
    assert bad["double[2]"].state_name == "Failed"
    assert bad["double[2]"].state_message.endswith("ValueError: two is not allowed")
    assert bad["total"].state_name == "TriggerFailed"
    states = store.states(tasks[1].id)
    assert [(s.type, s.name) for s in states] == [
        ("RUNNING", "Running"),
        ("SCHEDULED", "Retrying"),
        ("COMPLETED", "Completed"),
    ]
    assert states[0].time <= states[1].time <= states[2].time
    assert store.states("no-such-task-run") == []

    logs = store.logs(ok.id)
    ids = [i for i, _ in logs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [r.message for _, r in logs if r.task_run_id == tasks[3].id] == ["doubling 1"]
    assert logs[0][1].message == f"Created flow run {ok.name!r} for flow 'etl'"
    assert logs[0][1].level == 20 and type(logs[0][1].time) is float
    assert store.logs(ok.id, after=ids[0]) == logs[1:]
    assert store.logs(ok.id, after=ids[-1]) == []
    get_store().flush()


# -- processes -----------------------------------------------------------------------------------


WORKER = """
import sys
from headrace import Flow, Parameter, task

@task
def numbers(n):
    return list(range(n))

@task
def double(x):
    return 2 * x

@task
def total(xs):
    return sum(xs)

with Flow("load") as f:
    total(double.map(numbers(Parameter("n"))))

print("ready", flush=True)
sys.stdin.readline()  # both processes start their runs together
state = f.run(parameters={"n": 500})
print(state.name, flush=True)
"""


@needs_pg
def test_two_processes_record_to_one_database_at_once(pg_url, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    env = {**os.environ, "HEADRACE_DATABASE_URL": pg_url}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for w in workers:
        assert w.stdout.readline().strip() == "ready", w.stderr.read()
    for w in workers:  # the database is empty: both create the schema at the same moment
        w.stdin.write("go\n")
        w.stdin.flush()
    for w in workers:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
        assert "not being recorded" not in err, err
        assert out.strip() == "Completed", err

    store = open_reader(pg_url)
    runs = store.flow_runs(flow_name="load")
    assert len(runs) == 2 and {r.pid for r in runs} == {w.pid for w in workers}
    for run in runs:
        assert run.state_name == "Completed"
        tasks = store.task_runs(run.id)
        assert len(tasks) == 503
        children = [t for t in tasks if t.map_index is not None]
        assert sorted(t.map_index for t in children) == list(range(500))
        assert all(t.state_type == "COMPLETED" for t in tasks)
        messages = [r.message for _, r in store.logs(run.id)]
        assert messages[0].startswith("Created flow run") and "Finished in state" in messages[-1]


@needs_pg
def test_an_open_recorder_holds_no_lock_another_process_would_wait_for(pg_url):
    # The writer goes on with the connection that checked the schema: the check's lock
    # must end with its transaction, or the next opener waits until this one writes.
    open_recorder(pg_url)  # makes the schema (its upgrade commits, releasing the lock)
    first = open_recorder(pg_url)  # checks it: only the check holds the lock
    opened = threading.Event()
    threading.Thread(target=lambda: (open_recorder(pg_url), opened.set()), daemon=True).start()
    assert opened.wait(10), "a second recorder waited for the idle first one"
    first.flow_run_started(FlowRun(id="run-1", name="after", flow_name="f", style="graph"))
    first.flush()
    assert open_reader(pg_url).flow_run("run-1").name == "after"


# -- refusing what is not ours -----------------------------------------------------------------------


@needs_pg
def test_an_unreachable_server_is_a_clear_error(monkeypatch):
    port = free_port()  # nothing listens there
    url = f"postgresql://alice:s3cret@127.0.0.1:{port}/history"
    with pytest.raises(StoreError) as caught:
        open_recorder(url)
    message = str(caught.value)
    for part in (f"host 127.0.0.1, port {port}, database history", "Connection refused"):
        assert part in message
    assert "Check that the server is running" in message and "s3cret" not in message


@needs_pg
def test_every_url_spelling_opens_the_same_database(pg_url):
    store = open_recorder(pg_url)
    store.flow_run_started(FlowRun(id="run-1", name="spelled", flow_name="f", style="graph"))
    store.flush()
    for scheme in ("postgres://", "postgresql+psycopg://"):
        open_recorder(pg_url.replace("postgresql://", scheme))
        other = open_reader(pg_url.replace("postgresql://", scheme))
        assert other.flow_run("run-1").name == "spelled"
    store.flow_run_ended("run-1", "COMPLETED", "Completed", None, time.time())
    store.flush()
    for opener in (open_recorder, open_reader):
        with pytest.raises(StoreError, match="not a valid PostgreSQL URL .*postgresql://user"):
            opener("postgresql://[::1")


@needs_pg
def test_a_missing_database_or_user_is_a_clear_error(cluster):
    with pytest.raises(StoreError, match='database "nope" does not exist'):
        open_recorder(cluster.url("nope"))
    with pytest.raises(StoreError, match='role "bob" does not exist'):
        open_recorder(cluster.url("postgres", user="bob"))


def _tables(conn) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    ).fetchall()
    return {r[0] for r in rows}


@needs_pg
def test_a_database_with_other_tables_is_refused_and_left_unchanged(cluster):
    name = cluster.create_database()
    with cluster.admin(name) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers VALUES (1, 'Ada')")
    for opener in (open_recorder, open_reader):
        with pytest.raises(StoreError, match="is not a headrace database .*customers.*Nothing"):
            opener(cluster.url(name))
    with cluster.admin(name) as conn:
        assert _tables(conn) == {"customers"}
        assert conn.execute("SELECT * FROM customers").fetchall() == [(1, "Ada")]


@needs_pg
def test_a_newer_schema_is_refused_and_left_unchanged(pg_url, cluster):
    open_recorder(pg_url)
    with cluster.admin(pg_url.rsplit("/", 1)[1]) as conn:
        before = _tables(conn)
        assert {"headrace_meta", "flow_runs", "task_runs", "logs"} <= before
        conn.execute("UPDATE headrace_meta SET value = '99' WHERE key = 'schema_version'")
    for opener in (open_recorder, open_reader):
        with pytest.raises(StoreError, match="schema version 99, made by a newer headrace"):
            opener(pg_url)
    with cluster.admin(pg_url.rsplit("/", 1)[1]) as conn:
        assert _tables(conn) == before
        meta = dict(conn.execute("SELECT key, value FROM headrace_meta").fetchall())
        assert meta == {"app": "headrace", "schema_version": "99"}


@needs_pg
def test_a_user_who_may_not_create_tables_is_told_what_to_grant(cluster):
    name = cluster.create_database()
    with cluster.admin(name) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE viewer LOGIN; EXCEPTION WHEN OTHERS THEN END $$")
    with pytest.raises(StoreError, match="GRANT CREATE ON SCHEMA public TO viewer"):
        open_recorder(cluster.url(name, user="viewer"))
    with cluster.admin(name) as conn:
        assert _tables(conn) == set()
    open_recorder(cluster.url(name))  # the owner creates the tables; viewer may not use them
    with pytest.raises(StoreError, match="GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES"):
        open_recorder(cluster.url(name, user="viewer"))


# -- locks and odd text ------------------------------------------------------------------------------


@needs_pg
def test_lock_and_serialization_errors_count_as_lock_waits(pg_url):
    import psycopg

    errors = []
    with psycopg.connect(pg_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        setup.execute("INSERT INTO t VALUES (1, 0), (2, 0)")
    a, b = psycopg.connect(pg_url), psycopg.connect(pg_url)
    try:
        # serialization failure: a repeatable-read transaction updates a row changed since
        a.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        a.execute("SELECT v FROM t WHERE id = 1").fetchall()
        b.execute("UPDATE t SET v = 1 WHERE id = 1")
        b.commit()
        with pytest.raises(psycopg.Error) as caught:
            a.execute("UPDATE t SET v = 2 WHERE id = 1")
        errors.append(caught.value)
        a.rollback()

        # lock not available: NOWAIT on a row another transaction holds
        b.execute("SELECT v FROM t WHERE id = 1 FOR UPDATE")
        with pytest.raises(psycopg.Error) as caught:
            a.execute("SELECT v FROM t WHERE id = 1 FOR UPDATE NOWAIT")
        errors.append(caught.value)
        a.rollback()
        b.rollback()

        # deadlock: each holds the row the other wants
        for conn in (a, b):
            conn.execute("SET deadlock_timeout = '20ms'")
        a.execute("UPDATE t SET v = 3 WHERE id = 1")
        b.execute("UPDATE t SET v = 3 WHERE id = 2")
        outcome = {}

        def take(conn, row, who):
            try:
                conn.execute("UPDATE t SET v = 4 WHERE id = %s", (row,))
                outcome[who] = None
            except psycopg.Error as exc:
                outcome[who] = exc
                conn.rollback()  # lets the other one through

        other = threading.Thread(target=take, args=(a, 2, "a"))
        other.start()
        take(b, 1, "b")
        other.join(30)
        [deadlock] = [e for e in outcome.values() if e is not None]
        errors.append(deadlock)
    finally:
        a.close()
        b.close()

    assert [e.sqlstate for e in errors] == ["40001", "55P03", "40P01"]
    assert all(_is_lock(e) for e in errors)
    with psycopg.connect(pg_url) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute("INSERT INTO t VALUES (1, 0)")
    assert not _is_lock(caught.value)  # a real error is not waited out


@needs_pg
def test_the_writer_waits_out_a_lock_timeout(pg_url, cluster):
    import psycopg

    store = open_recorder(pg_url)  # creates the tables
    db = pg_url.rsplit("/", 1)[1]
    with cluster.admin() as admin:
        admin.execute(f"ALTER DATABASE {db} SET lock_timeout = '20ms'")
    store = open_recorder(pg_url)  # its connections start with the setting
    marker = f"lock timeout test {uuid.uuid4().hex}"
    seen = cluster.server_log().count("canceling statement due to lock timeout")
    holder = psycopg.connect(pg_url)
    holder.execute("LOCK TABLE logs IN ACCESS EXCLUSIVE MODE")
    store.flow_run_started(FlowRun(id="run-1", name=marker, flow_name="f", style="graph"))
    store.log(LogRecord("run-1", None, 20, time.time(), "test", marker))
    writer_done = threading.Thread(target=store.flush, args=(60,))
    writer_done.start()
    # Release the lock only once the writer has been turned away by it at least once.
    deadline = time.monotonic() + 30
    while cluster.server_log().count("canceling statement due to lock timeout") == seen:
        assert time.monotonic() < deadline, "the writer never hit the lock"
        time.sleep(0.02)
    holder.rollback()
    holder.close()
    writer_done.join(60)
    assert not writer_done.is_alive()
    assert store.recording
    reader = open_reader(pg_url)
    assert [r.message for _, r in reader.logs("run-1")] == [marker]
    assert reader.flow_run("run-1").name == marker
    store.flow_run_ended("run-1", "COMPLETED", "Completed", None, time.time())
    store.flush()


@needs_pg
def test_a_nul_character_is_recorded_not_fatal(pg_url, monkeypatch):
    monkeypatch.setenv("HEADRACE_DATABASE_URL", pg_url)

    @task
    def noisy():
        get_run_logger().info("bytes: a\x00b")
        return 1

    with Flow("nul") as f:
        noisy()
    assert f.run().is_successful()
    assert get_store().recording
    store = open_reader(pg_url)
    [run] = store.flow_runs()
    assert "bytes: a\\x00b" in [r.message for _, r in store.logs(run.id)]  # visible
    with pytest.raises(StoreError, match="No flow run"):  # in a lookup too
        store.flow_run("a\x00b")


# -- the Reader writes nothing -------------------------------------------------------------------------


@needs_pg
def test_identity_fields_and_a_reader_that_writes_nothing(pg_url, cluster):
    from headrace.store import StoreMissing
    from test_store import check_identity, record_identity

    with pytest.raises(StoreMissing, match="No run history has been recorded"):
        open_reader(pg_url)  # an empty database: nothing to read, and nothing is made
    db = pg_url.rsplit("/", 1)[1]
    with cluster.admin(db) as conn:
        assert _tables(conn) == set()

    records = record_identity(open_recorder(pg_url), "identity-1")
    with cluster.admin(db) as conn:  # a Running run of a process that is gone
        conn.execute(
            "INSERT INTO flow_runs (id, name, flow_name, style, state_type, state_name, "
            "start_time, host, pid, heartbeat) VALUES ('dead', 'dead', 'f', 'graph', "
            "'RUNNING', 'Running', 1, %s, 999999999, %s)",
            (socket.gethostname(), time.time()),
        )

    def snapshot():
        with cluster.admin(db) as conn:
            return {
                table: sorted(map(repr, conn.execute(f"SELECT * FROM {table}").fetchall()))
                for table in ("headrace_meta", "flow_runs", "task_runs", "task_run_states", "logs")
            }

    before = snapshot()
    with open_reader(pg_url) as reader:
        check_identity(reader, "identity-1", records)
        assert reader.flow_run("dead").state_name == "Crashed"  # shown, not written
        assert [r.id for r in reader.flow_runs(state="CRASHED")] == ["dead"]
        import psycopg

        conn = reader._conn  # every transaction it opens is READ ONLY
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM logs")
        conn.rollback()
    assert snapshot() == before
