"""The run-history store on a SQL database: SQLite by default, PostgreSQL for teams.

This module holds what both sides share (the schema, its migrations, the
rows built from records) and the write side, `SQLRecorder`.
The read side is `store.reader.SQLReader`.

Writes never block the engine. Each `Recorder` method turns its record into
a row and appends it to a queue; one writer thread drains it, groups rows by
statement and writes each batch in one transaction. On SQLite, once the
thread has written HANDOFF_ROWS rows, it hands the batches to a writer
process instead (`store.writer_process`, which says why and how).
`flush()` waits until everything recorded so far is written. A crash loses
at most the batch being written; the next process to open the write side
marks runs whose process is gone as Crashed.

A write that fails for a reason the user must fix (disk full, read-only
directory) turns history off for this process with one warning; runs go
on. A run whose rows were lost (history turned off, a row skipped, rows
dropped past QUEUE_LIMIT in an outage) still gets its final state, marked
"History incomplete: ..." in its message, so a run that finished is never
shown Crashed for want of history: the end of a run is written even after
history is off, once room is made for it (`make_room`, which the SQLite
store uses to free its reserve file). "database is locked" never reaches
the user: the writer waits and retries. A database that is not headrace's, or is from a newer headrace,
is refused when opened, and nothing in it is changed.

A fork waits while the writer is inside the database driver: SQLite's
mutexes do not survive a fork, and a child forked mid-write (a process
executor's worker, say) would hang on its first connect.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from headrace._pid import HOST, alive
from headrace.store.base import CRASHED_MESSAGE, Recorder, StoreError
from headrace.store.records import ChildRuns, FlowRun, LogRecord, StateRecord, TaskRun

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

SCHEMA_VERSION = 6
APP = "headrace"
PARAMETER_LIMIT = 2000  # characters of JSON per parameter value before it is truncated
BATCH = 5000
HEARTBEAT_SECONDS = 15.0
OUTAGE_SECONDS = 120  # how long the writer keeps reconnecting to a server that went away
QUEUE_LIMIT = 100_000  # rows kept queued in an outage; past it rows are dropped, ends kept
# Rows queued while the database answers, past which a run waits for the writer: the run's
# end would wait for those rows anyway, so this costs no time and keeps memory flat. A
# writer that frees no room within BACKLOG_WAIT seconds is stuck: then nothing waits.
BACKLOG = 20_000
BACKLOG_WAIT = 1.0
HANDOFF_ROWS = 20_000  # rows written by the thread before a writer process takes over
STALE_SECONDS = 120.0  # a running flow run whose heartbeat is older is taken for crashed

log = logging.getLogger("headrace.store")
_KEPT = ("flow_run", "flow_run_end")  # never dropped in an outage: a run's start and end

# Held by writer threads while they are inside the driver, and taken around every fork.
_DRIVER = threading.Lock()
_forking = False  # a fork waits for _DRIVER: writers let it go first (the lock is not fair)


def _before_fork() -> None:
    global _forking
    _forking = True
    _DRIVER.acquire()


def _after_fork() -> None:
    global _forking
    _forking = False
    _DRIVER.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork
    )


@contextlib.contextmanager
def _in_driver():
    while _forking:
        time.sleep(0.001)
    with _DRIVER:
        yield


class Dialect:
    """What differs between the SQL of two databases; never changed once made."""

    __slots__ = ("name", "placeholder", "real", "serial_key", "errors", "row_errors",
                 "disconnects", "clustered")  # fmt: skip

    def __init__(
        self,
        name: str,
        placeholder: str,
        real: str,
        serial_key: str,
        errors: tuple,  # exception types of the driver
        row_errors: tuple = (),  # of those, the ones that a row causes (the database is fine)
        disconnects: tuple = (),  # of those, the ones of a lost connection (a server restart)
        clustered: str = "",  # what makes a table its primary key's index (SQLite: WITHOUT ROWID)
    ):
        self.name, self.placeholder = name, placeholder
        self.real, self.serial_key = real, serial_key
        self.errors, self.row_errors, self.disconnects = errors, row_errors, disconnects
        self.clustered = clustered


FLOW_RUN_COLUMNS = [
    "id",
    "name",
    "flow_name",
    "style",
    "parameters",
    "parent_id",
    "state_type",
    "state_name",
    "state_message",
    "start_time",
    "end_time",
    "executor",
    "host",
    "pid",
    "heartbeat",
    "upstream",
    "resumed_from",
    "entry_point",
]
TASK_RUN_COLUMNS = [
    "id",
    "flow_run_id",
    "task_name",
    "name",
    "task_key",
    "map_index",
    "parent_task_run_id",
    "upstream",
    "tags",
    "state_type",
    "state_name",
    "state_message",
    "start_time",
    "end_time",
    "run_count",
    "cache_key",
    "result_ref",
]
# A task_run_children row read as a task run, its parent's row `p` and its own `c`, in
# TASK_RUN_COLUMNS order (each database concatenates text and integers with ||).
CHILD_COLUMNS = [
    "p.id || '.' || c.map_index", "p.flow_run_id", "p.task_name",
    "p.name || '[' || c.map_index || ']'", "p.task_key", "c.map_index", "p.id", "p.upstream",
    "p.tags", "'COMPLETED'", "'Completed'", "'Task run succeeded.'", "c.start_time",
    "c.end_time", "1", "NULL", "c.result_ref",
]  # fmt: skip
CHILDREN_JOINED = "task_run_children c JOIN task_runs p ON p.id = c.parent_task_run_id"
STATE_COLUMNS = ["task_run_id", "flow_run_id", "type", "name", "message", "time"]
LOG_COLUMNS = ["flow_run_id", "task_run_id", "level", "time", "logger", "message"]


def schema(d: Dialect) -> list[str]:
    """The statements that create schema version 1."""
    return [
        "CREATE TABLE IF NOT EXISTS headrace_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS flow_runs (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, flow_name TEXT NOT NULL,
            style TEXT NOT NULL, parameters TEXT, parent_id TEXT,
            state_type TEXT NOT NULL, state_name TEXT NOT NULL, state_message TEXT,
            start_time {d.real}, end_time {d.real}, executor TEXT, host TEXT,
            pid INTEGER, heartbeat {d.real})""",
        "CREATE INDEX IF NOT EXISTS flow_runs_start ON flow_runs (start_time)",
        "CREATE INDEX IF NOT EXISTS flow_runs_name ON flow_runs (name)",
        "CREATE INDEX IF NOT EXISTS flow_runs_parent ON flow_runs (parent_id)",
        f"""CREATE TABLE IF NOT EXISTS task_runs (
            id TEXT PRIMARY KEY, flow_run_id TEXT NOT NULL, task_name TEXT NOT NULL,
            name TEXT NOT NULL, task_key TEXT, map_index INTEGER, parent_task_run_id TEXT,
            upstream TEXT, tags TEXT, state_type TEXT NOT NULL, state_name TEXT NOT NULL,
            state_message TEXT, start_time {d.real}, end_time {d.real},
            run_count INTEGER, cache_key TEXT, result_ref TEXT)""",
        "CREATE INDEX IF NOT EXISTS task_runs_flow ON task_runs (flow_run_id)",
        f"""CREATE TABLE IF NOT EXISTS task_run_states (
            id {d.serial_key}, task_run_id TEXT, flow_run_id TEXT NOT NULL,
            type TEXT NOT NULL, name TEXT NOT NULL, message TEXT, time {d.real})""",
        "CREATE INDEX IF NOT EXISTS states_task ON task_run_states (task_run_id)",
        "CREATE INDEX IF NOT EXISTS states_flow ON task_run_states (flow_run_id)",
        f"""CREATE TABLE IF NOT EXISTS logs (
            id {d.serial_key}, flow_run_id TEXT NOT NULL, task_run_id TEXT,
            level INTEGER NOT NULL, time {d.real}, logger TEXT, message TEXT)""",
        "CREATE INDEX IF NOT EXISTS logs_flow ON logs (flow_run_id, id)",
    ]


