"""SQLite tasks: run one parameterised statement, or a script, against a database file.

Both are class-based tasks: arguments given when the task is made are
defaults that each call can override (`SQLiteScript(db="x.db")` then
`insert(script=...)`), as in the tutorials.

    create_db = SQLiteScript(name="Create DB", db="xfiles.db",
                             script="CREATE TABLE IF NOT EXISTS XFILES (...)")
    insert = SQLiteQuery(name="Insert", db="xfiles.db",
                         query="INSERT INTO XFILES VALUES (?, ?, ?)")
    insert.map(data=rows)       # one parameterised statement per row (or a list of rows)

Values always travel as parameters, never formatted into SQL.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing

from headrace.tasks import Task

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


def _connect(db: str) -> sqlite3.Connection:
    if not db:
        raise ValueError("no database given: pass db= when making the task or calling it")
    # A busy timeout: parallel inserts wait for each other instead of failing.
    return sqlite3.connect(db, timeout=30.0)


class SQLiteQuery(Task):
    """Run one statement with parameters, commit, and return the rows it produced.

    `data` is one row of parameters (a tuple or a dict for named ones), or a
    list of rows to run the statement once per row (`executemany`).
    """

    def __init__(self, db: str | None = None, query: str | None = None, data: Any = None, **kw):
        self.db = db
        self.query = query
        self.data = data
        super().__init__(**kw)

    def run(self, db: str | None = None, query: str | None = None, data: Any = None) -> list:
        if not query:
            raise ValueError("no query given: pass query= when making the task or calling it")
        with closing(_connect(db)) as conn, conn:
            # A list of rows (possibly empty: then the statement runs zero times).
            many = isinstance(data, list) and (not data or isinstance(data[0], list | tuple | dict))
            if many:
                cursor = conn.executemany(query, data)
            else:
                cursor = conn.execute(query, data if data is not None else ())
            return cursor.fetchall()


class SQLiteScript(Task):
    """Run a script of statements (`executescript`) and commit. Takes no parameters."""

    def __init__(self, db: str | None = None, script: str | None = None, **kw):
        self.db = db
        self.script = script
        super().__init__(**kw)

    def run(self, db: str | None = None, script: str | None = None) -> None:
        if not script:
            raise ValueError("no script given: pass script= when making the task or calling it")
        with closing(_connect(db)) as conn, conn:
            conn.executescript(script)
