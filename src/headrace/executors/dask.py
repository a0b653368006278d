"""DaskExecutor: task runs on a Dask distributed cluster.

Without `address` each run gets a temporary `LocalCluster` (worker
processes, one thread each unless `cluster_kwargs` say otherwise); with
`address` it connects to a running scheduler (`dask scheduler` /
`dask worker`). Every submission has a unique key, so Dask never merges
two task runs that look alike. A worker that dies raises in the future;
the scheduler records that run as Crashed (and retries it per the task's
`retries`), never as the task's own failure.

Throttling stays in headrace's scheduler, so it needs no Dask server
feature. Timeouts kill the task on worker processes (see
`engine.task_run`); on a threads-only cluster they abandon it.
"""

from __future__ import annotations

import itertools
import os
import uuid
from concurrent.futures import Future

from headrace.executors.base import Executor
from headrace.executors.processes import check_picklable


def _run_on_worker(client_pid: int, fn, *args):
    if os.getpid() != client_pid:  # a worker process: forking a child to kill is safe
        from headrace.engine.task_run import enable_kill_on_timeout

        enable_kill_on_timeout()
    return fn(*args)


class DaskExecutor(Executor):
    def __init__(
        self,
        address: str | None = None,
        cluster_kwargs: dict | None = None,
        client_kwargs: dict | None = None,
    ):
        self.address = address
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.client = None
        self._cluster = None
        self._workers = 1
        self._run = uuid.uuid4().hex[:8]
        self._counter = itertools.count()

    @property
    def max_in_flight(self) -> int:
        return 4 * self._workers

    @property
    def started(self) -> bool:
        return self.client is not None

    def start(self) -> None:
        if self.client is not None:
            return
        from distributed import Client, LocalCluster

        if self.address is None:
            options = {
                "n_workers": os.cpu_count() or 1,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": ":0",  # a free port: never collide with a running cluster
                "host": "127.0.0.1",
            }
            options.update(self.cluster_kwargs)
            self._cluster = LocalCluster(**options)
            self.client = Client(self._cluster, **self.client_kwargs)
        else:
            self.client = Client(self.address, **self.client_kwargs)
        threads = self.client.nthreads()
        self._workers = max(1, sum(threads.values()))

    def shutdown(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def validate(self, flow) -> None:
        check_picklable(flow)

    def submit(self, fn, *args) -> Future:
        if self.client is None:
            raise RuntimeError("DaskExecutor.submit() before start()")
        # args[2] is the run name ("task[3]"); keys must be unique per submission.
        key = f"{args[2] if len(args) > 2 else fn.__name__}-{self._run}-{next(self._counter)}"
        dask_future = self.client.submit(
            _run_on_worker, os.getpid(), fn, *args, key=key, pure=False
        )
        outer: Future = Future()

        def relay(done) -> None:
            try:
                outer.set_result(done.result())
            except BaseException as exc:
                outer.set_exception(exc)
            finally:
                done.release()

        dask_future.add_done_callback(relay)
        return outer

    def __repr__(self) -> str:
        where = self.address or "a temporary LocalCluster"
        return f"DaskExecutor({where})"