# Each entry takes the schema from the version before it to its own number.
def subflow_edges(d: Dialect) -> list[str]:
    """Version 2: a subflow run records the task runs it waited for, as a task run does."""
    return ["ALTER TABLE flow_runs ADD COLUMN upstream TEXT"]


def caches_and_resume(d: Dialect) -> list[str]:
    """Version 3: the cache's entries; a flow run's entry point and the run it resumed."""
    return [
        "ALTER TABLE flow_runs ADD COLUMN resumed_from TEXT",
        "ALTER TABLE flow_runs ADD COLUMN entry_point TEXT",
        f"""CREATE TABLE IF NOT EXISTS cache_entries (
            key TEXT PRIMARY KEY, task_name TEXT NOT NULL, result_ref TEXT NOT NULL,
            parts TEXT, flow_run_id TEXT, task_run_id TEXT, created {d.real} NOT NULL,
            expires {d.real})""",
        "CREATE INDEX IF NOT EXISTS cache_task ON cache_entries (task_name, created)",
        "CREATE INDEX IF NOT EXISTS cache_created ON cache_entries (created)",
    ]


def schedules(d: Dialect) -> list[str]:
    """Version 4: served schedules, and each tick a server took (one per schedule and time:
    the key that makes a duplicate run impossible, however many servers share the store)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS schedules (
            id TEXT PRIMARY KEY, flow_name TEXT NOT NULL, entry_point TEXT, spec TEXT NOT NULL,
            parameters TEXT, created {d.real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS scheduled_runs (
            schedule_id TEXT NOT NULL, scheduled_time {d.real} NOT NULL,
            state_name TEXT NOT NULL, flow_run_id TEXT, server TEXT, claimed {d.real} NOT NULL,
            PRIMARY KEY (schedule_id, scheduled_time))""",
    ]


