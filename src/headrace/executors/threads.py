"""ThreadExecutor: task runs on a pool of threads in this process.

Good for I/O-bound tasks (HTTP, databases). Timeouts abandon the thread
rather than kill it (see `engine.task_run`). Runs of a task that take under a
millisecond go to the pool in batches (see `Batcher`); children of a map of
such a task go as one call per batch (`batch_size`, `engine.batch.send`).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor

from headrace.executors.base import Batcher, PoolExecutor
from headrace.executors.futures import RunFuture


class ThreadExecutor(PoolExecutor):
    batches = True

    def __init__(self, max_workers: int | None = None):
        super().__init__(max_workers, min(32, (os.cpu_count() or 1) + 4))
        self._batcher = Batcher(self.max_workers)

    def start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="headrace")

    def shutdown(self) -> None:
        for outer, *_ in self._batcher.drop():  # held, never sent
            outer.cancel()
        if self._pool is not None:
            # Abandoned (timed-out) threads must not hold up the caller.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    @property
    def max_in_flight(self) -> int:
        return 32 * self.max_workers  # room for batches; a held run waits here, not in a thread

    def submit(self, fn, *args) -> Future:
        pool = self._started_pool()
        outer = RunFuture()
        run = (outer, fn, args, Batcher.kind_of(args), 1)
        if not self._batcher.hold(run[3], run):
            self._send(pool, [run])
        return outer

    def batch_size(self, kind) -> int:
        # A few batches per worker in flight: none waits for the core to bind the next.
        return self._batcher.batch_size(kind, self.max_in_flight // (2 * self.max_workers))

    def submit_runs(self, count: int, fn, *args) -> Future:
        outer = RunFuture()
        self._send(self._started_pool(), [(outer, fn, args, Batcher.kind_of(args), count)])
        return outer

    def flush(self) -> None:
        if self._pool is not None:
            for runs in self._batcher.take():
                self._send(self._pool, runs)

    def _send(self, pool: ThreadPoolExecutor, runs: list) -> None:
        job = pool.submit(self._run_batch, runs)
        # Cancelled in the queue (an interrupt): so are its runs.
        job.add_done_callback(lambda job: job.cancelled() and [run[0].cancel() for run in runs])

    def _run_batch(self, runs: list) -> None:
        for outer, fn, args, kind, count in runs:
            if not outer.set_running_or_notify_cancel():
                continue
            began = time.perf_counter()
            try:
                outer.set_result(fn(*args))
            except BaseException as exc:
                outer.set_exception(exc)
            self._batcher.timed(kind, (time.perf_counter() - began) / count)

    def __repr__(self) -> str:
        return f"ThreadExecutor(max_workers={self.max_workers})"
