"""DaskExecutor: task runs on a Dask distributed cluster.

Without `address` each run gets a temporary `LocalCluster` (worker
processes, one thread each unless `cluster_kwargs` say otherwise); with
`address` it connects to a running scheduler (`dask scheduler` /
`dask worker`). Results stay on the workers: downstream runs receive them
there (Dask moves data between workers), a result leaves the cluster's
memory once the scheduler releases it, and only the results the caller
keeps, and the lists a map must count, come back to this process. Every submission has a unique key, so Dask never merges
two task runs that look alike. A worker that dies raises in the future;
the scheduler records that run as Crashed (and retries it per the task's
`retries`), never as the task's own failure.

Throttling stays in headrace's core, so it needs no Dask server
feature. Timeouts kill the task on worker processes (see
`engine.task_run`); on a threads-only cluster they abandon it.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import signal
import threading
import uuid
from concurrent.futures import Future

from headrace._optional import require
from headrace.errors import HeadraceError
from headrace.executors.base import Executor
from headrace.executors.processes import check_picklable
from headrace.states import RemoteValue

CLOSE_SECONDS = 30.0  # a cluster's close, before its workers are killed
CANCEL_SECONDS = 2.0  # the same after an interrupt


RESOURCE_TAG = "dask-resource:"


def resources_of(tags) -> dict[str, float] | None:
    """Dask worker resources a task's tags ask for: `dask-resource:GPU=1` asks one GPU (as
    Prefect 1 read them). None when it asks none; a malformed one is refused by name."""
    asked = {}
    for tag in tags:
        if not tag.startswith(RESOURCE_TAG):
            continue
        name, sep, amount = tag[len(RESOURCE_TAG) :].partition("=")
        try:
            asked[name] = float(amount)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ValueError(
                f"Tag {tag!r} is not a Dask resource: write dask-resource:NAME=AMOUNT, "
                "e.g. dask-resource:GPU=1 (and start workers with --resources GPU=1)."
            )
    return asked or None


LOG_TOPIC = "headrace-logs"  # the Dask event topic that carries workers' run lines home


def _run_on_worker(client_pid: int, paths: list, fn, *args):
    """Worker side: unwrap upstream states at `paths` into their values, then run. In a
    worker process the run's log lines are kept and sent to the client in one event."""
    if os.getpid() == client_pid:
        return _run_unwrapped(paths, fn, *args)
    from headrace.engine import logs
    from headrace.engine.task_run import enable_kill_on_timeout

    enable_kill_on_timeout()  # a worker process: forking a child to kill is safe
    logs.capture_here()
    try:
        with logs.kept_lines() as kept:
            return _run_unwrapped(paths, fn, *args)
    finally:
        if kept:
            from distributed import get_worker

            get_worker().log_event(LOG_TOPIC, kept)


def _record_logs(event) -> None:
    """Client side: the run lines a worker sent (`event` is Dask's (time, message))."""
    from headrace.engine import logs

    logs.replay(event[1])


def _run_unwrapped(paths: list, fn, *args):
    if paths:
        arguments = dict(args[1])
        for key, index in paths:
            if index is None:
                arguments[key] = arguments[key]._value
            else:
                items = list(arguments[key])
                items[index] = items[index]._value
                arguments[key] = items
        args = (args[0], arguments, *args[2:])
    return _sendable(fn(*args), args[2] if len(args) > 2 else fn.__name__)


def _sendable(state, run_name: str):
    """Worker side: the state, or Failed when its value could never leave this worker (a
    downstream on another worker, or the client, would wait for it forever)."""
    value = state._value
    if value is None or not state.is_successful():
        return state
    import cloudpickle

    try:  # out-of-band buffers: large arrays are not copied to find out
        cloudpickle.dumps(value, protocol=5, buffer_callback=lambda buffer: None)
    except Exception as exc:
        from headrace.states import Failed

        return Failed(
            f"The result of task run {run_name!r} is a {type(value).__name__}, which "
            f"cannot be pickled ({exc}), so it cannot leave its Dask worker. Return plain "
            "data (build such objects where they are used), or run on ThreadExecutor.",
            exception=TypeError(f"cannot pickle the result of {run_name!r}: {exc}"),
        )
    return state


def _without_value(state):
    """Worker side: a copy of the state that leaves its value behind, and whether it had one."""
    has_value = state._value is not None and state.is_successful()
    if not has_value:
        return state, False
    light = copy.copy(state)
    light._value = None
    return light, True


def _failure_of(future) -> BaseException:
    try:
        error = future.exception(timeout=30)
    except BaseException as exc:  # cancelled futures raise instead of returning
        error = exc
    return error if isinstance(error, BaseException) else RuntimeError(f"{future.key} failed")


class _OnWorker(RemoteValue):
    """A task run's value left on the cluster; `future` resolves to its whole State."""

    __slots__ = ("future",)

    def __init__(self, future):
        self.future = future

    def fetch(self):
        return self.future.result()._value


def _send_remote(arguments: dict) -> tuple[dict, list]:
    """Replace values left on the cluster by their states' futures; say where they are."""
    paths = []
    out = dict(arguments)
    for key, value in arguments.items():
        if isinstance(value, _OnWorker):
            out[key] = value.future
            paths.append((key, None))
        elif isinstance(value, list) and any(isinstance(v, _OnWorker) for v in value):
            items = list(value)
            for i, v in enumerate(items):
                if isinstance(v, _OnWorker):
                    items[i] = v.future
                    paths.append((key, i))
            out[key] = items
    return out, paths


def _worker_pids(cluster) -> list[int]:
    return [nanny.pid for nanny in cluster.workers.values() if getattr(nanny, "pid", None)]


