"""The cache's entries, kept in the store beside the run history.

A `CacheEntry` maps a cache key to where a result can be read again (its
`result_ref`, the same text a task run's history keeps), with the task's
name, the digests of the key's parts (to say which input changed on a
miss), who wrote it, when, and when it expires.

Unlike the Recorder, this side reads and writes at once: an entry written by
one process must be there for the next process that looks. `claim(key)`
holds a lock on one key across processes, so two runs racing on a key run
it once: the second waits, then finds the first one's entry. The lock dies
with its holder: on SQLite an flock on a file beside the database, on
PostgreSQL a session advisory lock on a connection of the claim's own.

This module must not know what a task or a policy is: keys arrive computed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from headrace.store.sql import Dialect, OneConnection

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

CACHE_COLUMNS = ["key", "task_name", "result_ref", "parts", "flow_run_id", "task_run_id",
                 "created", "expires"]  # fmt: skip


@dataclass(slots=True)
class CacheEntry:
    key: str
    task_name: str
    result_ref: str
    parts: dict[str, str] = field(default_factory=dict)  # part name -> digest
    flow_run_id: str | None = None
    task_run_id: str | None = None
    created: float = 0.0
    expires: float | None = None  # None: never

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now


def _entry(row: tuple) -> CacheEntry:
    values = dict(zip(CACHE_COLUMNS, row))
    values["parts"] = json.loads(values["parts"] or "{}")
    return CacheEntry(**values)


class CacheStore(OneConnection):
    """Cache entries in one database; safe to share between threads."""

    def __init__(self, dialect: Dialect, connect: Callable[[], Any], where: str,
                 claim: Callable[[str], contextlib.AbstractContextManager],
                 clock: Callable[[], float] | None = None):  # fmt: skip
        super().__init__(dialect, connect, where)
        self.clock = clock or time.time  # wall-clock seconds: creation and expiry times
        self._claim = claim

    def get(self, key: str) -> CacheEntry | None:
        rows = self._execute(f"SELECT {', '.join(CACHE_COLUMNS)} FROM cache_entries "
                             "WHERE key = ?", (key,))  # fmt: skip
        return _entry(rows[0]) if rows else None

    def latest(self, task_name: str) -> CacheEntry | None:
        """The newest entry of a task: what a miss compares its key's parts with."""
        rows = self._execute(
            f"SELECT {', '.join(CACHE_COLUMNS)} FROM cache_entries WHERE task_name = ? "
            "ORDER BY created DESC LIMIT 1",
            (task_name,),
        )
        return _entry(rows[0]) if rows else None

    def put(self, entry: CacheEntry) -> None:
        """Write (or overwrite) the entry of `entry.key`."""
        columns = ", ".join(CACHE_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in CACHE_COLUMNS[1:])
        row = (entry.key, entry.task_name, entry.result_ref, json.dumps(entry.parts),
               entry.flow_run_id, entry.task_run_id, entry.created, entry.expires)  # fmt: skip
        self._execute(
            f"INSERT INTO cache_entries ({columns}) VALUES ({', '.join('?' * len(row))}) "
            f"ON CONFLICT (key) DO UPDATE SET {updates}",
            row,
            fetch=False,
            commit=True,
        )

    def entries(self, task_name: str | None = None, limit: int | None = None) -> list[CacheEntry]:
        """Entries, newest first; of one task when `task_name` is given."""
        where, params = ("WHERE task_name = ? ", (task_name,)) if task_name else ("", ())
        tail = f"LIMIT {int(limit)}" if limit is not None else ""
        rows = self._execute(
            f"SELECT {', '.join(CACHE_COLUMNS)} FROM cache_entries {where}"
            f"ORDER BY created DESC {tail}",
            params,
        )
        return [_entry(row) for row in rows]

    def count(self) -> int:
        return self._execute("SELECT count(*) FROM cache_entries")[0][0]

    def clear(self, task_name: str | None = None, older_than: float | None = None) -> int:
        """Delete entries (of one task, created before `older_than`); how many went."""
        clauses, params = [], []
        if task_name is not None:
            clauses.append("task_name = ?")
            params.append(task_name)
        if older_than is not None:
            clauses.append("created < ?")
            params.append(older_than)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._execute(f"DELETE FROM cache_entries{where}", tuple(params), fetch=False,
                             commit=True)  # fmt: skip

    def result_refs(self) -> set[str]:
        """The result_ref of every entry: results a prune must keep."""
        return {row[0] for row in self._execute("SELECT result_ref FROM cache_entries")}

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[None]:
        """Hold `key` against every other process and thread until the block ends."""
        with self._claim(key):
            yield


# -- claims ------------------------------------------------------------------------------------


def file_claims(folder: Path) -> Callable[[str], contextlib.AbstractContextManager]:
    """Claims as flock'ed files in `folder`, one per key, removed by their holder.

    A waiter that wakes holding a file its holder already removed tries again
    on the path's new file, so two holders never hold one key at once."""

    made = []

    @contextlib.contextmanager
    def claim(key: str) -> Iterator[None]:
        if not made:
            folder.mkdir(parents=True, exist_ok=True)
            made.append(folder)
        path = folder / f"{lock_number(key) & (1 << 64) - 1:016x}"
        while True:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    break
            except FileNotFoundError:
                pass  # removed by the holder we waited for: claim the new file
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(fd)

    return claim


def advisory_claims(
    connect: Callable[[], Any],
) -> Callable[[str], contextlib.AbstractContextManager]:
    """Claims as PostgreSQL session advisory locks, each on a connection of its own: the
    server frees one the moment its holder's connection goes."""

    @contextlib.contextmanager
    def claim(key: str) -> Iterator[None]:
        number = lock_number(key)
        conn = connect()
        try:
            conn.autocommit = True
            conn.execute("SELECT pg_advisory_lock(%s)", (number,))
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    return claim


def lock_number(key: str) -> int:
    """A signed 64-bit lock number for a key of any text (a cache_key_fn's own too)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
