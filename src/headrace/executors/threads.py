"""ThreadExecutor: task runs on a pool of threads in this process.

Good for I/O-bound tasks (HTTP, databases). Timeouts abandon the thread
rather than kill it (see `engine.task_run`).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor

from headrace.executors.base import Executor


class ThreadExecutor(Executor):
    def __init__(self, max_workers: int | None = None):
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._pool: ThreadPoolExecutor | None = None

    @property
    def max_in_flight(self) -> int:
        # Enough queued work to keep every thread busy between scheduler turns.
        return 2 * self.max_workers

    @property
    def started(self) -> bool:
        return self._pool is not None

    def start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="headrace")

    def shutdown(self) -> None:
        if self._pool is not None:
            # Abandoned (timed-out) threads must not hold up the caller.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def submit(self, fn, *args) -> Future:
        if self._pool is None:
            raise RuntimeError("ThreadExecutor.submit() before start()")
        return self._pool.submit(fn, *args)

    def __repr__(self) -> str:
        return f"ThreadExecutor(max_workers={self.max_workers})"
