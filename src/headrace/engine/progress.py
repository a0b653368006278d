"""Progress of long maps: a live bar on a terminal, plain periodic lines elsewhere.

The core only bumps counters (`expanded`, `child_done`: a few integer
operations per task run). A daemon thread renders them: with Rich on a
terminal (done / total, failures, rate, time left), or, when stderr is not
a terminal, as a log line per map every HEADRACE_PROGRESS_INTERVAL seconds
(default 10). Maps with fewer than HEADRACE_PROGRESS_MIN children (default
20) are not shown. HEADRACE_PROGRESS=off turns it off.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from headrace.text import safe


def enabled() -> bool:
    return os.environ.get("HEADRACE_PROGRESS", "on").lower() not in ("off", "0", "false", "no")


class MapCounts:
    __slots__ = ("name", "total", "done", "failed", "started_at", "finished_at")

    def __init__(self, name: str, total: int):
        self.name = name
        self.total = total
        self.done = 0
        self.failed = 0
        self.started_at = time.monotonic()
        self.finished_at: float | None = None

    def rate(self) -> float:
        elapsed = (self.finished_at or time.monotonic()) - self.started_at
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{safe(self.name)}: {self.done}/{self.total} done{failed}, {self.rate():.1f}/s"


class Progress:
    """Counters of one flow run's maps, and the thread that shows them."""

    def __init__(self, logger, stream=None):
        self.logger = logger
        self.stream = stream or sys.stderr
        self.minimum = int(os.environ.get("HEADRACE_PROGRESS_MIN", "20"))
        self.interval = float(os.environ.get("HEADRACE_PROGRESS_INTERVAL", "10"))
        self.maps: dict[object, MapCounts] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- called by the core (cheap) ---------------------------------------------
    def expanded(self, key, name: str, total: int) -> None:
        if total < self.minimum:
            return
        self.maps[key] = MapCounts(name, total)
        if self._thread is None:
            target = self._live if self._is_terminal() else self._lines
            self._thread = threading.Thread(target=target, name="headrace-progress", daemon=True)
            self._thread.start()

    def child_done(self, key, failed: bool) -> None:
        counts = self.maps.get(key)
        if counts is not None:
            counts.done += 1
            counts.failed += failed
            if counts.done == counts.total:
                counts.finished_at = time.monotonic()

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()

    # -- rendering -------------------------------------------------------------------------
    def _is_terminal(self) -> bool:
        return hasattr(self.stream, "isatty") and self.stream.isatty()

    def _lines(self) -> None:
        """Not a terminal: one log line per unfinished map each interval, and at the end."""
        reported: set = set()
        while not self._stop.wait(self.interval):
            for key, counts in list(self.maps.items()):
                if key not in reported:
                    self.logger.info("Progress: %s", counts.line())
                    if counts.finished_at is not None:
                        reported.add(key)
        for key, counts in list(self.maps.items()):
            if key not in reported:
                self.logger.info("Progress: %s", counts.line())

    def _live(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bars

        bars = Bars(
            TextColumn("{task.description}", markup=False),  # a name is text, never markup
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
            transient=False,
        )
        ids: dict = {}
        with bars:
            while True:
                stopping = self._stop.wait(0.1)
                for key, counts in list(self.maps.items()):
                    if key not in ids:
                        ids[key] = bars.add_task(
                            safe(counts.name), total=counts.total, failed="", rate=""
                        )
                    bars.update(
                        ids[key],
                        completed=counts.done,
                        failed=f"[red]{counts.failed} failed" if counts.failed else "",
                        rate=f"{counts.rate():.1f}/s",
                    )
                if stopping:
                    break
