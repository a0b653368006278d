"""DaskExecutor: task runs on a Dask distributed cluster.

Without `address` each run gets a temporary `LocalCluster` (worker
processes, one thread each unless `cluster_kwargs` say otherwise); with
`address` it connects to a running scheduler (`dask scheduler` /
`dask worker`).

One Dask task per task run. Its result is the run's state with the value,
kept on the worker; what the client needs (the state without the value, and
the run's log lines) comes home in one Dask event, which Dask delivers before
the task's own completion. Downstream runs receive upstream values on the
workers (Dask moves data between them); only the results the caller keeps,
and the lists a map must count, come back to this process. A task's spec and
the flow run's context (with its parameters) are Dask tasks of their own,
copied to every worker once, not sent with each run. Every submission has a
unique key that Dask groups by task (`inc-7-...`: `inc` on its dashboard), so
Dask never merges two task runs that look alike. A worker that dies fails the
Dask task; the run is recorded as Crashed (and retried per the task's
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
import pickle
import signal
import threading
import time
import uuid
import weakref
from concurrent.futures import Future

from headrace._optional import require
from headrace.errors import HeadraceError
from headrace.executors.base import Executor, Shared
from headrace.executors.futures import RunFuture
from headrace.executors.processes import check_picklable, dumps
from headrace.states import RemoteValue

CLOSE_SECONDS = 30.0  # a cluster's close, before its workers are killed
CANCEL_SECONDS = 2.0  # the same after an interrupt
UNHEARD_SECONDS = 5.0
RELAY_SECONDS = 0.1  # how often the runs on the cluster are looked at for failures  # a finished run whose state event has not come: fetch its state


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


STATE_TOPIC = "headrace-state"  # the Dask event topic that brings task runs' states home


def _run_on_worker(client_pid: int, paths: list, fn, *args):
    """Worker side: unwrap upstream states at `paths` into their values, run, and keep
    the state with its value here, as this Dask task's result. What the client needs
    travels in one event: the state without its value, and (in a worker process) the
    run's log lines."""
    from distributed import get_worker

    from headrace.engine import logs

    if os.getpid() == client_pid:  # the client's process: its lines are written here
        state, kept = _run_unwrapped(paths, fn, *args), []
    else:
        from headrace.engine.task_run import enable_kill_on_timeout

        enable_kill_on_timeout()  # a worker process: forking a child to kill is safe
        logs.capture_here()
        with logs.kept_lines() as kept:
            state = _run_unwrapped(paths, fn, *args)
    light, has_value = _without_value(state)
    try:
        message = dumps((light, has_value, kept))
    except Exception as exc:  # an exception that will not pickle: say what it was
        from headrace.states import Failed

        light = Failed(light.message, exception=RuntimeError(f"{light.exception!r} ({exc})"))
        message = dumps((light, False, kept))
    worker = get_worker()
    worker.log_event(STATE_TOPIC, (worker.get_current_task(), message))
    return state


