"""Throttle: at most n running task runs per tag, shared by both kinds of runner.

Two kinds of cap, taken in this order:
- the run's own (`throttle={tag: n}`), counted here, for a flow run and its
  subflows (each on a core of its own, sharing one count);
- the store's tag limits (`headrace limits set web 3`), shared by every
  process on the store (`engine.limits`), read when the run starts.

`take(tags, entry, unit)` takes a slot of every capped tag of the run, or
parks `entry` behind the first full tag and returns False. With those
slots taken, a unit with limited tags asks the store for all their slots at
once and returns False: when they are granted, its core is handed `entry`
again (`Core.granted`) and `take` returns True. `release(tags, unit)` frees
the unit's slots of both kinds and returns the parked entries that may now
try again, at most one per freed tag. `close()`, when the run ends, withdraws
what it still waits for and gives back the slots of units that never started.
Thread-safe.

A run keeps at most ASK_AHEAD requests waiting in the store; the units past
them wait here, in order, and ask as the run's earlier requests are granted.
So a million-item map holds ASK_AHEAD rows in the store, not a million, and
a run that asks after it waits for at most ASK_AHEAD of the map's tasks.

An entry is (core, kind, what): whatever its core needs to try again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

ASK_AHEAD = 64  # a run's requests waiting in the store at once


class _Queued:
    """A unit past ASK_AHEAD: waiting in the run for its turn to ask."""

    granted = started = False


QUEUED = _Queued()


class Throttle:
    def __init__(self, caps: dict[str, int] | None, shared=None):
        caps = dict(caps or {})
        for tag, cap in caps.items():
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
                raise ValueError(f"throttle[{tag!r}] must be an int >= 1, got {cap!r}")
        self.caps = caps
        self.in_use = dict.fromkeys(caps, 0)
        self.parked: dict[str, deque] = {tag: deque() for tag in caps}
        self.lock = threading.Condition()
        # The store's limits: (this process's LimitClient, {tag: slots}), or None.
        self.client, self.limited = shared if shared else (None, {})
        self.requests: dict[Any, Any] = {}  # unit -> its request for the store's slots
        self.asking = 0  # requests waiting in the store
        self.queued: deque = deque()  # (tags, entry, unit) waiting for their turn to ask

    def extended(self, caps: dict[str, int] | None) -> Throttle:
        """This throttle, also capping the tags of `caps` it does not cap yet (a
        subflow's own limits join its parent's, which keep theirs)."""
        for tag, cap in Throttle(caps).caps.items():
            with self.lock:
                if tag not in self.caps:
                    self.caps[tag] = cap
                    self.in_use[tag] = 0
                    self.parked[tag] = deque()
        return self

    def __bool__(self) -> bool:
        return bool(self.caps) or bool(self.limited)

    def capped(self, tags: Iterable[str]) -> list[str]:
        return [t for t in tags if t in self.caps]

    def limits(self, tags: Iterable[str]) -> bool:
        """Whether any of `tags` is capped here or limited in the store."""
        return any(t in self.caps or t in self.limited for t in tags)

    def take(self, tags: Iterable[str], entry: Any, unit: Any) -> bool:
        with self.lock:
            request = self.requests.get(unit)
            if request is QUEUED:
                return False
            if request is not None:  # asked for already: the run's slots are taken
                request.started = request.granted
                return request.granted
            capped = self.capped(tags)
            for tag in capped:
                if self.in_use[tag] >= self.caps[tag]:
                    self.parked[tag].append(entry)
                    return False
            for tag in capped:
                self.in_use[tag] += 1
            limited = sorted({t for t in tags if t in self.limited})
            if not limited:
                return True
            entry[0].awaiting += 1
            if self.asking < ASK_AHEAD:
                self._ask(limited, entry, unit)
            else:
                self.requests[unit] = QUEUED
                self.queued.append((limited, entry, unit))
            return False

    def _ask(self, limited: list[str], entry: tuple, unit: Any) -> None:
        """Under the lock: enter a unit's request in the store."""
        self.asking += 1
        self.requests[unit] = self.client.request(_asked(limited, entry, unit),
                                                  lambda: self._granted(entry))  # fmt: skip

    def _granted(self, entry: tuple) -> None:
        """On the limits thread: a request was granted. The next queued unit asks, and
        the granted one's core is handed its entry."""
        with self.lock:
            self.asking -= 1
            if self.queued:
                self._ask(*self.queued.popleft())
        core = entry[0]
        core.post((core.granted, entry))

    def release(self, tags: Iterable[str], unit: Any) -> list:
        woken = []
        with self.lock:
            for tag in self.capped(tags):
                self.in_use[tag] -= 1
                if self.parked[tag]:
                    woken.append(self.parked[tag].popleft())
            request = self.requests.pop(unit, None)
            self.lock.notify_all()
        if request is not None and request is not QUEUED:
            self.client.release(request)
        return woken

    def close(self) -> None:
        """The run ended: give back the store's slots it waits for or holds for a unit
        that never started, and wait (a few seconds at most) until the store has them.
        A unit still running (a thread that Ctrl-C cannot stop) keeps its slots until it
        ends, or its process does."""
        with self.lock:
            unused = [(u, r) for u, r in self.requests.items() if not r.started]
            for unit, _ in unused:
                del self.requests[unit]
            self.queued.clear()
        for _, request in unused:
            if request is not QUEUED:
                self.client.release(request)
        if self.client is not None:
            self.client.flush()


def _asked(tags: list[str], entry: tuple, unit: tuple):
    """The request as the store shows it: the unit's run, task run id and name."""
    from headrace.store.limits import Asked

    core, (node, index) = entry[0], unit
    return Asked(tags, core.flow_ctx.flow_run_id, node.unit_id(index), node.unit_name(index))