def tag_limits(d: Dialect) -> list[str]:
    """Version 5: tag limits shared by every process on the store, and their claims: one
    row per (ticket, tag), waiting until granted (`store.limits`)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS tag_limits (
            tag TEXT PRIMARY KEY, slots INTEGER NOT NULL, created {d.real} NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS limit_claims (
            ticket BIGINT NOT NULL, tag TEXT NOT NULL, tags TEXT NOT NULL,
            waiting INTEGER NOT NULL, process TEXT NOT NULL, host TEXT, pid INTEGER,
            flow_run_id TEXT, task_run_id TEXT, task_run_name TEXT,
            requested {d.real} NOT NULL, granted {d.real}, PRIMARY KEY (ticket, tag))""",
        "CREATE INDEX IF NOT EXISTS limit_claims_queue ON limit_claims (tag, waiting, ticket)",
        "CREATE INDEX IF NOT EXISTS limit_claims_process ON limit_claims (process)",
    ]


def compact_children(d: Dialect) -> list[str]:
    """Version 6: the children of a map that completed alike (`ChildRuns`), one narrow row
    each. Child `map_index` is the task run `<parent>.<map_index>`, named, keyed, tagged
    and linked as its parent's row (`task_runs`) says, Completed once (`CHILD_COLUMNS`)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS task_run_children (
            parent_task_run_id TEXT NOT NULL, map_index INTEGER NOT NULL,
            start_time {d.real}, end_time {d.real}, result_ref TEXT,
            PRIMARY KEY (parent_task_run_id, map_index)){d.clustered}""",
    ]


MIGRATIONS: dict[int, Callable[[Dialect], list[str]]] = {
    1: schema,
    2: subflow_edges,
    3: caches_and_resume,
    4: schedules,
    5: tag_limits,
    6: compact_children,
}


def truncate_parameters(parameters: dict[str, Any]) -> str:
    """JSON of the parameters; a value too large or not JSON is replaced by a marker."""
    if not parameters:
        return "{}"
    import json  # here, not at the top: a run without parameters or tags needs no json

    out = {}
    for key, value in parameters.items():
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            text = None
        if text is not None and len(text) <= PARAMETER_LIMIT:
            out[key] = value
        else:
            shown = repr(value)
            out[key] = {
                "__truncated__": True,
                "type": type(value).__name__,
                "repr": shown[:200],
                "size": len(text) if text is not None else len(shown),
            }
    return json.dumps(out)


# -- rows: built from records here and nowhere else ---------------------------------------------

_EMPTY = "[]"


def _rollback(conn) -> None:
    """Roll back what failed; a connection too broken to roll back is dealt with next."""
    try:
        conn.rollback()
    except Exception:
        pass


def _writable(row: tuple) -> tuple:
    """The row with text every driver encodes: a lone surrogate (what os.fsdecode makes of
    a byte that is not UTF-8) or a NUL becomes visible escapes, `\\udce9` and `\\x00`."""
    return tuple(_writable_text(v) if isinstance(v, str) else v for v in row)


def _writable_text(text: str) -> str:
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")


def _ids_json(ids: list[str]) -> str:
    """A JSON list of run ids; joining is much cheaper than json.dumps for plain ids."""
    if not ids:
        return _EMPTY
    joined = '","'.join(ids)
    if '"' in joined or "\\" in joined or not joined.isprintable():
        import json

        return json.dumps(list(ids))
    return '["' + joined + '"]'


def flow_run_row(run: FlowRun, host: str, pid: int, now: float) -> tuple:
    return (
        run.id, run.name, run.flow_name, run.style, truncate_parameters(run.parameters),
        run.parent_id, run.state_type, run.state_name, run.state_message, run.start_time,
        run.end_time, run.executor, host, pid, now, _ids_json(run.upstream),
        run.resumed_from, run.entry_point,
    )  # fmt: skip


def _tags_json(tags: list[str]) -> str:
    if not tags:
        return _EMPTY
    import json

    return json.dumps(sorted(tags))


def task_run_row(run: TaskRun) -> tuple:
    return (
        run.id, run.flow_run_id, run.task_name, run.name, run.task_key, run.map_index,
        run.parent_task_run_id, _ids_json(run.upstream), _tags_json(run.tags),
        run.state_type, run.state_name,
        run.state_message, run.start_time, run.end_time, run.run_count, run.cache_key,
        run.result_ref,
    )  # fmt: skip


def with_child_rows(rows: dict[str, list]) -> dict[str, list]:
    """A batch with its `ChildRuns` records (kind "task_runs") made into task_run_children
    rows."""
    batches = rows.get("task_runs")
    if not batches:
        return rows
    made = []
    for runs in batches:
        parent = runs.parent_task_run_id
        made.extend((parent, *child) for child in runs.refs())
    return {**rows, "task_runs": made}


