"""SQLite: the embedded default store, one file at $HEADRACE_HOME/headrace.db.

WAL mode lets readers (the CLI, the UI) read while a run writes; a busy
timeout plus the writer's retries turn "database is locked" into a short
wait. A file that is not a SQLite database is refused with its path. The
schema is checked before WAL is switched on, because switching rewrites the
file's header: a refused file is left byte for byte as it was.

The reader never creates or changes a file. A read-only connection to a WAL
file creates its -wal and -shm files when they are missing (no writer has
it open), so then the reader opens the file as immutable, and reads again
through an ordinary read-only connection if a writer appeared meanwhile
(the -wal file exists, or the file changed under it).

Beside the file lies headrace.db-reserve, RESERVE_BYTES of zeros. When the
disk fills up, history turns off, and the writer deletes the reserve to make
room for the ends of the runs still going: a run that finished is recorded
as finished (its history marked incomplete), not found Crashed later. The
next process with room writes the reserve again.

The write side takes paths as strings (a run needs no pathlib); the reader
and the cache's, schedules' and limits' sides are opened by less frequent
callers and use `Path`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import string
import time

from headrace.store.reader import SQLReader
from headrace.store.sql import Dialect, SQLRecorder, StoreError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path

# name, placeholder, real, serial_key, errors
DIALECT = Dialect(
    "sqlite", "?", "REAL", "INTEGER PRIMARY KEY AUTOINCREMENT", (sqlite3.Error,),
    row_errors=(sqlite3.DataError, sqlite3.IntegrityError, sqlite3.InterfaceError),
    clustered=" WITHOUT ROWID",
)  # fmt: skip
RESERVE_BYTES = 256 * 1024  # room for the last writes on a full disk
IMMUTABLE_TRIES = 3  # reads as immutable before an ordinary read-only connection is used


def _refused(path, conn: sqlite3.Connection, exc: sqlite3.DatabaseError) -> Exception:
    conn.close()
    if "not a database" in str(exc) or "malformed" in str(exc):
        return StoreError(
            f"{path} is not a SQLite database (or is damaged): {exc}. Nothing was "
            "changed. Move it away, or point HEADRACE_HOME at another directory."
        )
    return exc


def _private_file(path: str) -> None:
    """Make the directories and the database file that are missing readable by their owner
    only (the history holds parameters and log lines). SQLite gives its -wal and -shm
    files the database file's mode."""
    missing = []
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


_URI_SAFE = frozenset(string.ascii_letters + string.digits + "/-._~")


def file_uri(path: str | os.PathLike) -> str:
    """The file: URI SQLite opens `path` by (what `Path.as_uri` gives, without pathlib)."""
    absolute = os.path.abspath(os.fspath(path))
    return "file://" + "".join(c if c in _URI_SAFE else _escaped(c) for c in absolute)


def _escaped(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in os.fsencode(char))


def _reserve_path(path: str) -> str:
    return path + "-reserve"


