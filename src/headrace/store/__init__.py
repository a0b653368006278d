"""Run history: where every flow run, task run, state and log line is recorded.

`get_store()` returns this process's store, opened on first use from the
settings: HEADRACE_DATABASE_URL (`postgresql://...`, or `sqlite:///path`),
else `$HEADRACE_HOME/headrace.db` (HEADRACE_HOME defaults to ~/.headrace).
HEADRACE_HISTORY=off turns recording off. HEADRACE_HISTORY_RETENTION ("30d";
units s, m, h, d; unset keeps everything) prunes finished runs that ended
longer ago than that whenever a store is opened. A store that cannot be written
(read-only directory, full disk) is reported once and runs go on; one that
is not headrace's, or is newer, raises StoreError when opened.

The engine only calls `put`-style methods that never wait; see `store.sql`.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
import time
from pathlib import Path

from headrace.store.sql import SQLStore, StoreError

log = logging.getLogger("headrace.store")


def home() -> Path:
    return Path(os.environ.get("HEADRACE_HOME") or Path.home() / ".headrace").expanduser()


def database_url() -> str:
    url = os.environ.get("HEADRACE_DATABASE_URL")
    return url or f"sqlite:///{home() / 'headrace.db'}"


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


def open_store(url: str | None = None) -> SQLStore:
    """Open (creating or upgrading) the store at `url`; StoreError when it cannot be used.

    With HEADRACE_HISTORY_RETENTION set, finished runs older than that are pruned here.
    """
    url = url or database_url()
    keep = retention()  # a bad setting is refused before anything is opened
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from headrace.store.postgres import open_postgres

        store = open_postgres(url)
    elif url.startswith("sqlite:///"):
        from headrace.store.sqlite import open_sqlite

        store = open_sqlite(url[len("sqlite:///") :])
    else:
        raise StoreError(
            f"HEADRACE_DATABASE_URL={url!r} is not understood: use postgresql://user@host/db "
            "or sqlite:////absolute/path.db"
        )
    if keep is not None:
        store.prune(time.time() - keep)
    return store


class NullStore:
    """History off: accepts writes and drops them."""

    recording = False
    where = "nowhere (history is off)"

    def put(self, kind, row) -> None:
        pass

    def started(self, run) -> None:
        pass

    def ended(self, *args) -> None:
        pass

    def flush(self, timeout=None) -> None:
        pass


NULL = NullStore()
_lock = threading.Lock()
_store: SQLStore | NullStore | None = None
_opened_for: tuple | None = None


def get_store() -> SQLStore | NullStore:
    """This process's store (see the module docstring)."""
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
                _store = open_store(key[0])
            except StoreError:
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


def _flush_at_exit() -> None:
    if _store is not None and _opened_for and _opened_for[1] == os.getpid():
        _store.flush(timeout=10)


atexit.register(_flush_at_exit)

__all__ = [
    "get_store",
    "open_store",
    "home",
    "database_url",
    "retention",
    "StoreError",
    "NullStore",
    "NULL",
]