def row_count(rows: dict[str, list]) -> int:
    """The rows a batch writes (a ChildRuns record is as many as it has children)."""
    count = sum(len(batch) for kind, batch in rows.items() if kind != "task_runs")
    return count + sum(len(runs) for runs in rows.get("task_runs", ()))


def state_row(state: StateRecord) -> tuple:
    return (state.task_run_id, state.flow_run_id, state.type, state.name, state.message,
            state.time)  # fmt: skip


def log_row(record: LogRecord) -> tuple:
    return (record.flow_run_id, record.task_run_id, record.level, record.time, record.logger,
            record.message)  # fmt: skip


def flow_run_record(row: tuple) -> FlowRun:
    """A FlowRun from a row in FLOW_RUN_COLUMNS order (its heartbeat dropped)."""
    import json

    values = dict(zip(FLOW_RUN_COLUMNS, row))
    values.pop("heartbeat", None)
    values["parameters"] = json.loads(values["parameters"] or "{}")
    values["upstream"] = json.loads(values["upstream"] or "[]")
    return FlowRun(**values)


def task_run_record(row: tuple) -> TaskRun:
    import json

    values = dict(zip(TASK_RUN_COLUMNS, row))
    values["upstream"] = json.loads(values["upstream"] or "[]")
    values["tags"] = json.loads(values["tags"] or "[]")
    return TaskRun(**values)


# -- the schema's version, read the same way by both sides ---------------------------------------


def placeholders(dialect: Dialect, text: str) -> str:
    return text if dialect.placeholder == "?" else text.replace("?", "%s")


def tables(conn, dialect: Dialect) -> set[str]:
    cur = conn.cursor()
    if dialect.name == "sqlite":
        cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    return {row[0] for row in cur.fetchall() if not row[0].startswith("sqlite_")}


def schema_version(conn, dialect: Dialect, where: str) -> int | None:
    """The version in the meta table; None for an empty database. Refuses foreign ones."""
    found = tables(conn, dialect)
    if "headrace_meta" not in found:
        if found:
            raise StoreError(
                f"The database at {where} is not a headrace database (it has tables "
                f"{', '.join(sorted(found)[:5])}). Nothing was changed. Point "
                "HEADRACE_HOME or HEADRACE_DATABASE_URL at another location."
            )
        return None
    cur = conn.cursor()
    cur.execute("SELECT key, value FROM headrace_meta")
    meta = dict(cur.fetchall())
    if meta.get("app") != APP:
        raise StoreError(
            f"The database at {where} is not a headrace database (its headrace_meta "
            f"names app {meta.get('app')!r}). Nothing was changed. Point HEADRACE_HOME or "
            "HEADRACE_DATABASE_URL at another location."
        )
    return int(meta["schema_version"])


def newer_schema(where: str, version: int) -> StoreError:
    return StoreError(
        f"The database at {where} has schema version {version}, made by a newer "
        f"headrace; this one understands up to {SCHEMA_VERSION}. Nothing was changed. "
        "Upgrade headrace, or point HEADRACE_HOME elsewhere."
    )


def looks_crashed(host, pid, heartbeat, here: str, now: float) -> bool:
    """Whether a run recorded Running is gone: its process on this host died, or it fell
    silent for longer than STALE_SECONDS."""
    stale = heartbeat is not None and now - heartbeat > STALE_SECONDS
    return stale or (host == here and pid is not None and not alive(pid))


WRITERS = ("auto", "thread", "process")  # HEADRACE_HISTORY_WRITER


def writer_setting() -> str:
    """HEADRACE_HISTORY_WRITER: `auto` (the default), `thread` or `process`."""
    setting = os.environ.get("HEADRACE_HISTORY_WRITER", "").strip().lower() or "auto"
    if setting not in WRITERS:
        raise StoreError(
            f"HEADRACE_HISTORY_WRITER={setting!r} is not understood: use auto (the "
            "default: a writer process once a run records many rows), thread or process."
        )
    return setting


class OneConnection:
    """A store side that reads and writes at once (the cache's entries, the schedules'
    ticks): one connection, opened when first used, shared by threads under a lock."""

    def __init__(self, dialect: Dialect, connect: Callable[[], Any], where: str):
        self.dialect = dialect
        self.where = where
        self._connect = connect
        self._conn = None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _using(self):
        """The connection, under the lock; one that fails is closed (its transaction with
        it), so the next call starts afresh."""
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            try:
                yield conn
            except BaseException:
                self._conn = None
                with contextlib.suppress(Exception):
                    conn.close()
                raise

    def _execute(self, sql: str, params: tuple = (), fetch: bool = True, commit: bool = False):
        with self._using() as conn:
            cur = conn.cursor()
            cur.execute(placeholders(self.dialect, sql), params)
            rows = cur.fetchall() if fetch else cur.rowcount
            if commit or self.dialect.name != "sqlite":
                conn.commit()  # PostgreSQL: end even a read's transaction
            return rows

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None


# -- the write side ---------------------------------------------------------------------------


