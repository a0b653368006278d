"""Throttle: at most n running task runs per tag, shared by both kinds of runner.

`take(tags, entry)` takes a slot of every capped tag, or parks `entry` behind
the first full tag and returns False. `release(tags)` frees the slots and
returns the parked entries that may now try again, at most one per freed
tag. A run with several capped tags holds a slot of each. Thread-safe, so a
function flow's direct calls (in the flow's thread) and its submitted runs
(finishing in executor callbacks) share one count.
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

    def take_waiting(self, tags: Iterable[str]) -> None:
        """Block the calling thread until a slot of every capped tag is free, then take them."""
        capped = self.capped(tags)
        if not capped:
            return
        with self.lock:
            self.lock.wait_for(lambda: all(self.in_use[t] < self.caps[t] for t in capped))
            for tag in capped:
                self.in_use[tag] += 1

    def release(self, tags: Iterable[str]) -> list:
        woken = []
        with self.lock:
            for tag in self.capped(tags):
                self.in_use[tag] -= 1
                if self.parked[tag]:
                    woken.append(self.parked[tag].popleft())
            self.lock.notify_all()
        return woken
