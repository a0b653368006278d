"""PostgreSQL: the shared store for a team, at HEADRACE_DATABASE_URL=postgresql://user@host/db.

The same schema, writer and reader as SQLite (`store.sql`, `store.reader`),
on psycopg 3 (imported only when a postgresql:// URL is used). Every
connection is a plain transactional one (autocommit off); the writer commits
one batch per transaction; a reader's transactions are READ ONLY and end
after each query.

Contracts:
- A server that cannot be reached, a missing database or a refused login
  is a StoreError naming the host, port, database and user (never the
  password) and what to check.
- A database whose current schema holds tables that are not headrace's, or
  headrace tables from a newer headrace, is refused and left unchanged.
- Processes opening an empty database at the same time do not race: the
  schema is checked and created under a transaction-scoped advisory lock.
- NUL characters, which PostgreSQL text cannot hold, are written as the
  visible escape `\\x00` (the writer's escape for any text a driver cannot
  encode), so one odd log line cannot turn history off.
"""

from __future__ import annotations

import os
import re

from headrace.store.base import StoreUnavailable
from headrace.store.reader import SQLReader
from headrace.store.sql import Dialect, SQLRecorder, StoreError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

SCHEMA_LOCK = 0x68656164_72616365  # "headrace" as an advisory-lock key shared by every process
CONNECT_TIMEOUT = 10  # seconds, unless the URL sets connect_timeout


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "HEADRACE_DATABASE_URL names a PostgreSQL database, but the driver is not "
            'installed: pip install "psycopg[binary]>=3.1".'
        ) from None
    return psycopg


def _connector(url: str, read_only: bool = False):
    """(connect, where, dialect) for a postgresql:// URL; StoreError for a bad URL."""
    psycopg = _psycopg()
    from psycopg.conninfo import conninfo_to_dict

    url = re.sub(r"^postgresql\+psycopg://", "postgresql://", url)
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreError(
            f"HEADRACE_DATABASE_URL is not a valid PostgreSQL URL ({_one_line(exc)}); use "
            "postgresql://user:password@host:port/database."
        ) from None
    options: dict[str, Any] = {"autocommit": False, "cursor_factory": _nul_free_cursor(psycopg)}
    if "connect_timeout" not in params:
        options["connect_timeout"] = CONNECT_TIMEOUT
    if "application_name" not in params:
        options["application_name"] = "headrace"
    where = _describe(params)

    def connect():
        try:
            conn = psycopg.connect(url, **options)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(_unreachable(where, params, exc)) from None
        if read_only:
            conn.read_only = True  # every transaction of a reader is READ ONLY
        return conn

    dialect = Dialect(
        "postgresql", "%s", "DOUBLE PRECISION", "BIGSERIAL PRIMARY KEY", (psycopg.Error,),
        row_errors=(psycopg.DataError, psycopg.IntegrityError),
        disconnects=(psycopg.OperationalError, psycopg.InterfaceError),
    )  # fmt: skip
    return connect, where, dialect


def open_postgres(url: str, clock=None) -> SQLRecorder:
    """Open the write side at a postgresql:// (or postgres://, postgresql+psycopg://) URL.

    Creates the schema in an empty database; raises StoreError when the
    server cannot be reached or the database cannot be used as it is.
    """
    connect, where, dialect = _connector(url)
    return PostgresRecorder(dialect, connect, where, clock=clock).open()


def _schema_ready(url: str) -> tuple:
    """(connect, where, dialect) for `url`, once its schema is made or upgraded."""
    connect, where, dialect = _connector(url)
    conn = connect()
    try:
        PostgresRecorder(dialect, connect, where)._check_schema(conn)
    finally:
        conn.close()
    return connect, where, dialect


def open_postgres_cache(url: str, clock=None):
    """The cache's entries in the database at `url` (its schema made or upgraded first);
    its claims are advisory locks."""
    from headrace.store.cache import CacheStore, advisory_claims

    connect, where, dialect = _schema_ready(url)
    return CacheStore(dialect, connect, where, advisory_claims(connect), clock)