class SQLRecorder(Recorder):
    """The Recorder on one database. `open()` checks (and migrates) the schema, marks the
    runs of dead processes Crashed and starts the writer thread."""

    def __init__(
        self,
        dialect: Dialect,
        connect: Callable[[], Any],
        where: str,
        make_room: Callable[[], None] | None = None,
        clock=None,
    ):
        self.dialect = dialect
        self._clock = clock or time  # monotonic() and sleep(): the writer's waits
        self._connect = connect
        self._make_room = make_room  # frees space for the last writes when the disk is full
        self.where = where  # a path or a host, for messages and `headrace version`
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._batched = 0  # rows queued beyond one an item (a ChildRuns item holds many)
        self._batched_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._disabled: str | None = None
        self._active: dict[str, float] = {}  # flow run ids of this process -> last heartbeat
        self._skipped: set[str] = set()  # kinds of unwritable rows already reported
        self._outage = False  # the writer is waiting for the database to answer again
        self._dropped = 0  # rows not queued, past QUEUE_LIMIT in an outage
        self._room = threading.Event()  # set by the writer when fewer than BACKLOG wait
        self._stuck = False  # the writer freed no room in BACKLOG_WAIT: nothing waits
        # The writer thread's own: runs it has seen start and not end, and of those the
        # ones that lost rows (-> why), whose end is marked "History incomplete".
        self._open: set[str] = set()
        self._incomplete: dict[str, str] = {}
        # Who writes the batches (`store.writer_process`): this thread until a SQLite store
        # has written HANDOFF_ROWS rows in it, then a child process.
        self._writes = "thread" if dialect.name != "sqlite" else None
        self._process = None
        self._written_here = 0
        self._pid = os.getpid()
        self.host = HOST

    # -- opening -------------------------------------------------------------------------
    def open(self, checked=None) -> SQLRecorder:
        """Check the schema (unless `checked`, a connection whose schema is checked
        already), mark crashed runs, and start the writer on that same connection."""
        setting = writer_setting()  # a bad setting is refused for every store
        self._writes = self._writes or setting
        conn = checked or self._connect()
        try:
            if checked is None:
                self._check_schema(conn)
            self._mark_crashed(conn)
            conn.commit()  # no transaction is left open (PostgreSQL's schema lock with it)
        except BaseException:
            conn.close()
            raise
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name="headrace-store", daemon=True
        )
        self._writer.start()
        return self

    def _sql(self, text: str) -> str:
        return placeholders(self.dialect, text)

    def _check_schema(self, conn) -> None:
        version = schema_version(conn, self.dialect, self.where)
        if version is not None and version > SCHEMA_VERSION:
            raise newer_schema(self.where, version)
        if version is None or version < SCHEMA_VERSION:
            self.upgrade(conn, version or 0)

    def upgrade(self, conn, current: int) -> int:
        """Apply the migrations after `current` in one transaction; returns the new version."""
        cur = conn.cursor()
        if self.dialect.name == "sqlite":
            # Processes opening a new file at once race here. Take the write lock, then look
            # again: another may have made the schema meanwhile, and made piecemeal (DDL
            # outside a transaction) a reader could see headrace_meta before its rows.
            cur.execute("BEGIN IMMEDIATE")
            current = schema_version(conn, self.dialect, self.where) or 0
            if current >= SCHEMA_VERSION:
                conn.commit()
                return current
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version](self.dialect):
                cur.execute(statement)
        upsert = self._sql(
            "INSERT INTO headrace_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        cur.execute(upsert, ("app", APP))
        cur.execute(upsert, ("schema_version", str(SCHEMA_VERSION)))
        conn.commit()
        return SCHEMA_VERSION

    def _mark_crashed(self, conn) -> None:
        """Runs left Running by a process that is gone, or silent too long, become Crashed."""
        cur = conn.cursor()
        cur.execute(
            self._sql("SELECT id, host, pid, heartbeat FROM flow_runs WHERE state_type = ?"),
            ("RUNNING",),
        )
        now = time.time()
        crashed = [row[0] for row in cur.fetchall() if looks_crashed(*row[1:], self.host, now)]
        if not crashed:
            return
        for run_id in crashed:
            cur.execute(
                self._sql(
                    "UPDATE flow_runs SET state_type = ?, state_name = ?, state_message = ?, "
                    "end_time = COALESCE(end_time, ?) WHERE id = ?"
                ),
                ("CRASHED", "Crashed", CRASHED_MESSAGE, now, run_id),
            )
        conn.commit()

    # -- recording: each method queues one row and returns ---------------------------------
    def _put(self, kind: str, row, rows: int = 1) -> None:
        if self._disabled is not None:  # history is off: only the ends of runs still go
            if kind == "flow_run_end":
                self._queue.put((kind, row))
        elif self._outage and kind not in _KEPT and self._queued() >= QUEUE_LIMIT:
            self._dropped += rows
        else:
            if self._queued() >= BACKLOG and not self._stuck:
                self._room.clear()
                if self._queued() >= BACKLOG and not self._room.wait(BACKLOG_WAIT):
                    self._stuck = True  # never wait again until the writer catches up
            if rows > 1:
                with self._batched_lock:
                    self._batched += rows - 1
            self._queue.put((kind, row))

    def _queued(self) -> int:
        """Rows queued and not yet taken by the writer."""
        return self._queue.qsize() + self._batched

    def flow_run_started(self, run: FlowRun) -> None:
        now = time.time()
        self._active[run.id] = now
        self._put("flow_run", flow_run_row(run, self.host, os.getpid(), now))

    def flow_run_ended(self, flow_run_id, state_type, state_name, message, end_time) -> None:
        self._active.pop(flow_run_id, None)
        self._put("flow_run_end", (state_type, state_name, message, end_time, flow_run_id))

    def task_run(self, run: TaskRun) -> None:
        self._put("task_run", task_run_row(run))

    def task_runs(self, runs: ChildRuns) -> None:
        self._put("task_runs", runs, len(runs))  # rows made by whoever writes them

    def task_state(self, state: StateRecord) -> None:
        self._put("state", state_row(state))

    def log(self, record: LogRecord) -> None:
        self._put("log", log_row(record))

    def flush(self, timeout: float | None = 60.0) -> None:
        """Wait until every record so far is written (or, history off, the ends of runs)."""
        if self._writer is None or os.getpid() != self._pid:
            return
        done = threading.Event()
        self._queue.put(("flush", done))
        if not done.wait(timeout) and self._disabled is None:
            log.warning(
                "The run history was not flushed within %g s: the writer of %s is still "
                "busy or waiting for the database (%d records queued). Runs go on; what "
                "is queued is written when the database answers.",
                timeout, self.where, self._queue.qsize(),
            )  # fmt: skip

    @property
    def recording(self) -> bool:
        return self._disabled is None

    _STATEMENTS = {
        "flow_run": (
            f"INSERT INTO flow_runs ({', '.join(FLOW_RUN_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(FLOW_RUN_COLUMNS))})"
        ),
        "flow_run_end": (
            "UPDATE flow_runs SET state_type = ?, state_name = ?, state_message = ?, "
            "end_time = ? WHERE id = ?"
        ),
        "task_run": (
            f"INSERT INTO task_runs ({', '.join(TASK_RUN_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(TASK_RUN_COLUMNS))}) ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in TASK_RUN_COLUMNS[1:])
        ),
        "task_runs": (
            "INSERT INTO task_run_children (parent_task_run_id, map_index, start_time, "
            "end_time, result_ref) VALUES (?, ?, ?, ?, ?) ON CONFLICT (parent_task_run_id, "
            "map_index) DO UPDATE SET start_time = excluded.start_time, "
            "end_time = excluded.end_time, result_ref = excluded.result_ref"
        ),
        "state": (
            f"INSERT INTO task_run_states ({', '.join(STATE_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(STATE_COLUMNS))})"
        ),
        "log": (
            f"INSERT INTO logs ({', '.join(LOG_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(LOG_COLUMNS))})"
        ),
        "heartbeat": "UPDATE flow_runs SET heartbeat = ? WHERE id = ?",
    }
    # Rows go in this order, so an end never lands before its start.
    _ORDER = ("flow_run", "task_run", "task_runs", "state", "log", "flow_run_end", "heartbeat")

    def _writer_connection(self) -> tuple:
        """(the writer's connection or None, its statements); None turns history off."""
        conn = None
        try:
            with _in_driver():
                conn = self._connect()
        except Exception as exc:
            self._disable(f"cannot open {self.where}: {exc}")
        return conn, self._statements()

    def _statements(self) -> dict[str, str]:
        return {k: self._sql(v) for k, v in self._STATEMENTS.items()}

    def _write_loop(self, conn) -> None:
        statements = self._statements()
        while True:
            try:
                first = self._queue.get(timeout=HEARTBEAT_SECONDS)
            except queue.Empty:
                first = None
            items = [] if first is None else [first]
            taken = 0
            while True:
                if items and items[-1][0] == "task_runs":
                    taken += len(items[-1][1]) - 1
                if len(items) + taken >= BATCH:
                    break
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if taken:
                with self._batched_lock:
                    self._batched -= taken
            if self._queued() < BACKLOG:
                self._stuck = False
                self._room.set()  # the run goes on while this batch is written
            rows: dict[str, list] = {}
            waiters = []
            for kind, row in items:
                if kind == "flush":
                    waiters.append(row)
                else:
                    rows.setdefault(kind, []).append(row)
            now = time.time()
            if self._active and any(now - t > HEARTBEAT_SECONDS for t in self._active.values()):
                rows["heartbeat"] = [(now, run_id) for run_id in self._active]
                self._active = dict.fromkeys(self._active, now)
            if conn is not None and (rows or waiters and self._process is not None):
                conn = self._hand_over(conn, statements, rows, wait=bool(waiters))
            for waiter in waiters:
                waiter.set()

    def _hand_over(self, conn, statements: dict, rows: dict[str, list], wait: bool):
        """Write one batch here, or have the writer process write it; with `wait` (a
        flush), once every batch it was given is written (`rows` may then be empty)."""
        if self._process is None and self._writes != "thread" and self._disabled is None:
            self._written_here += row_count(rows)
            if self._writes == "process" or self._written_here > HANDOFF_ROWS:
                self._process = self._start_process()
        if self._process is None or not self._process.ready(wait=self._writes == "process"):
            if self._process is not None and self._process.ended:
                self._process, self._writes = None, "thread"
            return self._write_batch(conn, statements, rows) if rows else conn
        self._open.update(row[0] for row in rows.get("flow_run", ()))
        unwritten = self._process.write(rows, wait)
        if unwritten is None:
            self._open.difference_update(row[-1] for row in rows.get("flow_run_end", ()))
            return conn
        self._process, self._writes = None, "thread"  # it died: write here from now on
        for batch in unwritten:
            conn = self._write_batch(conn, statements, batch)
        return conn

    def _start_process(self):
        from headrace.store.writer_process import WriterProcess

        try:
            return WriterProcess(self)
        except OSError as exc:
            self._writes = "thread"
            log.warning("Run history: no writer process (%s); this process writes it.", exc)
            return None

    def _write_batch(self, conn, statements: dict, rows: dict[str, list]):
        """Write one batch, keeping account of the runs it starts and ends and of the runs
        that lost rows, whose ends are marked "History incomplete"."""
        rows = with_child_rows(rows)
        self._open.update(row[0] for row in rows.get("flow_run", ()))
        if self._dropped:
            count, self._dropped = self._dropped, 0  # a lost increment only delays the note
            self._lost(f"{count} records were dropped while {self.where} did not answer")
        if self._disabled is None:
            try:
                conn = self._write(conn, statements, rows)
            except Exception as exc:  # not the database's error: never let it end the writer
                self._write_row_by_row(conn, statements, rows, exc)
        ends = rows.get("flow_run_end")
        known = [row for row in ends or () if row[-1] in self._open]  # the others: no row
        if self._disabled is not None and known:  # off before or while writing this batch
            conn = self._write_ends(conn, statements["flow_run_end"], known)
        for row in ends or ():
            self._open.discard(row[-1])
            self._incomplete.pop(row[-1], None)
        return conn

    def _lost(self, why: str) -> None:
        """Rows of the open runs were not written: their ends will say so."""
        for run_id in self._open:
            self._incomplete.setdefault(run_id, why)

    def _noted(self, end: tuple) -> tuple:
        """An end row, its message marked when its run lost rows."""
        why = self._incomplete.get(end[-1])
        if why is None:
            return end
        state_type, state_name, message, end_time, run_id = end
        note = f"History incomplete: {why}." + (f" {message}" if message else "")
        return (state_type, state_name, note, end_time, run_id)

    def _write_ends(self, conn, statement: str, ends: list[tuple]):
        """History is off, but a run that ended must not be shown Crashed: write its end,
        marked incomplete, after making room (a full disk) or reconnecting (a lost server)."""
        self._lost(self._disabled)
        ends = [self._noted(row) for row in ends]
        for attempt in range(3):
            with _in_driver():
                try:
                    conn.cursor().executemany(statement, ends)
                    conn.commit()
                    return conn
                except Exception as exc:
                    error = exc
                    _rollback(conn)
            if attempt == 0 and self._make_room is not None:
                self._make_room()
            else:
                conn = self._reconnect(conn)
        log.warning(
            "Run history: the end of flow run %s could not be recorded either (%s); the "
            "history will show it as Crashed.", ", ".join(row[-1] for row in ends), error,
        )  # fmt: skip
        return conn

    def _write_row_by_row(self, conn, statements: dict, rows: dict[str, list], first) -> None:
        """A batch failed for a reason of its own (text the driver cannot encode, a value
        it does not take): write its rows one at a time, each made writable if it must be,
        and report (once per kind of problem) the rows that still fail, which are skipped."""
        with _in_driver():
            _rollback(conn)
        for kind in self._ORDER:
            for row in rows.get(kind, ()):
                if kind == "flow_run_end":
                    row = self._noted(row)
                for attempt in (row, _writable(row)):
                    try:
                        with _in_driver():
                            conn.cursor().execute(statements[kind], attempt)
                            conn.commit()
                        break
                    except Exception as exc:
                        with _in_driver():
                            _rollback(conn)
                        problem = exc
                else:
                    self._lost(f"a {kind} row could not be written ({type(problem).__name__})")
                    key = f"{kind}: {type(problem).__name__}"
                    if key not in self._skipped:
                        self._skipped.add(key)
                        log.warning(
                            "A %s row of the run history could not be written and was "
                            "skipped (%s: %s); the other rows are written. First problem "
                            "in its batch: %r.", kind, type(problem).__name__, problem, first,
                        )  # fmt: skip

    def _write(self, conn, statements: dict, rows: dict[str, list]):
        """Write one batch in one transaction; returns the connection to go on with. A lost
        connection is opened again, with backoff, for up to OUTAGE_SECONDS: the batch and
        everything queued behind it wait, and nothing is lost."""
        delay, lost_since = 0.01, None
        while True:
            with _in_driver():
                try:
                    cur = conn.cursor()
                    for kind in self._ORDER:
                        if kind in rows:
                            batch = rows[kind]
                            if kind == "flow_run_end":
                                batch = [self._noted(row) for row in batch]
                            cur.executemany(statements[kind], batch)
                    conn.commit()
                    if lost_since is not None:
                        self._outage = False
                        log.warning(
                            "Run history: %s answers again; %s", self.where,
                            "see the runs marked History incomplete."
                            if self._dropped or self._incomplete
                            else "nothing was lost.",
                        )  # fmt: skip
                    return conn
                except self.dialect.errors as exc:
                    error = exc
                    _rollback(conn)
            if _is_lock(error):  # another process holds the write lock: wait our turn
                self._clock.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if isinstance(error, self.dialect.row_errors):
                raise error  # a row's fault, not the store's: written row by row
            if isinstance(error, self.dialect.disconnects):
                now = self._clock.monotonic()
                if lost_since is None:
                    lost_since, self._outage = now, True
                    log.warning(
                        "Run history: lost the connection to %s (%s); retrying for up to "
                        "%d s, keeping what is to be written.", self.where,
                        str(error).strip().splitlines()[0], OUTAGE_SECONDS,
                    )  # fmt: skip
                if now - lost_since < OUTAGE_SECONDS:
                    self._clock.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    conn = self._reconnect(conn)
                    continue
            self._outage = False
            self._disable(f"writing to {self.where} failed: {error}")
            return conn

    def _reconnect(self, conn):
        """A fresh connection, or the old (dead) one while the server does not answer."""
        try:
            conn.close()
        except Exception:
            pass
        try:
            with _in_driver():
                return self._connect()
        except Exception:
            return conn

    def _disable(self, reason: str) -> None:
        # Only the writer thread calls this, so warning before setting the flag cannot warn
        # twice; the other order let `flush()` return on the flag and the process exit
        # before the warning was printed.
        if self._disabled is None:
            log.warning(
                "Run history is not being recorded: %s. Flows still run; fix the cause "
                "(free disk space, a writable HEADRACE_HOME) to record them again.",
                reason,
            )
            self._disabled = reason

    # -- looking after the database ---------------------------------------------------------
    def prune(self, older_than: float) -> int:
        """Delete finished flow runs that ended before `older_than` (epoch seconds)."""
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute(
                self._sql("SELECT id FROM flow_runs WHERE end_time < ? AND state_type != ?"),
                (older_than, "RUNNING"),
            )
            ids = [(row[0],) for row in cur.fetchall()]
            self.last_pruned = [i for (i,) in ids]
            cur.executemany(
                self._sql(
                    "DELETE FROM task_run_children WHERE parent_task_run_id IN "
                    "(SELECT id FROM task_runs WHERE flow_run_id = ?)"
                ),
                ids,
            )
            for table, column in (
                ("logs", "flow_run_id"),
                ("task_run_states", "flow_run_id"),
                ("task_runs", "flow_run_id"),
                ("flow_runs", "id"),
            ):
                cur.executemany(self._sql(f"DELETE FROM {table} WHERE {column} = ?"), ids)
            for table in ("logs", "task_run_states", "task_runs"):  # rows of no run (orphans)
                cur.execute(
                    f"DELETE FROM {table} WHERE flow_run_id NOT IN (SELECT id FROM flow_runs)"
                )
            cur.execute(
                "DELETE FROM task_run_children WHERE parent_task_run_id NOT IN "
                "(SELECT id FROM task_runs)"
            )
            conn.commit()
            return len(ids)
        finally:
            conn.close()

    def reset(self) -> None:
        """Delete every run, task run, state, log line, cache entry and scheduled run (the
        schema stays, and so do the schedules servers registered and the tag limits)."""
        conn = self._connect()
        try:
            cur = conn.cursor()
            tables = ("logs", "task_run_states", "task_run_children", "task_runs", "flow_runs",
                      "cache_entries", "scheduled_runs")  # fmt: skip
            for table in tables:
                cur.execute(f"DELETE FROM {table}")
            conn.commit()
        finally:
            conn.close()


# PostgreSQL's serialization_failure, deadlock_detected, lock_not_available (lock_timeout).
_LOCK_SQLSTATES = frozenset({"40001", "40P01", "55P03"})


def _is_lock(exc: Exception) -> bool:
    if getattr(exc, "sqlstate", None) in _LOCK_SQLSTATES:
        return True
    text = str(exc).lower()
    return "locked" in text or "busy" in text or "deadlock" in text
