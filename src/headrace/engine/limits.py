"""Tag limits shared across processes: this process's side (the store's is `store.limits`).

`in_force()` says which tags the store limits, for a flow run about to
start: read at most once a second (at once after this process set or
removed one), cheaply, and without creating anything when no limit was
ever set; the number of slots is read afresh at every grant. A run's
`Throttle` asks this process's `LimitClient` for the slots of a unit once
the unit could start otherwise, and tells it when the unit is done with
them.

The client does every database call on a thread of its own, so no core
waits on the database. Each pass of the thread is one transaction: the
releases and new requests that came since the last pass, and the grants
that now fit. Between passes, while some request waits, it asks the
store every POLL_SECONDS whether one of them would fit (a read without the
write lock), and every SWEEP_SECONDS it deletes the claims of processes
that died, so their slots go on within a second. A grant calls the
request's `on_grant` on the client's thread.

A client belongs to one process: a forked child makes its own, and one
that exits deletes its claims.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from headrace.store.limits import Asked

POLL_SECONDS = 0.01
SWEEP_SECONDS = 0.25
CHECK_SECONDS = 5.0  # how often ours are compared with the store's when nothing failed
FRESH_SECONDS = 1.0  # how long `in_force` trusts what it last read
RETRY_SECONDS = 60.0  # how long it waits to read again a store it could not read

log = logging.getLogger("headrace.limits")


class Request:
    """A unit's request for the slots of its limited tags, granted all at once."""

    __slots__ = ("asked", "on_grant", "ticket", "granted", "started", "done")

    def __init__(self, asked: Asked, on_grant: Callable[[], None]):
        self.asked = asked
        self.on_grant = on_grant
        self.ticket: int | None = None  # once entered in the store
        self.granted = False
        self.started = False  # its unit took the slots (set by the throttle)
        self.done = False  # released (or withdrawn): its rows go


class LimitClient:
    """This process's requests for tag slots in one store (`store.limits.LimitStore`)."""

    def __init__(self, store):
        self.store = store
        self._cond = threading.Condition()
        self._asked: list[Request] = []  # not entered yet
        self._done: list[Request] = []  # to delete
        self._waiting: dict[int, Request] = {}  # entered, not granted: the thread's own
        self._index = None  # the same tickets by tag (store.limits.Waiting), made on first use
        self._entered: set[int] = set()  # tickets in the store: the sweeps go on while any is
        self._thread: threading.Thread | None = None
        self._closed = False
        self._busy = False  # the thread is in a pass with what it took

    def request(self, asked: Asked, on_grant: Callable[[], None]) -> Request:
        request = Request(asked, on_grant)
        with self._cond:
            self._asked.append(request)
            self._start()
            self._cond.notify()
        return request

    def release(self, request: Request) -> None:
        """The unit is done with its slots (or no longer waits for them)."""
        with self._cond:
            if request.done:
                return
            request.done = True
            self._done.append(request)
            self._cond.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was asked and released so far is in the store; False on timeout
        (the store did not answer)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._asked or self._done or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Delete this process's claims and stop the thread (at exit)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.store.forget_me()
        except Exception as exc:  # the database went first: a sweep frees them
            log.debug("could not delete this process's tag-limit claims: %s", exc)
        self.store.close()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="headrace-limits",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        from headrace.store.limits import Waiting

        self._index = Waiting()
        next_sweep, next_check = 0.0, 0.0
        failing = unsure = False  # the store failed; since then, ours not compared with it
        while True:
            with self._cond:
                if not (self._asked or self._done or self._closed):
                    self._cond.wait(POLL_SECONDS if self._waiting else None)
                if self._closed:
                    return
                asked, self._asked = self._asked, []
                done, self._done = self._done, []
                self._busy = True
            try:
                granted = self._pass(asked, done)
                now = time.monotonic()
                if self._entered and (unsure or now >= next_sweep):
                    next_sweep = now + SWEEP_SECONDS
                    self.store.sweep()
                    if unsure or now >= next_check:
                        next_check = now + CHECK_SECONDS
                        granted += self._reconcile()
                        unsure = False
            except Exception as exc:
                # The database went away for a moment: nothing changed here, so the next
                # pass asks and releases the same again.
                if not failing:
                    log.warning("Tag limits: the store does not answer (%s); waiters wait "
                                "and releases are kept until it does.", exc)  # fmt: skip
                failing = unsure = True
                with self._cond:
                    self._asked[:0] = asked
                    self._done[:0] = done
                    self._busy = False
                time.sleep(SWEEP_SECONDS)
                continue
            if failing:
                log.warning("Tag limits: the store answers again.")
                failing = False
            with self._cond:
                self._busy = False
                self._cond.notify_all()
            for request in granted:
                try:
                    request.on_grant()
                except Exception:
                    log.exception("Tag limits: a grant could not be handed on")

    def _pass(self, asked: list[Request], done: list[Request]) -> list[Request]:
        """One transaction when anything changed here or a waiter may fit; the grants.
        Nothing of the client changes unless the store answered."""
        waiting, index = self._waiting, self._index
        gone = [r.ticket for r in done if r.ticket is not None]
        for ticket in gone:
            index.remove(ticket)
        asked = [r for r in asked if not r.done]  # withdrawn before it was entered
        if not (asked or gone) and not (index and self.store.grantable(index)):
            return []
        tickets, granted = self.store.exchange([r.asked for r in asked], gone, index)
        for request in done:
            if request.ticket is not None:
                self._entered.discard(request.ticket)
                waiting.pop(request.ticket, None)
        for request, ticket in zip(asked, tickets):
            request.ticket = ticket
            waiting[ticket] = request
        self._entered.update(tickets)
        return self._granted(granted)

    def _granted(self, tickets: list[int]) -> list[Request]:
        out = []
        for ticket in tickets:
            request = self._waiting.pop(ticket, None)
            if request is None:  # entered by a pass whose answer was lost: a stray
                continue
            request.granted = True
            if not request.done:  # else its release, queued already, deletes it
                out.append(request)
        return out

    def _reconcile(self) -> list[Request]:
        """Set ours right where an answer of the store was lost (a connection dropped
        after a commit): rows we never learnt of go, a grant we never heard of is taken,
        and a waiting request whose rows a process took for a dead one's (a PostgreSQL
        restart) asks again, at the back. After a failure, else every CHECK_SECONDS."""
        from headrace.store.limits import Waiting

        ours = self.store.ours()  # ticket -> still waiting
        strays = [t for t in ours if t not in self._entered]
        if strays:  # deleted, granting nothing: no waiting ticket of ours is passed
            self.store.exchange([], strays, Waiting())
        lost = [t for t in self._waiting if t not in ours]
        if lost:
            log.warning("Tag limits: %d waiting request(s) lost their place; asking again.",
                        len(lost))  # fmt: skip
            with self._cond:
                for ticket in lost:
                    request = self._waiting.pop(ticket)
                    self._index.remove(ticket)
                    request.ticket = None
                    self._entered.discard(ticket)
                    self._asked.append(request)
        unheard = [t for t in self._waiting if not ours.get(t, True)]
        for ticket in unheard:  # (`exchange` takes the grants it makes off the index)
            self._index.remove(ticket)
        return self._granted(unheard)


