"""The executor contract.

An executor runs `fn(*args)` somewhere and returns a
`concurrent.futures.Future`. A run starts an executor that is not started
and shuts it down after; one the caller started (`with executor:`) stays up
across runs, so a cluster is paid for once. `fn` is
always a module-level function of the engine and `args` small picklable
payloads, so executors that cross a process boundary never see Task
objects.

`inline` executors run `fn` in the calling thread before `submit` returns;
the core then calls `fn` directly and skips the future. Executors that take
`batches` (threads of this process: the call holds the core's plan of a map,
which is not sent anywhere) are handed a short task's map children as one
`submit_runs` call.
`max_in_flight` bounds how many runs are submitted and unfinished at once,
which keeps chained maps depth-first and memory flat.

Parts of a payload that many runs share unchanged (a task's spec, the flow
run's context with its parameters) are `Shared`: an executor that crosses a
process boundary sends each once per worker, and each run names it.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class Shared:
    """A payload part that many runs send unchanged. It must not change once a run that
    carries it was submitted: a worker keeps the copy it received first."""

    __slots__ = ("__weakref__",)


class Batcher:
    """Runs of a short task travel together: what a pool pays per job (a future, a
    wake-up, for processes a pipe write) is paid once per batch.

    Per kind of run (a task's spec: the first `Shared` part of its payload) it keeps a
    moving average of the seconds a run takes. A run of a kind known to take under SHORT
    seconds is held by `hold` until `take`, which cuts what was held into batches of
    about BATCH seconds, at least one per worker. A run of a kind not yet timed, or
    slower, goes alone at once.
    """

    SHORT = 0.001
    BATCH = 0.002
    PACES = 4096  # kinds remembered: an executor kept up across many runs stays small

    def __init__(self, workers: int):
        self.workers = workers
        self._pace: dict = {}  # kind -> seconds; forgotten past PACES kinds (re-learnt)
        self._held: list = []
        self._lock = threading.Lock()

    @staticmethod
    def kind_of(args: tuple):
        return args[0] if args and isinstance(args[0], Shared) else None

    def hold(self, kind, run) -> bool:
        """Hold `run` for the next batch if its kind is short; False: send it now."""
        if kind is None or self._pace.get(kind, self.SHORT) >= self.SHORT:
            return False
        with self._lock:
            self._held.append((kind, run))
        return True

    def batch_size(self, kind, cap: int) -> int:
        """How many runs of `kind` make about BATCH seconds (at most `cap`); 0 unless its
        runs are known to be short."""
        pace = self._pace.get(kind, self.SHORT)
        return 0 if pace >= self.SHORT else min(cap, int(self.BATCH / max(pace, 1e-6)))

    def take(self) -> list[list]:
        """What was held, in batches."""
        if not self._held:
            return []
        with self._lock:
            held, self._held = self._held, []
        seconds = max(max(self._pace.get(kind, self.SHORT) for kind, _ in held), 1e-6)
        size = max(1, min(int(self.BATCH / seconds), -(-len(held) // self.workers)))
        runs = [run for _, run in held]
        return [runs[start : start + size] for start in range(0, len(runs), size)]

    def drop(self) -> list:
        """What was held, never to be sent (the executor is shutting down)."""
        return [run for batch in self.take() for run in batch]

    def timed(self, kind, seconds: float) -> None:
        """A run of `kind` took `seconds` (a moving average: a task's runs change pace)."""
        if kind is not None:
            pace = self._pace
            if kind not in pace and len(pace) >= self.PACES:
                pace.clear()
            pace[kind] = 0.8 * pace.get(kind, seconds) + 0.2 * seconds


class Executor(ABC):
    inline: bool = False
    batches: bool = False  # takes several runs of a short task as one call (`batch_size`)
    remote_results: bool = False  # results stay where they ran (`RemoteValue`s)

    @property
    def started(self) -> bool:
        """True between `start()` and `shutdown()`. A run shuts down only what it started."""
        return False

    @property
    def max_in_flight(self) -> int:
        return 1

    def start(self) -> None:
        """Acquire resources (pools, clusters) for a run."""

    def shutdown(self) -> None:
        """Release what `start` acquired. Called once per `start`."""

    def cancel(self) -> None:
        """`shutdown` for an interrupt: cancel what has not started and wait for nothing
        (the default: `shutdown`, for executors whose shutdown does not wait)."""
        self.shutdown()

    def validate(self, flow: Any) -> None:
        """Refuse a flow this executor cannot run, before anything runs."""

    def localize(self, states: list) -> None:
        """Bring remote results of these states here before the executor stops (no-op)."""

    @abstractmethod
    def submit(self, fn, *args) -> Future:
        """Run `fn(*args)` and return a future of its result."""

    def batch_size(self, kind) -> int:
        """How many runs of `kind` (a payload's first `Shared` part) the core may hand over
        as one `submit_runs` call; 0 (the default) while each run should go alone."""
        return 0

    def submit_runs(self, count: int, fn, *args) -> Future:
        """`submit` for a call that performs `count` runs of the kind of `args[0]`, which
        the executor times as `count` runs (see `batch_size`)."""
        return self.submit(fn, *args)

    def flush(self) -> None:
        """The core has submitted what it can for now: send what `submit` held back to
        send together (no-op)."""

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_executor(executor: object, where: str) -> None:
    """An executor argument must be an Executor instance: say what to pass if it is not."""
    if executor is not None and not isinstance(executor, Executor):
        hint = f"{executor.__name__}()" if isinstance(executor, type) else "ThreadExecutor()"
        raise TypeError(
            f"{where} got executor={executor!r}, which is not an executor. Pass an instance "
            f"from headrace.executors, such as {hint} (also LocalExecutor(), "
            "ProcessExecutor(), DaskExecutor())."
        )


class PoolExecutor(Executor):
    """An executor over a `concurrent.futures` pool of `max_workers` (threads or processes)."""

    def __init__(self, max_workers: int | None, default_workers: int):
        if max_workers is not None and (
            isinstance(max_workers, bool) or not isinstance(max_workers, int)
        ):
            raise TypeError(
                f"max_workers of {type(self).__name__} must be an int >= 1 (or None for "
                f"the default), got {max_workers!r} ({type(max_workers).__name__})"
            )
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers or default_workers
        self._pool = None

    @property
    def max_in_flight(self) -> int:
        # Enough queued work to keep every worker busy between core turns.
        return 2 * self.max_workers

    @property
    def started(self) -> bool:
        return self._pool is not None

    def _started_pool(self):
        if self._pool is None:
            raise RuntimeError(f"{type(self).__name__}.submit() before start()")
        return self._pool
