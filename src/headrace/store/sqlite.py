"""SQLite: the embedded default store, one file at $HEADRACE_HOME/headrace.db.

WAL mode lets readers (the CLI, the UI) read while a run writes; a busy
timeout plus the writer's retries turn "database is locked" into a short
wait. A file that is not a SQLite database is refused with its path.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from headrace.store.sql import Dialect, SQLStore, StoreError

DIALECT = Dialect(
    name="sqlite",
    placeholder="?",
    real="REAL",
    serial_key="INTEGER PRIMARY KEY AUTOINCREMENT",
    errors=(sqlite3.Error,),
)


def open_sqlite(path: str | Path) -> SQLStore:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal" and path.exists():
                conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise StoreError(
                    f"{path} is not a SQLite database (or is damaged): {exc}. Nothing was "
                    "changed. Move it away, or point HEADRACE_HOME at another directory."
                ) from None
            raise
        return conn

    return SQLStore(DIALECT, connect, str(path)).open()


def sqlite_version() -> str:
    return sqlite3.sqlite_version
