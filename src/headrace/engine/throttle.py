"""Throttle: at most n running task runs per tag, shared by both kinds of runner.

`take(tags, entry)` takes a slot of every capped tag, or parks `entry` behind
the first full tag and returns False. `release(tags)` frees the slots and
returns the parked entries that may now try again, at most one per freed
tag. A run with several capped tags holds a slot of each. Thread-safe, so a
flow run and its subflows, each on a core of its own, share one count.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any


class Throttle:
    def __init__(self, caps: dict[str, int] | None):
        caps = dict(caps or {})
        for tag, cap in caps.items():
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
                raise ValueError(f"throttle[{tag!r}] must be an int >= 1, got {cap!r}")
        self.caps = caps
        self.in_use = dict.fromkeys(caps, 0)
        self.parked: dict[str, deque] = {tag: deque() for tag in caps}
        self.lock = threading.Condition()

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
        return bool(self.caps)

    def capped(self, tags: Iterable[str]) -> list[str]:
        return [t for t in tags if t in self.caps]

    def take(self, tags: Iterable[str], entry: Any) -> bool:
        with self.lock:
            capped = self.capped(tags)
            for tag in capped:
                if self.in_use[tag] >= self.caps[tag]:
                    self.parked[tag].append(entry)
                    return False
            for tag in capped:
                self.in_use[tag] += 1
            return True

    def release(self, tags: Iterable[str]) -> list:
        woken = []
        with self.lock:
            for tag in self.capped(tags):
                self.in_use[tag] -= 1
                if self.parked[tag]:
                    woken.append(self.parked[tag].popleft())
            self.lock.notify_all()
        return woken