def _reserve(path: str) -> str:
    """Write the reserve file beside the database unless it is there; its path."""
    reserve = _reserve_path(path)
    try:
        fd = os.open(reserve, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:  # there already (or being written by another process), or no room
        return reserve
    try:
        whole = os.write(fd, bytes(RESERVE_BYTES)) == RESERVE_BYTES
    except OSError:
        whole = False
    os.close(fd)
    if not whole:  # no room for it: leave none rather than a part
        os.unlink(reserve)
    return reserve


def _journal_to_wal(conn: sqlite3.Connection) -> str:
    """Switch to WAL. Several processes opening a new file at once can each be refused
    the switch at once (SQLite skips the busy handler there, to avoid a deadlock): retry
    for up to 10 s."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _connector(path: str):
    def connect(wal: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("SELECT count(*) FROM sqlite_master")  # "not a database" shows here
            if wal:
                _use_wal(conn, path)
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            raise _refused(path, conn, exc) from None
        return conn

    return connect


def _use_wal(conn: sqlite3.Connection, path: str) -> None:
    if _journal_to_wal(conn).lower() != "wal" and os.path.exists(path):
        conn.execute("PRAGMA journal_mode = DELETE")


def _checked(path: str, store: SQLRecorder, connect) -> sqlite3.Connection:
    """A connection in WAL mode to the file, its schema made or upgraded. A foreign or
    newer file is refused before WAL touches it; a new (empty) file is neither, and its
    schema is made in WAL mode, whose commit needs no fsync (11 ms here)."""
    new = os.stat(path).st_size == 0
    conn = connect(wal=new)
    try:
        store._check_schema(conn)
        if not new:
            _use_wal(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def sqlite_recorder(path: str | os.PathLike, clock=None) -> SQLRecorder:
    """The write side on the file at `path`, not yet opened: nothing is checked or made.
    The writer process (`store.writer_process`) writes through one of these."""
    path = os.fspath(path)
    reserve = _reserve_path(path)

    def make_room() -> None:
        with contextlib.suppress(OSError):  # gone already, or a read-only filesystem
            os.unlink(reserve)

    return SQLRecorder(DIALECT, _connector(path), path, make_room, clock)


def open_sqlite(path: str | os.PathLike, clock=None) -> SQLRecorder:
    """The write side on the file at `path` (created, with its directory, when missing)."""
    path = os.fspath(path)
    _private_file(path)
    store = sqlite_recorder(path, clock)
    conn = _checked(path, store, store._connect)
    _reserve(path)
    return store.open(checked=conn)


def _schema_ready(path: str | os.PathLike):
    """A connector to the file at `path`, once its schema is made or upgraded."""
    path = os.fspath(path)
    _private_file(path)
    connect = _connector(path)
    _checked(path, SQLRecorder(DIALECT, connect, path), connect).close()
    return connect


def open_sqlite_cache(path: str | Path, clock=None):
    """The cache's entries in the file at `path` (its schema made or upgraded first); its
    claims are files in `<path>-locks/`."""
    from pathlib import Path

    from headrace.store.cache import CacheStore, file_claims

    path = Path(path)
    connect = _schema_ready(path)
    claims = file_claims(path.with_name(f"{path.name}-locks"))
    return CacheStore(DIALECT, connect, str(path), claims, clock)


def open_sqlite_ticks(path: str | Path):
    """Schedules and their ticks in the file at `path` (its schema made or upgraded first)."""
    from pathlib import Path

    from headrace.store.schedules import TickStore

    path = Path(path)
    return TickStore(DIALECT, _schema_ready(path), str(path))


def open_sqlite_limits(path: str | Path):
    """Tag limits and their claims in the file at `path` (its schema made or upgraded
    first); each process's liveness is a locked file in `<path>-limits/`."""
    from pathlib import Path

    from headrace.store.limits import FileLiveness, LimitStore

    path = Path(path)
    liveness = FileLiveness(path.with_name(f"{path.name}-limits"))
    return LimitStore(DIALECT, _schema_ready(path), str(path), liveness)


class SQLiteReader(SQLReader):
    """Reads with a new connection per query, so no connection of ours outlives a query."""

    def __init__(self, path: Path):
        self.path = path
        self._uri = file_uri(path.resolve()) + "?mode=ro"
        super().__init__(DIALECT, self._connect_ro, str(path))

    def _connect_ro(self, immutable: bool = False) -> sqlite3.Connection:
        uri = self._uri + ("&immutable=1" if immutable else "")
        conn = sqlite3.connect(uri, uri=True, timeout=30.0, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master")
        except sqlite3.DatabaseError as exc:
            raise _refused(self.path, conn, exc) from None
        return conn

    def _quiet(self) -> tuple | None:
        """The file's stamp when no writer has it open in WAL mode; None otherwise."""
        if os.path.exists(f"{self.path}-wal"):
            return None
        with open(self.path, "rb") as f:
            header = f.read(20)
        if len(header) < 20 or header[18] != 2:  # not WAL: a read-only connection adds nothing
            return None
        stat = os.stat(self.path)
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def _with_connection(self, work):
        for _ in range(IMMUTABLE_TRIES):
            before = self._quiet()
            if before is None:
                break
            conn = self._connect_ro(immutable=True)
            try:
                result = work(conn)
            finally:
                conn.close()
            if self._quiet() == before:
                return result
        conn = self._connect_ro()
        try:
            return work(conn)
        finally:
            conn.close()


def open_sqlite_reader(path: str | Path, check: bool = True) -> SQLiteReader:
    """The read side on the file at `path`; StoreMissing when there is none yet.

    `check=False` leaves the schema unchecked, to ask its `schema_version()`.
    """
    from pathlib import Path

    from headrace.store.base import StoreMissing

    path = Path(path).expanduser()
    if not path.exists():
        ancestor = path.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise StoreError(
                f"Cannot open the run history at {path}: {ancestor} is not a directory. Set "
                "HEADRACE_HOME to a directory, or HEADRACE_DATABASE_URL to a database."
            )
        raise StoreMissing(f"No run history has been recorded in {path} yet.")
    reader = SQLiteReader(path)
    return reader.open() if check else reader


def sqlite_version() -> str:
    return sqlite3.sqlite_version
