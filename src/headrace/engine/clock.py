"""Clocks: the engine's only source of time, so tests can replace it.

`SystemClock` is the real one. `ManualClock` never waits: `sleep` moves its
time forward and records how long was asked, so retry delays and backoff
are tested exactly and instantly.

`wait(events, seconds, busy)` is how the core idles: it returns the
next event from the queue, or None once `seconds` have passed. The manual
clock moves time only when nothing is running (`busy` False), so a run
under it is deterministic.
"""

from __future__ import annotations

import datetime
import queue
import threading
import time


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, events: queue.SimpleQueue, seconds: float | None, busy: bool):
        try:
            return events.get(timeout=None if seconds is None else max(seconds, 0.0))
        except queue.Empty:
            return None


class ManualClock:
    """A clock that advances only when slept on (or by `advance`). Thread-safe."""

    def __init__(self, start: datetime.datetime | None = None):
        self._start = start or datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
        self._elapsed = 0.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._elapsed

    def now(self) -> datetime.datetime:
        return self._start + datetime.timedelta(seconds=self._elapsed)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._elapsed += max(seconds, 0.0)

    def wait(self, events: queue.SimpleQueue, seconds: float | None, busy: bool):
        if busy or seconds is None:
            return events.get()
        self.sleep(seconds)
        return None

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._elapsed += seconds


SYSTEM_CLOCK = SystemClock()