# -- this process's client, and the limits in force ------------------------------------------

_lock = threading.Lock()
_client: LimitClient | None = None
_client_for: tuple | None = None
_parents: list[LimitClient] = []  # a forked child's copies of its parent's: never closed
_read: dict[str, tuple[float, int, dict[str, int]]] = {}  # url -> (when, changes, limits)


def in_force() -> tuple[LimitClient, dict[str, int]] | None:
    """This process's client and the store's limits ({tag: slots}), or None when the
    store the settings name limits no tag (or cannot be read: a warning says so)."""
    from headrace.store import database_url

    url = database_url()
    # Limits set or removed by this process (none if it never loaded the store's module).
    changes = getattr(sys.modules.get("headrace.store.limits"), "changes", 0)
    now = time.monotonic()
    seen = _read.get(url)
    if seen is None or now - seen[0] > FRESH_SECONDS or seen[1] != changes:
        try:
            limits, read_at = _read_limits(url), now
        except Exception as exc:  # warned once; not asked again at every run (a timeout)
            if seen is None:
                log.warning("Tag limits are not honoured: cannot read them from the store (%s).",
                            exc)  # fmt: skip
            limits, read_at = {}, now + RETRY_SECONDS - FRESH_SECONDS
        seen = _read[url] = (read_at, changes, limits)
    return (client(url), seen[2]) if seen[2] else None


def _read_limits(url: str) -> dict[str, int]:
    """The store's limits. A SQLite file is read as it is: none when it (or its table)
    is missing, so a run never creates or upgrades a history to look."""
    if url.startswith("sqlite:///"):
        import sqlite3

        from headrace.store.sqlite import file_uri

        path = url[len("sqlite:///") :]
        if not os.path.exists(path):
            return {}
        conn = sqlite3.connect(f"{file_uri(path)}?mode=rw", uri=True, timeout=30.0)
        try:
            return dict(conn.execute("SELECT tag, slots FROM tag_limits").fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}
            raise
        finally:
            conn.close()
    return client(url).store.limits()


def client(url: str) -> LimitClient:
    """This process's client on the store at `url`."""
    global _client, _client_for
    key = (url, os.getpid())
    with _lock:
        if _client is None or _client_for != key:
            from headrace.store import open_limits

            if _client is not None and _client_for[1] == key[1]:
                _client.close()
            elif _client is not None:  # its connection is the parent's: leave it be
                _parents.append(_client)
            _client, _client_for = LimitClient(open_limits(url)), key
        return _client


def _close_at_exit() -> None:
    if _client is not None and _client_for[1] == os.getpid():
        _client.close()


atexit.register(_close_at_exit)