def _given(part):
    return part


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
        self._waiting: dict = {}  # a run's Dask key -> (the core's future, the Dask future)
        self._shared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # -> future
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
        self.client.subscribe_topic(STATE_TOPIC, self._on_state)
        self._stopping = False
        self._relay_thread = threading.Thread(target=self._relay, name="headrace-dask", daemon=True)
        self._relay_thread.start()

    def shutdown(self, timeout: float = CLOSE_SECONDS) -> None:
        if self._relay_thread is not None:
            self._stopping = True
            with self._lock:  # what is still on the cluster is cancelled, not waited for
                pending = [full for _, full in self._waiting.values()]
                self._shared.clear()
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
        key = self._key(args[0] if args else None, args[3] if len(args) > 3 else None, fn)
        try:
            resources = resources_of(getattr(args[0], "tags", ()) if args else ())
        except ValueError as exc:  # the run crashes, naming the tag; nothing is sent
            refused: Future = Future()
            refused.set_exception(exc)
            return refused
        args = tuple(self._scattered(a) if isinstance(a, Shared) else a for a in args)
        full = self.client.submit(
            _run_on_worker, os.getpid(), paths, fn, *args, key=key, pure=False,
            resources=resources,
        )  # fmt: skip
        outer = RunFuture()
        with self._lock:
            self._waiting[key] = (outer, full)
        self._more.set()
        return outer

    def _key(self, spec, index: int | None, fn) -> str:
        """A new key per submission (Dask must never merge two task runs) that Dask groups
        by task: `inc-7-<executor>-<n>` for `inc[7]`, shown as `inc` on its dashboard. (A
        group per child would cost Dask's scheduler time in the number of groups.)"""
        name = getattr(spec, "name", None) or fn.__name__
        where = "" if index is None else f"{index}-"
        return f"{name}-{where}{self._run}-{next(self._counter)}"

    def _scattered(self, part):
        """A shared part (a task's spec, the flow run's context) as a future of its copy on
        every worker: sent once, not with every run. A Dask task that returns it, not
        scattered data: if the workers holding it die, Dask makes it again."""
        with self._lock:
            future = self._shared.get(part)
        if future is None:
            key = f"{type(part).__name__}-{self._run}-{next(self._counter)}"
            future = self.client.submit(_given, part, key=key, pure=False)
            # On every worker: else Dask would place the runs on the one that has it.
            self.client.replicate([future])
            with self._lock:
                future = self._shared.setdefault(part, future)
        return future

    def _on_state(self, event) -> None:
        """Client side, on Dask's event loop: a run's state (its value stays on the
        worker) and its log lines, in one event (Dask's (time, (key, message)))."""
        key, message = event[1]
        self._finish(key, lambda full: pickle.loads(message))

    def _relay(self) -> None:
        """Every RELAY_SECONDS, fail the runs whose Dask task erred or was cancelled (a
        worker died, say), read from the futures' status: nothing per future on Dask's
        event loop, which is what the client's time goes to.

        Finished runs are told by their state event (`_on_state`), which Dask
        delivers before the task's own completion; one whose event is missing
        after UNHEARD_SECONDS has its state fetched from the worker instead.
        """
        finished_at: dict = {}  # key -> when its task was first seen finished, unheard
        while not self._stopping:
            with self._lock:
                waiting = list(self._waiting.items())
            if not waiting:
                finished_at.clear()
                self._more.wait(RELAY_SECONDS * 4)
                self._more.clear()
                continue
            now = time.monotonic()
            for key, (_, full) in waiting:
                status = full.status
                if status == "pending":
                    continue
                if status == "finished":
                    if now - finished_at.setdefault(key, now) >= UNHEARD_SECONDS:
                        finished_at.pop(key)
                        self._fetch_unheard(key)
                    continue
                with self._lock:
                    failed = self._waiting.pop(key, None)
                if failed is not None:
                    failed[0].set_exception(_failure_of(full))
            for key in [k for k in finished_at if k not in self._waiting]:
                del finished_at[key]
            time.sleep(RELAY_SECONDS)

    def _fetch_unheard(self, key) -> None:
        self._finish(key, lambda full: (*_without_value(full.result()), []))

    def _finish(self, key, read) -> None:
        """Give the core's future of run `key` the state `read(its Dask future)` gives, as
        (state without its value, whether it had one, log lines). Never raises: it runs
        on Dask's loop, where an error would leave the run hanging."""
        with self._lock:
            waiting = self._waiting.pop(key, None)
        if waiting is None:  # failed meanwhile, or a lost result computed again
            return
        outer, full = waiting
        try:
            state, has_value, lines = read(full)
            if lines:
                from headrace.engine import logs

                logs.replay(lines)  # before the state: a run's lines precede its end
            if has_value:
                state._value = _OnWorker(full)
            outer.set_result(state)
        except BaseException as exc:
            if not outer.done():
                outer.set_exception(exc)

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