def _kill_trees(pids: list[int]) -> None:
    """SIGKILL these processes, if alive, and every process they started."""
    import psutil

    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in tree:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGKILL)


class DaskUnreachableError(HeadraceError, ConnectionError):
    """The Dask scheduler at the given address does not answer."""


class DaskExecutor(Executor):
    remote_results = True

    def __init__(
        self,
        address: str | None = None,
        cluster_kwargs: dict | None = None,
        client_kwargs: dict | None = None,
    ):
        require("distributed", "dask", "DaskExecutor")
        self.address = address
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.client = None
        self._cluster = None
        self._workers = 1
        self._run = uuid.uuid4().hex[:8]
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._more = threading.Event()
        self._waiting: dict = {}  # key of a state future -> (the scheduler's future, full)
        self._relay_thread: threading.Thread | None = None

    @property
    def max_in_flight(self) -> int:
        # A round trip to the cluster takes milliseconds: keep plenty submitted. The
        # results in flight stay on the workers, so this does not grow this process.
        return 256 + 4 * self._workers

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
            try:
                self.client = Client(self.address, **self.client_kwargs)
            except (OSError, TimeoutError) as exc:
                raise DaskUnreachableError(
                    f"DaskExecutor cannot reach the scheduler at {self.address!r} ({exc}). "
                    "Start it (`dask scheduler`, then `dask worker ADDRESS`), or pass the "
                    "address it prints; nothing was run or recorded."
                ) from None
        threads = self.client.nthreads()
        self._workers = max(1, sum(threads.values()))
        self.client.subscribe_topic(LOG_TOPIC, _record_logs)
        from distributed import as_completed

        self._finished = as_completed([], with_results=True, raise_errors=False)
        self._stopping = False
        self._relay_thread = threading.Thread(target=self._relay, name="headrace-dask", daemon=True)
        self._relay_thread.start()

    def shutdown(self, timeout: float = CLOSE_SECONDS) -> None:
        if self._relay_thread is not None:
            self._stopping = True
            with self._lock:  # what is still on the cluster is cancelled, not waited for
                pending = [full for _, full in self._waiting.values()]
            if pending and self.client is not None:
                self.client.cancel(pending)
            self._more.set()
            self._relay_thread.join(timeout=5)  # a daemon: never hold up the caller
            self._relay_thread = None
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(TimeoutError, OSError, RuntimeError):
                client.close(timeout=timeout)
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            workers = _worker_pids(cluster)
            with contextlib.suppress(TimeoutError, OSError, RuntimeError):
                cluster.close(timeout=timeout)
            _kill_trees(workers)  # those that did not exit with their cluster

    def cancel(self) -> None:
        """An interrupt: what is on the cluster is cancelled, and the worker processes of a
        cluster this executor started are killed before it closes: a terminal's Ctrl-C
        reached them too, a graceful close can wait on them for ever, and a second Ctrl-C
        may cut the close short."""
        if self._cluster is not None:
            _kill_trees(_worker_pids(self._cluster))
            self._cluster.shutdown_on_close = False  # distributed's atexit: nothing to close
        self.shutdown(timeout=CANCEL_SECONDS)

    def validate(self, flow) -> None:
        check_picklable(flow)

    def submit(self, fn, *args) -> Future:
        if self.client is None:
            raise RuntimeError("DaskExecutor.submit() before start()")
        # args are run_task's: (spec, arguments, run name, ...).
        paths: list = []
        if len(args) > 1 and isinstance(args[1], dict):
            arguments, paths = _send_remote(args[1])
            args = (args[0], arguments, *args[2:])
        # Keys must be unique per submission: Dask must never merge two task runs.
        key = f"{args[2] if len(args) > 2 else fn.__name__}-{self._run}-{next(self._counter)}"
        try:
            resources = resources_of(getattr(args[0], "tags", ()) if args else ())
        except ValueError as exc:  # the run crashes, naming the tag; nothing is sent
            refused: Future = Future()
            refused.set_exception(exc)
            return refused
        full = self.client.submit(
            _run_on_worker, os.getpid(), paths, fn, *args, key=key, pure=False,
            resources=resources,
        )  # fmt: skip
        light = self.client.submit(_without_value, full, key=f"{key}-state", pure=False)
        outer: Future = Future()
        with self._lock:
            self._waiting[light.key] = (outer, full)
            self._finished.add(light)
        self._more.set()
        return outer

    def _relay(self) -> None:
        """Hand finished states to the core's futures, fetched in batches.

        One thread reads `as_completed(with_results=True)`, which gathers many
        results per round trip; fetching each result in its own callback costs
        a round trip per task run and was ten times slower.
        """
        finished = self._finished
        while not self._stopping:
            try:
                light, result = next(finished)
            except StopIteration:  # nothing in flight: wait for the next submission
                self._more.wait(0.5)
                self._more.clear()
                continue
            with self._lock:
                outer, full = self._waiting.pop(light.key)
            try:
                if light.status != "finished":  # erred or cancelled: a worker died, say
                    outer.set_exception(_failure_of(light))
                else:
                    state, has_value = result
                    if has_value:
                        state._value = _OnWorker(full)
                    outer.set_result(state)
            except BaseException as exc:  # never let this thread die: the run would hang
                if not outer.done():
                    outer.set_exception(exc)
            finally:
                light.release()

    def localize(self, states: list) -> None:
        """Fetch every kept result from the cluster in one gather."""
        remote = [s for s in states if isinstance(s._value, _OnWorker)]
        if remote and self.client is not None:
            wholes = self.client.gather([s._value.future for s in remote])
            for state, whole in zip(remote, wholes):
                state._value = whole._value

    def __repr__(self) -> str:
        where = self.address or "a temporary LocalCluster"
        return f"DaskExecutor({where})"
