"""ProcessExecutor: task runs on a pool of worker processes.

For CPU-bound Python. Payloads cross the process boundary with cloudpickle,
so tasks defined in `__main__`, a notebook or a closure work. `validate`
pickles every task before the run and refuses one that cannot be pickled,
naming the task and the object inside it. Timeouts kill the task: the call
runs in a forked child of the worker that is killed when time is up.

Workers are forked by default on POSIX, so they inherit what the parent
imported; pass `mp_context="spawn"` for clean workers.

Payloads are lean: a `Shared` part (a task's spec, the flow run's context
and its parameters) is pickled once, to a file in the executor's directory,
and a run's payload names the file; each worker reads it once.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import threading
import time
import weakref
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from headrace._pid import alive
from headrace.errors import HeadraceError
from headrace.executors.base import Batcher, PoolExecutor, Shared
from headrace.executors.futures import RunFuture


class UnpicklableTaskError(HeadraceError, TypeError):
    """A task or its arguments cannot be sent to another process."""


# Worker side: each worker has a file named by its pid in the executor's holdings directory,
# which says the run it holds (blank between runs). Its path, and its descriptor.
_HOLDING: tuple[str, int] | None = None
_BLANK = b" " * 20


def _worker_init(holdings: str) -> None:
    global _HOLDING
    from headrace.engine.task_run import enable_kill_on_timeout

    enable_kill_on_timeout()
    from headrace.engine import logs

    logs.capture_here()  # this worker's run lines go back to the flow's process
    path = os.path.join(holdings, str(os.getpid()))
    _HOLDING = path, os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    signal.signal(signal.SIGTERM, _terminated)
    parent = os.getppid()
    threading.Thread(
        target=_exit_with, args=(parent,), name="headrace-orphan-watch", daemon=True
    ).start()


def _exit_with(parent: int) -> None:
    """Worker side: end this worker once its parent is gone (killed, say), rather than
    live on as an orphan. Checks twice a second."""
    stopped = threading.Event()
    while not stopped.wait(0.5):
        if os.getppid() != parent:
            os._exit(1)


def _terminated(signum, frame) -> None:
    """Worker side: the pool stops this worker (a sibling died): it held nothing wrong."""
    try:
        os.unlink(_HOLDING[0])
    except (OSError, TypeError):
        pass
    os._exit(1)


def dumps(obj) -> bytes:
    """Pickle with the standard pickler when it can (several times faster), else with
    cloudpickle: for lambdas and closures, and for anything defined in a `__main__`
    (a script, a notebook), which another process may not be able to import."""
    try:
        blob = pickle.dumps(obj, protocol=5)
    except Exception:
        blob = None
    if blob is None or b"main__" in blob:  # __main__ or __mp_main__ named inside
        import cloudpickle

        blob = cloudpickle.dumps(obj, protocol=5)
    return blob


class _SharedFile:
    """In a payload: a `Shared` part, pickled once to this file."""

    __slots__ = ("path",)

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return _SharedFile, (self.path,)


@functools.lru_cache(maxsize=256)
def _load_shared(path: str):
    """Worker side: a shared part, read once per worker (the newest 256 are kept)."""
    import cloudpickle

    with open(path, "rb") as file:
        return cloudpickle.load(file)


def _run_batch(runs: list[tuple[int, bytes]]) -> list[tuple[bytes, float]]:
    """Worker side: run each pickled `fn(*args)` in turn; for each, what it returned
    (pickled) and the seconds it took. Before each run the worker's holding file names
    it, so if the worker dies of a run, the file still says which."""
    from headrace.engine import logs

    done = []
    try:
        for token, blob in runs:
            os.pwrite(_HOLDING[1], str(token).encode().ljust(len(_BLANK)), 0)
            began = time.perf_counter()
            with logs.kept_lines() as kept:  # the run's log lines go back with its state
                fn, args = pickle.loads(blob)
                args = [_load_shared(a.path) if type(a) is _SharedFile else a for a in args]
                state = fn(*args)
            done.append((dumps((state, kept)), time.perf_counter() - began))
        return done
    finally:
        os.pwrite(_HOLDING[1], _BLANK, 0)


class WorkerDiedError(HeadraceError, RuntimeError):
    """The worker process running a task run died (a crash, os._exit, the OOM killer)."""


class ProcessExecutor(PoolExecutor):
    def __init__(self, max_workers: int | None = None, mp_context: str | None = None):
        super().__init__(max_workers, os.cpu_count() or 1)
        default = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self.mp_context = mp_context or default
        self._lock = threading.Lock()
        self._batcher = Batcher(self.max_workers)

    @property
    def max_in_flight(self) -> int:
        # Room for batches of short runs; a run waits here, not in the pool.
        return 64 * self.max_workers

    def start(self) -> None:
        if self._pool is None:
            self._holdings = tempfile.mkdtemp(prefix="headrace-workers-")
            os.mkdir(os.path.join(self._holdings, "shared"))
            self._shared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
            self._tokens = itertools.count()
            self._broken: dict[int, list] = {}  # id of a broken pool -> its runs to sort out
            self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.max_workers,
            mp_context=multiprocessing.get_context(self.mp_context),
            initializer=_worker_init,
            initargs=(self._holdings,),
        )

    def shutdown(self) -> None:
        self._drop_held()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            shutil.rmtree(self._holdings, ignore_errors=True)

    def cancel(self) -> None:
        """An interrupt: cancel what is queued and kill the workers, waiting for none."""
        self._drop_held()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.shutdown(wait=False, cancel_futures=True)
        for pid in self._held():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self._holdings, ignore_errors=True)

    def _drop_held(self) -> None:
        for _, _, outer, _ in self._batcher.drop():
            outer.cancel()

    def _held(self) -> dict[int, str]:
        """pid -> what its holding file says (a run's token, or blank), for every worker
        that has one: alive, or dead of the run its file names."""
        out = {}
        for name in os.listdir(self._holdings):
            try:
                with open(os.path.join(self._holdings, name)) as holding:
                    out[int(name)] = holding.read().strip()
            except (OSError, ValueError):
                continue
        return out

    def validate(self, flow) -> None:
        check_picklable(flow)

    def submit(self, fn, *args) -> Future:
        self._started_pool()
        outer = RunFuture()
        try:
            blob = dumps((fn, [self._lean(a) for a in args]))
        except Exception as exc:
            outer.set_exception(
                UnpicklableTaskError(f"the inputs of a task run cannot be pickled: {exc}")
            )
            return outer
        kind = Batcher.kind_of(args)
        run = (next(self._tokens), blob, outer, kind)
        if not self._batcher.hold(kind, run):
            self._send([run])
        return outer

    def flush(self) -> None:
        """Send the short runs held since the last flush, in batches."""
        for runs in self._batcher.take():
            self._send(runs)

    def _lean(self, part):
        """A shared part as the file it is pickled to (written on its first run)."""
        if not isinstance(part, Shared):
            return part
        with self._lock:
            file = self._shared.get(part)
            if file is None:
                import cloudpickle

                path = os.path.join(self._holdings, "shared", str(next(self._tokens)))
                with open(path + ".part", "wb") as out:
                    cloudpickle.dump(part, out)
                os.replace(path + ".part", path)  # a worker never reads half a file
                file = self._shared[part] = _SharedFile(path)
        return file

    def _send(self, runs: list) -> None:
        """Send runs (token, blob, outer future, kind) to the pool as one job."""
        job = [(token, blob) for token, blob, _, _ in runs]
        with self._lock:
            pool = self._pool
            if pool is None:  # shut down meanwhile
                for run in runs:
                    run[2].set_exception(RuntimeError("ProcessExecutor was shut down"))
                return
            try:
                inner = pool.submit(_run_batch, job)
            except BrokenProcessPool:  # broke just now: its runs are being sorted out
                self._pool = pool = self._new_pool()
                inner = pool.submit(_run_batch, job)

        def unwrap(done: Future) -> None:
            try:
                results = done.result()
            except BrokenProcessPool:
                self._sort_out(pool, runs)
                return
            except BaseException as exc:
                for run in runs:
                    run[2].set_exception(exc)
                return
            for (_, _, outer, kind), (blob, seconds) in zip(runs, results):
                try:
                    state, lines = pickle.loads(blob)
                    if lines:
                        from headrace.engine import logs

                        logs.replay(lines)  # before the state: a run's lines precede its end
                    self._batcher.timed(kind, seconds)
                    outer.set_result(state)
                except BaseException as exc:
                    outer.set_exception(exc)

        inner.add_done_callback(unwrap)

    def _sort_out(self, pool, runs: list) -> None:
        """A worker of `pool` died, and the pool failed every run it had. Once the pool
        has stopped its other workers, the run whose worker died of it is the one still
        named in a holding file: that run fails (Crashed, retried per its retries); the
        others go again on a new pool (those that had finished earlier in the dead
        worker's batch too: their results died with it)."""
        with self._lock:
            broken = self._broken.setdefault(id(pool), [])
            first = not broken
            broken += runs
            if not first:
                return
            if self._pool is pool:
                self._pool = self._new_pool()
        threading.Thread(target=self._resend, args=(pool,), daemon=True).start()

    def _resend(self, pool) -> None:
        pool.shutdown(wait=True)  # its manager has stopped and joined every worker
        held = {}  # token -> pid, of the workers that died of their run
        for pid, token in self._held().items():
            if not alive(pid):  # not a worker of the new pool
                os.unlink(os.path.join(self._holdings, str(pid)))
                if token:
                    held[int(token)] = pid
        with self._lock:
            runs = self._broken.pop(id(pool), [])
        for run in runs:
            token, _, outer, _ = run
            if token in held:
                outer.set_exception(
                    WorkerDiedError(
                        f"the worker process (pid {held[token]}) running it died; the run's "
                        "code crashed it (a segfault, os._exit, or the kernel's OOM killer)"
                    )
                )
            else:
                self._send([run])

    def __repr__(self) -> str:
        return f"ProcessExecutor(max_workers={self.max_workers}, mp_context={self.mp_context!r})"


def check_picklable(flow) -> None:
    """Refuse, before the run, a task whose function or constants cannot be pickled."""
    import cloudpickle

    from headrace.engine.task_run import TaskSpec

    for node in flow.tasks:
        try:
            cloudpickle.dumps(TaskSpec(node))
            cloudpickle.dumps(node.constants)
        except Exception as exc:
            culprit = _find_unpicklable(node)
            raise UnpicklableTaskError(
                f"Task {node.name!r} cannot be sent to another process: {culprit or exc}. "
                "Create such objects inside the task (or pass what is needed to rebuild them), "
                "or run this flow with ThreadExecutor or LocalExecutor."
            ) from exc


def _find_unpicklable(node) -> str | None:
    """Name the first object in the task's closure, globals or constants that will not pickle."""
    import cloudpickle

    fn = getattr(node.fn, "__func__", node.fn)
    candidates: list[tuple[str, object]] = []
    code = getattr(fn, "__code__", None)
    if code is not None:
        cells = fn.__closure__ or ()
        candidates += [
            (f"closure variable {n!r}", c.cell_contents) for n, c in zip(code.co_freevars, cells)
        ]
        candidates += [
            (f"global {n!r}", fn.__globals__[n]) for n in code.co_names if n in fn.__globals__
        ]
    owner = getattr(node.fn, "__self__", None)
    if owner is not None:
        candidates += [(f"attribute {k!r}", v) for k, v in vars(owner).items() if k != "template"]
    candidates += [(f"argument {k!r}", v) for k, v in node.constants.items()]
    for label, value in candidates:
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            return f"its {label} ({type(value).__name__}) cannot be pickled ({exc})"
    return None
