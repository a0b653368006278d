"""SQLite: the embedded default store, one file at $HEADRACE_HOME/headrace.db.

WAL mode lets readers (the CLI, the UI) read while a run writes; a busy
timeout plus the writer's retries turn "database is locked" into a short
wait. A file that is not a SQLite database is refused with its path. The
schema is checked before WAL is switched on, because switching rewrites the
file's header: a refused file is left byte for byte as it was.
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

    def connect(wal: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("SELECT count(*) FROM sqlite_master")  # "not a database" shows here
            if wal:
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

    store = SQLStore(DIALECT, connect, str(path))
    conn = connect(wal=False)  # refuse a foreign or newer file before WAL touches it
    try:
        store._check_schema(conn)
    finally:
        conn.close()
    return store.open()


def sqlite_version() -> str:
    return sqlite3.sqlite_version
