"""Run history: where every flow run, task run, state and log line is recorded.

Two sides (`store.base`): `default_recorder()` (also `get_store()`) returns
this process's `Recorder`, opened on first use; `open_reader()` opens a
`Reader`, which changes nothing in the database. Both follow the settings: HEADRACE_DATABASE_URL (`postgresql://...`, or `sqlite:///path`),
else `$HEADRACE_HOME/headrace.db` (HEADRACE_HOME defaults to ~/.headrace).
HEADRACE_HISTORY=off turns recording off. HEADRACE_HISTORY_RETENTION ("30d";
units s, m, h, d; unset keeps everything) prunes finished runs that ended
longer ago than that, and their persisted results, whenever a recorder is
opened. HEADRACE_HISTORY_WRITER (auto, thread, process) says who writes a
SQLite history: the recorder's thread, or a writer process for a busy run
(`store.writer_process`). A store that cannot be
written (read-only directory, full disk) is reported once and runs go on;
one that is not headrace's, or is newer, raises StoreError when opened.

The engine only calls Recorder methods, which never wait; see `store.sql`.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
import time

from headrace.store.base import (
    NullRecorder,
    Reader,
    Recorder,
    StoreError,
    StoreMissing,
    StoreUnavailable,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger("headrace.store")


def _home() -> str:
    return os.path.expanduser(os.environ.get("HEADRACE_HOME") or os.path.join("~", ".headrace"))


def home() -> Path:
    from pathlib import Path

    return Path(_home())


def database_url() -> str:
    url = os.environ.get("HEADRACE_DATABASE_URL")
    return url or f"sqlite:///{os.path.join(_home(), 'headrace.db')}"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def retention() -> float | None:
    """Seconds of history to keep, from HEADRACE_HISTORY_RETENTION; None keeps everything."""
    text = os.environ.get("HEADRACE_HISTORY_RETENTION", "").strip().lower()
    if not text:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text)
    if match is None:
        raise StoreError(
            f"HEADRACE_HISTORY_RETENTION={text!r} is not understood: give a number and a "
            "unit, s, m, h or d (e.g. 30d), or unset it to keep every run."
        )
    return float(match[1]) * _UNITS[match[2]]


_POSTGRES = ("postgresql://", "postgres://", "postgresql+psycopg://")
_SQLITE = "sqlite:///"


def _not_understood(url: str) -> StoreError:
    return StoreError(
        f"HEADRACE_DATABASE_URL={url!r} is not understood: use postgresql://user@host/db "
        "or sqlite:////absolute/path.db"
    )


def open_recorder(url: str | None = None, clock=None):
    """Open the write side at `url` (creating or upgrading the schema, marking the runs of
    dead processes Crashed); StoreError when it cannot be used. The result also looks
    after the database: `prune(older_than)`, `reset()`. `clock` (monotonic() and
    sleep(), the `time` module by default) times the writer's waits for the database.

    With HEADRACE_HISTORY_RETENTION set, finished runs older than that are pruned here.
    """
    url = url or database_url()
    keep = retention()  # a bad setting is refused before anything is opened
    if url.startswith(_POSTGRES):
        from headrace.store.postgres import open_postgres

        store = open_postgres(url, clock)
    elif url.startswith(_SQLITE):
        from headrace.store.sqlite import open_sqlite

        store = open_sqlite(url[len(_SQLITE) :], clock)
    else:
        raise _not_understood(url)
    if keep is not None and store.prune(time.time() - keep):
        from headrace.results.persist import remove_results_of

        remove_results_of(store.last_pruned)  # their persisted results go with them
    return store


def open_reader(url: str | None = None, check: bool = True) -> Reader:
    """Open the read side at `url`. It changes nothing: StoreMissing when nothing was
    recorded there yet, StoreError when the schema is older (run `headrace db upgrade`),
    newer, or not headrace's. `check=False` skips the schema check, for `schema_version`."""
    url = url or database_url()
    if url.startswith(_POSTGRES):
        from headrace.store.postgres import open_postgres_reader

        return open_postgres_reader(url, check)
    if url.startswith(_SQLITE):
        from headrace.store.sqlite import open_sqlite_reader

        return open_sqlite_reader(url[len(_SQLITE) :], check)
    raise _not_understood(url)


