"""The read side of the SQL store: `SQLReader`, read-only and paged, with no side effects.

Opening one checks the schema and nothing else: a database with no headrace
tables is `StoreMissing`, one of an older schema is refused with "run
`headrace db upgrade`", a newer or foreign one is refused as the write side
refuses it. It starts no thread and writes nothing: a run left Running by a
process that is gone is *shown* Crashed, with no end time, and stays
Running in the database until a Recorder opens and marks it.

Each query runs in its own short transaction (`_rows`); the SQLite reader
overrides `_rows` so that reading never creates a file (store.sqlite).
This module must not write, and must not import a database driver.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from headrace._pid import HOST
from headrace.store import sql as schema
from headrace.store.base import CRASHED_MESSAGE, Reader, StoreError, StoreMissing, no_such_run
from headrace.store.records import FlowRun, LogRecord, MapGroup, StateRecord
from headrace.store.sql import (
    CHILD_COLUMNS,
    CHILDREN_JOINED,
    FLOW_RUN_COLUMNS,
    LOG_COLUMNS,
    STATE_COLUMNS,
    TASK_RUN_COLUMNS,
    Dialect,
    flow_run_record,
    looks_crashed,
    newer_schema,
    placeholders,
    schema_version,
    task_run_record,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

FAILED_SHOWN = 3  # failed children a MapGroup names
_TASK_RUN = ", ".join(TASK_RUN_COLUMNS)
_CHILD = ", ".join(CHILD_COLUMNS)


class SQLReader(Reader):
    def __init__(self, dialect: Dialect, connect: Callable[[], Any], where: str):
        self.dialect = dialect
        self._connect = connect
        self._conn = None
        self._lock = threading.Lock()
        self.where = where
        self.host = HOST

    def schema_version(self) -> int | None:
        """The schema version written in the database (None: no headrace tables yet)."""
        return self._with_connection(lambda conn: schema_version(conn, self.dialect, self.where))

    def open(self) -> SQLReader:
        """Check the schema is the one this headrace reads; refuse the database otherwise."""
        version = self.schema_version()
        if version is None:
            raise StoreMissing(f"No run history has been recorded in {self.where} yet.")
        if version > schema.SCHEMA_VERSION:
            raise newer_schema(self.where, version)
        if version < schema.SCHEMA_VERSION:
            raise StoreError(
                f"The database at {self.where} has schema version {version}; this headrace "
                f"reads version {schema.SCHEMA_VERSION}. Run `headrace db upgrade` to bring it up "
                "to date (or run any flow, which upgrades it)."
            )
        return self

    # -- connections -----------------------------------------------------------------------
    def _with_connection(self, work: Callable[[Any], Any]) -> Any:
        """Run `work(conn)` in one read transaction on the reader's connection, one thread
        at a time (the UI's requests share a reader)."""
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            try:
                return work(conn)
            finally:
                conn.rollback()  # end the transaction: the next query sees new rows

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        def run(conn):
            cur = conn.cursor()
            cur.execute(placeholders(self.dialect, sql), params)
            return cur.fetchall()

        return self._with_connection(run)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- flow runs ---------------------------------------------------------------------------
    def _gone(self) -> list[str]:
        """Ids of runs recorded Running whose process is gone (shown Crashed)."""
        now = time.time()
        rows = self._rows(
            "SELECT id, host, pid, heartbeat FROM flow_runs WHERE state_type = ?", ("RUNNING",)
        )
        return [row[0] for row in rows if looks_crashed(*row[1:], self.host, now)]

    def _flow_runs(self, where: str, params: tuple, tail: str = "") -> list[FlowRun]:
        sql = f"SELECT {', '.join(FLOW_RUN_COLUMNS)} FROM flow_runs"
        runs = [flow_run_record(row) for row in self._rows(sql + where + tail, params)]
        if any(run.state_type == "RUNNING" for run in runs):
            gone = set(self._gone())
            for run in runs:
                if run.id in gone:
                    run.state_type, run.state_name = "CRASHED", "Crashed"
                    run.state_message = CRASHED_MESSAGE
        return runs

    def flow_runs(self, flow_name=None, state=None, limit=50, before=None, parent_id=None,
                  after_cursor=None, text=None, since=None):  # fmt: skip
        where, params = [], []
        if after_cursor is not None:
            start, run_id = after_cursor
            # (start_time <= ? first: a range on the start index, not an OR across it)
            where.append("start_time <= ? AND (start_time < ? OR id < ?)")
            params += [start, start, run_id]
        if text:
            where.append("(LOWER(name) LIKE ? ESCAPE '\\' OR LOWER(flow_name) LIKE ? ESCAPE '\\')")
            params += [_contains(text)] * 2
        if since is not None:
            where.append("start_time >= ?")
            params.append(since)
        if flow_name:
            where.append("flow_name = ?")
            params.append(flow_name)
        if state:
            matches = "(UPPER(state_type) = UPPER(?) OR UPPER(state_name) = UPPER(?))"
            params += [state, state]
            gone = self._gone()
            if gone:  # shown Crashed: they match "crashed", and not "running"
                marks = f"({', '.join('?' * len(gone))})"
                matches = f"({matches} AND id NOT IN {marks})"
                params += gone
                if state.upper() == "CRASHED":
                    matches = f"({matches} OR id IN {marks})"
                    params += gone
            where.append(matches)
        if before is not None:
            where.append("start_time < ?")
            params.append(before)
        if parent_id:
            where.append("parent_id = ?")
            params.append(parent_id)
        clause = " WHERE " + " AND ".join(where) if where else ""
        tail = " ORDER BY start_time DESC, id DESC"
        if limit:
            tail += f" LIMIT {int(limit)}"
        return self._flow_runs(clause, tuple(params), tail)

    def flow_run(self, ref: str) -> FlowRun:
        runs = self._flow_runs(" WHERE id = ? OR name = ?", (ref, ref))
        if not runs and ref:  # (an empty prefix would be every run's)
            # LOWER: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
            # The ref is text, not a pattern: its % and _ match themselves.
            pattern = _escaped(ref) + "%"
            runs = self._flow_runs(" WHERE LOWER(id) LIKE LOWER(?) ESCAPE '\\'", (pattern,))
        if len(runs) > 1:
            shown = ", ".join(f"{r.name} ({r.id[:8]})" for r in runs[:5])
            raise StoreError(f"{ref!r} matches {len(runs)} flow runs: {shown}. Use a longer id.")
        if not runs:
            raise no_such_run(ref)
        return runs[0]

    # -- task runs -----------------------------------------------------------------------------
    def task_runs(self, flow_run_id, limit=None, offset=0, children=None):
        where = "flow_run_id = ?"
        if children is not None:
            where += " AND map_index IS NOT NULL" if children else " AND map_index IS NULL"
        sql, params = f"SELECT {_TASK_RUN} FROM task_runs WHERE {where}", [flow_run_id]
        if children is not False:  # and the compact children (task_run_children)
            sql += f" UNION ALL SELECT {_CHILD} FROM {CHILDREN_JOINED} WHERE p.flow_run_id = ?"
            params.append(flow_run_id)
        # A mapped task's own row has no start; it leads on every database (PostgreSQL
        # would sort NULL last, SQLite sorts it first).
        sql = f"SELECT * FROM ({sql}) AS t ORDER BY start_time IS NOT NULL, start_time, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        elif offset and self.dialect.name == "sqlite":
            sql += " LIMIT -1"  # SQLite takes an OFFSET only after a LIMIT
        if offset:
            sql += f" OFFSET {int(offset)}"
        return [task_run_record(row) for row in self._rows(sql, tuple(params))]

    def _task_run_row(self, task_run_id: str) -> tuple | None:
        """A task run's row by its id (TASK_RUN_COLUMNS): its own, or a compact child's,
        whose id is `<parent>.<map_index>`."""
        rows = self._rows(f"SELECT {_TASK_RUN} FROM task_runs WHERE id = ?", (task_run_id,))
        if rows:
            return rows[0]
        parent, dot, index = task_run_id.rpartition(".")
        if not dot or not index.isdigit():
            return None
        rows = self._rows(
            f"SELECT {_CHILD} FROM {CHILDREN_JOINED} WHERE c.parent_task_run_id = ? "
            "AND c.map_index = ?",
            (parent, int(index)),
        )
        return rows[0] if rows else None

    def schedules(self):
        from headrace.store.schedules import read_schedules

        return read_schedules(self._rows)

    def scheduled_runs(self, schedule_id=None, limit=50):
        from headrace.store.schedules import read_scheduled_runs

        return read_scheduled_runs(self._rows, schedule_id, limit)

    def limits(self):
        from headrace.store.limits import read_limits

        return read_limits(self._rows)

    def map_groups(self, flow_run_id: str) -> list[MapGroup]:
        """One group per mapped task: by the children's recorded parent, else their task key
        (else task name), in the order the groups started."""
        group = "parent_task_run_id, task_key, task_name"
        counted = self._rows(
            f"SELECT {group}, state_name, COUNT(*), MIN(start_time), MAX(end_time) "
            f"FROM task_runs WHERE flow_run_id = ? AND map_index IS NOT NULL "
            f"GROUP BY {group}, state_name "
            "UNION ALL SELECT c.parent_task_run_id, p.task_key, p.task_name, 'Completed', "
            f"COUNT(*), MIN(c.start_time), MAX(c.end_time) FROM {CHILDREN_JOINED} "
            "WHERE p.flow_run_id = ? GROUP BY c.parent_task_run_id, p.task_key, p.task_name",
            (flow_run_id, flow_run_id),
        )
        failed = self._rows(
            f"SELECT {group}, name FROM (SELECT {group}, name, ROW_NUMBER() OVER "
            f"(PARTITION BY {group} ORDER BY map_index, id) AS n FROM task_runs "
            "WHERE flow_run_id = ? AND map_index IS NOT NULL "
            "AND state_type IN ('FAILED', 'CRASHED')) AS bad "
            f"WHERE n <= {FAILED_SHOWN + 1} ORDER BY n",
            (flow_run_id,),
        )
        groups: dict[tuple, MapGroup] = {}
        for parent, key, name, state, count, start, end in counted:
            found = groups.get((parent, key, name))
            if found is None:
                found = groups[parent, key, name] = MapGroup(parent, key, name, 0, {}, start, end)
            found.size += count
            found.counts[state] = found.counts.get(state, 0) + count
            found.start_time = _least(found.start_time, start)
            found.end_time = _most(found.end_time, end)
        for parent, key, name, child in failed:
            groups[parent, key, name].failed.append(child)
        return sorted(groups.values(), key=lambda g: (g.start_time is not None, g.start_time or 0))

    def states(self, task_run_id: str) -> list[StateRecord]:
        """Every state of a task run in order: Running, intermediate ones, the final one.

        The task run's own row holds the first and the last (its start and end);
        `task_run_states` holds only what came between, to keep writes small.
        """
        found = self._task_run_row(task_run_id)
        between = self._rows(
            f"SELECT {', '.join(STATE_COLUMNS)} FROM task_run_states WHERE task_run_id = ? "
            "ORDER BY id",
            (task_run_id,),
        )
        middle = [StateRecord(*row) for row in between]
        if found is None:
            return middle
        run = task_run_record(found)
        first = StateRecord(task_run_id, run.flow_run_id, "RUNNING", "Running", None,
                            run.start_time)  # fmt: skip
        last = StateRecord(task_run_id, run.flow_run_id, run.state_type, run.state_name,
                           run.state_message, run.end_time)  # fmt: skip
        return [first, *middle, last]

    def logs(self, flow_run_id, after=0, limit=None, level=None, task_run_id=None, text=None):
        where, params = ["flow_run_id = ?", "id > ?"], [flow_run_id, after]
        if level is not None:
            where.append("level >= ?")
            params.append(int(level))
        if task_run_id is not None:
            where.append("task_run_id = ?")
            params.append(task_run_id)
        if text:
            where.append("LOWER(message) LIKE ? ESCAPE '\\'")
            params.append(_contains(text))
        sql = (
            f"SELECT id, {', '.join(LOG_COLUMNS)} FROM logs WHERE {' AND '.join(where)} ORDER BY id"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [(row[0], LogRecord(*row[1:])) for row in self._rows(sql, tuple(params))]

    def task_run(self, task_run_id):
        row = self._task_run_row(task_run_id)
        return task_run_record(row) if row is not None else None

    def flow_summaries(self):
        counted = self._rows(
            "SELECT flow_name, COUNT(*), SUM(CASE WHEN state_type = 'COMPLETED' THEN 1 ELSE 0 "
            "END), MAX(start_time) FROM flow_runs WHERE parent_id IS NULL GROUP BY flow_name "
            "ORDER BY MAX(start_time) DESC"
        )
        durations: dict[str, list[float]] = {}
        for name, seconds in self._rows(
            "SELECT flow_name, d FROM (SELECT flow_name, end_time - start_time AS d, "
            "ROW_NUMBER() OVER (PARTITION BY flow_name ORDER BY start_time DESC) AS n "
            "FROM flow_runs WHERE parent_id IS NULL AND end_time IS NOT NULL) AS recent "
            "WHERE n <= 1000"
        ):
            durations.setdefault(name, []).append(seconds)
        import statistics

        return [
            {"flow_name": name, "runs": runs, "completed": completed or 0, "last_start": last,
             "median_duration": statistics.median(durations[name]) if name in durations
             else None}
            for name, runs, completed, last in counted
        ]  # fmt: skip

    def activity(self, flow_run_id):
        tasks = self._rows(
            "SELECT (SELECT COUNT(*) FROM task_runs WHERE flow_run_id = ?) + (SELECT COUNT(*) "
            f"FROM {CHILDREN_JOINED} WHERE p.flow_run_id = ?)",
            (flow_run_id, flow_run_id),
        )
        last = self._rows("SELECT MAX(id) FROM logs WHERE flow_run_id = ?", (flow_run_id,))
        return tasks[0][0], last[0][0]

    def map_children(self, flow_run_id, task_key, after_index=-1, limit=100, state=None):
        where = "flow_run_id = ? AND task_key = ? AND map_index > ?"
        params = [flow_run_id, task_key, after_index]
        if state:
            where += " AND state_name = ?"
            params.append(state)
        tail = f" ORDER BY map_index LIMIT {int(limit)}"
        rows = self._rows(f"SELECT {_TASK_RUN} FROM task_runs WHERE {where}{tail}", tuple(params))
        if not state or state == "Completed":  # each part in index order, then merged
            rows += self._rows(
                f"SELECT {_CHILD} FROM {CHILDREN_JOINED} WHERE p.flow_run_id = ? AND "
                "p.task_key = ? AND p.map_index IS NULL AND c.map_index > ? "
                f"ORDER BY c.map_index LIMIT {int(limit)}",
                (flow_run_id, task_key, after_index),
            )
            rows.sort(key=lambda row: row[5])  # map_index
        return [task_run_record(row) for row in rows[: int(limit)]]


def _escaped(text: str) -> str:
    """`text` for a LIKE pattern with ESCAPE '\\': its %, _ and \\ match themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(text: str) -> str:
    """A LIKE pattern for `text` anywhere, lower-cased."""
    return f"%{_escaped(text.lower())}%"


def _least(a, b):
    return b if a is None else a if b is None else min(a, b)


def _most(a, b):
    return b if a is None else a if b is None else max(a, b)


__all__ = ["SQLReader"]
