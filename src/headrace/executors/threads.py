"""ThreadExecutor: task runs on a pool of threads in this process.

Good for I/O-bound tasks (HTTP, databases). Timeouts abandon the thread
rather than kill it (see `engine.task_run`).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor

from headrace.executors.base import PoolExecutor


class ThreadExecutor(PoolExecutor):
    def __init__(self, max_workers: int | None = None):
        super().__init__(max_workers, min(32, (os.cpu_count() or 1) + 4))

    def start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="headrace")

    def shutdown(self) -> None:
        if self._pool is not None:
            # Abandoned (timed-out) threads must not hold up the caller.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def submit(self, fn, *args) -> Future:
        return self._started_pool().submit(fn, *args)

    def __repr__(self) -> str:
        return f"ThreadExecutor(max_workers={self.max_workers})"