def open_postgres_ticks(url: str):
    """Schedules and their ticks in the database at `url` (its schema made or upgraded)."""
    from headrace.store.schedules import TickStore

    connect, where, dialect = _schema_ready(url)
    return TickStore(dialect, connect, where)


def open_postgres_limits(url: str):
    """Tag limits and their claims in the database at `url` (its schema made or upgraded
    first); each process's liveness is a session advisory lock."""
    from headrace.store.limits import AdvisoryLiveness, LimitStore

    connect, where, dialect = _schema_ready(url)
    liveness = AdvisoryLiveness(connect)
    store = LimitStore(dialect, liveness.connect, where, liveness)
    liveness.rows = store._execute
    return store


def open_postgres_reader(url: str, check: bool = True) -> SQLReader:
    """The read side: its transactions are READ ONLY, so it cannot write if it tried.

    `check=False` leaves the schema unchecked, to ask its `schema_version()`.
    """
    connect, where, dialect = _connector(url, read_only=True)
    reader = SQLReader(dialect, connect, where)
    return reader.open() if check else reader


class PostgresRecorder(SQLRecorder):
    """SQLRecorder on PostgreSQL: the schema check is serialised across processes."""

    def _check_schema(self, conn) -> None:
        import psycopg

        try:
            # Two processes creating the tables at once would collide in the catalog. The
            # lock ends with this transaction: the upgrade's commit, or the caller's commit
            # or close (open() commits before its writer takes the connection).
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            super()._check_schema(conn)
        except psycopg.errors.InsufficientPrivilege as exc:
            conn.rollback()
            user = conn.info.user
            raise StoreError(
                f"The PostgreSQL user {user!r} lacks a privilege headrace needs in "
                f"{self.where} ({_one_line(exc)}). Nothing was changed. To let it create the "
                f"tables: GRANT CREATE ON SCHEMA public TO {user}; to let it use tables made "
                "by another user: GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "
                f"public TO {user} and GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {user}."
            ) from None


def _nul_free_cursor(psycopg):
    """A cursor class that writes NUL characters in string parameters as `\\x00`.

    Checking a whole batch with one join costs well under a microsecond a row;
    a custom str dumper would cost several (a Python call per value).
    """

    def clean(row):
        if isinstance(row, tuple | list):
            return tuple(v.replace("\x00", "\\x00") if v.__class__ is str else v for v in row)
        return row

    class NulFreeCursor(psycopg.Cursor):
        def execute(self, query, params=None, **kwargs):
            return super().execute(query, clean(params), **kwargs)

        def executemany(self, query, params_seq, **kwargs):
            rows = params_seq if isinstance(params_seq, list) else list(params_seq)
            if "\x00" in "".join([v for row in rows for v in row if v.__class__ is str]):
                rows = [clean(row) for row in rows]
            return super().executemany(query, rows, **kwargs)

    return NulFreeCursor


def _target(params: dict[str, Any]) -> tuple[str, str, str, str | None]:
    """Host, port, database and user libpq will use (the URL, else PG* variables, else defaults)."""
    env = os.environ
    user = params.get("user") or env.get("PGUSER")
    host = params.get("host") or env.get("PGHOST") or "the local socket"
    port = params.get("port") or env.get("PGPORT") or "5432"
    db = params.get("dbname") or env.get("PGDATABASE") or user or "(default)"
    return host, port, db, user


def _describe(params: dict[str, Any]) -> str:
    """The URL without its password, for messages."""
    host, port, db, user = _target(params)
    return f"postgresql://{user + '@' if user else ''}{host}:{port}/{db}"


def _unreachable(where: str, params: dict[str, Any], exc: Exception) -> str:
    host, port, db, _ = _target(params)
    return (
        f"Cannot connect to the PostgreSQL history database {where} (host {host}, port "
        f"{port}, database {db}): {_one_line(exc)}. Check that the server is running and "
        f"accepts connections on {host}:{port}, that the database {db!r} exists "
        "(createdb), and the user and password in HEADRACE_DATABASE_URL; or unset it to "
        "record to the local SQLite file."
    )


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


__all__ = ["open_postgres", "open_postgres_reader", "PostgresRecorder"]