def open_cache(url: str | None = None, clock=None):
    """The cache's entries at `url` (`store.cache.CacheStore`), the schema made or upgraded
    first. `clock` (wall-clock seconds, `time.time` by default) dates entries and expires
    them."""
    return _open_side("cache", url, clock)


def open_ticks(url: str | None = None):
    """Served schedules and the ticks servers took at `url` (`store.schedules.TickStore`),
    the schema made or upgraded first."""
    return _open_side("ticks", url)


def open_limits(url: str | None = None):
    """Tag limits shared by every process at `url`, and the claims on their slots
    (`store.limits.LimitStore`), the schema made or upgraded first."""
    return _open_side("limits", url)


def _open_side(side: str, url: str | None, *args):
    """`open_postgres_<side>` or `open_sqlite_<side>` on `url` (the settings' by default)."""
    url = url or database_url()
    if url.startswith(_POSTGRES):
        from headrace.store import postgres

        return getattr(postgres, f"open_postgres_{side}")(url, *args)
    if url.startswith(_SQLITE):
        from headrace.store import sqlite

        return getattr(sqlite, f"open_sqlite_{side}")(url[len(_SQLITE) :], *args)
    raise _not_understood(url)


def schema_version(url: str | None = None) -> int | None:
    """The schema version of the database at `url`, read without changing anything;
    None when nothing was recorded there yet. StoreError for a database not headrace's."""
    try:
        reader = open_reader(url, check=False)
    except StoreMissing:
        return None
    try:
        return reader.schema_version()
    finally:
        reader.close()


NULL = NullRecorder()
_lock = threading.Lock()
_store: Recorder | None = None
_opened_for: tuple | None = None


def default_recorder() -> Recorder:
    """This process's Recorder (see the module docstring); NULL when history is off."""
    global _store, _opened_for
    if os.environ.get("HEADRACE_HISTORY", "on").lower() in ("off", "0", "false", "no"):
        return NULL
    key = (database_url(), os.getpid())
    if _store is not None and _opened_for == key:
        return _store
    with _lock:
        if _store is None or _opened_for != key:
            if _store is not None and _opened_for[1] == key[1]:
                _store.flush()
            try:
                _store = open_recorder(key[0])
            except StoreUnavailable as exc:  # a server down: warn once, keep running
                log.warning(
                    "Run history is not being recorded: %s Flows still run; runs of this "
                    "process are not recorded until it restarts with the database reachable.",
                    exc,
                )
                _store = NULL
            except StoreError:  # a database refused as it is: say so before anything runs
                raise
            except Exception as exc:  # unwritable home, full disk: warn once, keep running
                log.warning(
                    "Run history is not being recorded: cannot open %s (%s). Flows still run; "
                    "set HEADRACE_HOME to a writable directory to record them.",
                    key[0],
                    exc,
                )
                _store = NULL
            _opened_for = key
    return _store


get_store = default_recorder  # the name the engine has always called


def _flush_at_exit() -> None:
    if _store is not None and _opened_for and _opened_for[1] == os.getpid():
        _store.flush(timeout=10)


atexit.register(_flush_at_exit)

__all__ = [
    "default_recorder",
    "get_store",
    "open_recorder",
    "open_reader",
    "open_cache",
    "open_ticks",
    "open_limits",
    "schema_version",
    "home",
    "database_url",
    "retention",
    "Recorder",
    "Reader",
    "StoreError",
    "StoreMissing",
    "StoreUnavailable",
    "NULL",
]
