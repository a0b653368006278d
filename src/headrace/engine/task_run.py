"""One task run as a pipeline of state steps.

    decide_before_run   upstream check -> skip on upstream skip -> trigger
                        (in the core, before anything is submitted)
    run_task            target or cache lookup (a hit is Cached) -> call
                        (timeout) -> signal/exception -> loop, or retry
                        decision -> state -> target, cache entry or
                        persisted result written
                        (in the worker: inline, a thread, a process)

`run_task` never raises for anything the task does: every outcome is a
`State`. Only interpreter-level exits (KeyboardInterrupt, SystemExit)
propagate. It receives a `TaskSpec`, small and picklable, never the Task
or the flow, so a process or a Dask worker can run it.

Retries are decided here but waited for in the core, on its clock.
"""

from __future__ import annotations

import contextvars
import inspect
import os
import threading
import time
from collections.abc import Callable, Sequence

from headrace import signals
from headrace.engine import logs
from headrace.engine.context import FlowRunContext, TaskRunContext, flow_run_var, task_run_var
from headrace.errors import HeadraceError, StorageUnreachableError
from headrace.executors.base import Shared
from headrace.results.persist import persist
from headrace.states import (
    SUCCEEDED,
    Completed,
    Crashed,
    Failed,
    Retrying,
    Skipped,
    State,
    TimedOut,
    TriggerFailed,
)
from headrace.tasks import call_with_arguments
from headrace.triggers import all_successful

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class TriggerFailedError(HeadraceError):
    """The exception of a TriggerFailed state: names the upstream tasks that failed."""


class TaskTimeoutError(HeadraceError, TimeoutError):
    """A task ran past its `timeout`. When its body was abandoned on a thread (it cannot
    be killed), `when_body_returns(callback)` calls back once the body has ended."""

    when_body_returns: Callable[[Callable[[], None]], None] | None = None

    def __reduce__(self):  # the callback hook stays in the process that made it
        return type(self), self.args


def when_body_returns(state: State) -> Callable[[Callable[[], None]], None] | None:
    """For a state whose task body still runs (a timeout abandoned it), how to be told
    when it ends; None when nothing of the run is left running."""
    return getattr(state.exception, "when_body_returns", None) if state.is_timed_out() else None


class TaskSpec(Shared):
    """What a worker needs to run one node: no Task object, no flow. Shared by the node's
    runs, so a worker in another process receives it once."""

    __slots__ = (
        "name",
        "fn",
        "signature",
        "retries",
        "retry_delay",
        "timeout",
        "tags",
        "is_async",
        "target",
        "serializer",
        "storage",
        "persist",
        "cache",
    )

    def __init__(self, task):
        self.name = task.name
        self.fn = task.fn
        # None when the function takes plain keywords: the fast calling path.
        self.signature = None if task.takes_plain_keywords else task.signature
        self.retries = task.retries
        self.retry_delay = task.retry_delays
        self.timeout = task.timeout
        self.tags = task.tags
        self.is_async = inspect.iscoroutinefunction(task.fn)
        self.target = task._target  # the checked template, or None
        self.serializer, self.storage = task.serializer, task.result_storage
        self.persist = task.persist_result  # None: as the flow run says
        self.cache = task._cache  # headrace.cache.CacheOptions, or None


# -- before the run ------------------------------------------------------------


def decide_before_run(
    task, upstream: Sequence[tuple[str, State]], check_trigger: bool = True
) -> State | None:
    """The state a task gets without running, or None when it should run.

    `upstream` pairs each upstream task's name with its state; NotRun states
    (above `start_tasks`) are ignored. Failed beats Skipped: skipping on an
    upstream skip applies only when no upstream failed.
    """
    states = [s for _, s in upstream if not s.is_not_run()]
    if not states and task.trigger is None:  # the default trigger passes on no states
        return None
    skipped = task.skip_on_upstream_skip and any(s.is_skipped() for s in states)
    if skipped and not any(s.is_failed() for s in states):
        return Skipped("Upstream task was skipped.")
    if not check_trigger:
        return None
    trigger = task.trigger or all_successful
    try:
        passed = trigger(states)
    except signals.SKIP as sig:
        return Skipped(sig.message or "Skipped by its trigger.")
    except Exception as exc:  # a user's trigger that raises fails its task, not the run
        return TriggerFailed(f"Trigger {_name(trigger)} raised {exc!r}.", exception=exc)
    if passed:
        return None
    failed = [name for name, s in upstream if s.is_failed()]
    message = f"Trigger {_name(trigger)} was not met" + (
        f": upstream {', '.join(repr(n) for n in failed)} failed." if failed else "."
    )
    return TriggerFailed(message, exception=TriggerFailedError(message))


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", repr(fn))


# -- the run --------------------------------------------------------------------


def call_function(spec: TaskSpec, arguments: dict[str, Any]) -> Any:
    """Call the task's function with arguments keyed by parameter name."""
    result = call_with_arguments(spec.fn, spec.signature, arguments)
    if spec.is_async:
        return _run_coroutine(result)
    return result


def _run_coroutine(coroutine) -> Any:
    """Run a coroutine to completion from sync code, also under a running loop."""
    import asyncio  # (only async tasks need it: a graph flow's process never imports it)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict[str, Any] = {}

    def target():
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=contextvars.copy_context().run, args=(target,))
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def call_with_deadline(call: Callable[[], Any], seconds: float, what: str) -> Any:
    """Call in a helper thread and stop waiting after `seconds`.

    A thread cannot be killed: a call that times out here is abandoned
    (nothing waits for it) while it finishes in the background. Process
    and Dask executors kill instead (see `_call_in_killable_child`).
    """
    box: dict[str, Any] = {}
    done = threading.Event()
    lock = threading.Lock()
    callbacks: list[Callable[[], None]] = []

    def target():
        try:
            box["value"] = call()
        except BaseException as exc:
            box["error"] = exc
        finally:
            with lock:
                done.set()
            for callback in callbacks:
                callback()

    def when_returns(callback: Callable[[], None]) -> None:
        with lock:
            if not done.is_set():
                callbacks.append(callback)
                return
        callback()

    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(target,), daemon=True, name=what
    )
    thread.start()
    if not done.wait(seconds):
        error = TaskTimeoutError(f"{what} exceeded its timeout of {seconds:g} s and was abandoned.")
        error.when_body_returns = when_returns
        raise error
    if "error" in box:
        raise box["error"]
    return box["value"]


def _call_with_timeout(spec: TaskSpec, arguments: dict[str, Any]) -> Any:
    return call_with_deadline(
        lambda: call_function(spec, arguments), spec.timeout, f"Task {spec.name!r}"
    )


# Set in worker processes (ProcessExecutor, DaskExecutor), where a forked
# child can be killed: there a timeout kills the task instead of abandoning it.
KILL_ON_TIMEOUT = False


def enable_kill_on_timeout() -> None:
    """Make timeouts in this process kill the task (called in worker processes)."""
    global KILL_ON_TIMEOUT
    KILL_ON_TIMEOUT = True


def _call_in_killable_child(spec: TaskSpec, arguments: dict[str, Any]) -> Any:
    """Call in a forked child process and SIGKILL it when `spec.timeout` passes.

    The outcome (value or exception, signals included) comes back pickled
    through a pipe. Used only where KILL_ON_TIMEOUT is set: a worker process
    whose only thread is the one running tasks, where forking is safe.
    """
    import select

    import cloudpickle

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, report, exit without cleanup handlers
        try:
            os.setpgid(0, 0)  # its own process group: a timeout kills what it started too
            os.close(read_fd)
            try:
                outcome = ("value", call_function(spec, arguments))
            except BaseException as exc:
                outcome = ("error", exc)
            try:
                data = cloudpickle.dumps(outcome)
            except Exception as exc:
                data = cloudpickle.dumps(("error", RuntimeError(f"unpicklable outcome: {exc}")))
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        os.setpgid(pid, pid)  # on both sides, whichever runs first
    except OSError:
        pass
    deadline = time.monotonic() + spec.timeout
    chunks = []
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill_group(pid)
                raise TaskTimeoutError(
                    f"Task {spec.name!r} exceeded its timeout of {spec.timeout:g} s and was killed."
                )
            ready, _, _ = select.select([read_fd], [], [], remaining)
            if ready:
                chunk = os.read(read_fd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    if not chunks:
        raise RuntimeError(f"the process running task {spec.name!r} died without a result")
    kind, value = cloudpickle.loads(b"".join(chunks))
    if kind == "error":
        raise value
    return value


def _kill_group(pid: int) -> None:
    """SIGKILL the child and every process it started (its group)."""
    import signal

    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:  # the group was never made: the child alone
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # it has ended already
            pass


def run_task(
    spec: TaskSpec,
    arguments: dict[str, Any],
    run_name: str,
    map_index: int | None,
    flow_ctx: FlowRunContext,
    run_count: int = 1,
    loop: tuple[int, Any] = (1, None),
    run_id: str | None = None,
) -> State:
    """Run one attempt of a task run (its LOOP iterations included) to a state.

    A failure with retries left returns a `Retrying` state carrying the
    exception, the attempt that failed and the `(loop count, loop result)`
    reached, so the retry resumes the loop where it failed. The core
    waits the retry delay on its clock (no worker is held while waiting) and
    calls again with the state's `run_count + 1`. Each LOOP pass starts its
    attempts at 1, as in Prefect.
    """
    task_ctx = TaskRunContext(spec.name, run_name, map_index, spec.tags, run_id)
    task_ctx.task_run_count = run_count
    task_ctx.task_loop_count, task_ctx.task_loop_result = loop
    flow_token = flow_run_var.set(flow_ctx)
    task_token = task_run_var.set(task_ctx)
    prints_token = None
    if flow_ctx.log_prints:  # workers do not inherit the flow thread's context
        logs.enable_log_prints()
        prints_token = logs.log_prints_var.set(True)
    try:
        if spec.target is not None:
            target, cached = _look_up_target(spec, arguments, flow_ctx, map_index, run_name, run_id)
            if cached is not None:
                return cached
            state = _attempt(spec, arguments, task_ctx)
            if not state.is_completed():
                return state
            return target.write(state, _logger(run_name, run_id, flow_ctx), flow_ctx.host)
        if spec.cache is not None:
            return _run_cached(spec, arguments, task_ctx, flow_ctx, run_id or run_name)
        return _run_plain(spec, arguments, task_ctx, flow_ctx, run_id or run_name)
    finally:
        if prints_token is not None:
            prints_token.var.reset(prints_token)
        task_run_var.reset(task_token)
        flow_run_var.reset(flow_token)


def _attempt(spec: TaskSpec, arguments: dict[str, Any], task_ctx: TaskRunContext) -> State:
    """Call the task (its LOOP passes included) to a state; see `run_task`."""
    while True:
        try:
            if spec.timeout is None:
                value = call_function(spec, arguments)
            elif KILL_ON_TIMEOUT:
                value = _call_in_killable_child(spec, arguments)
            else:
                value = _call_with_timeout(spec, arguments)
            return Completed(SUCCEEDED, value)
        except Exception as exc:
            state = state_after_raise(spec, exc, task_ctx)
            if state is not None:
                return state


def state_after_raise(spec: TaskSpec, exc: Exception, task_ctx: TaskRunContext) -> State | None:
    """The state an attempt's call reached by raising `exc`: a signal's, a failure, or
    Retrying while retries remain; None for LOOP, which moved `task_ctx` to the next
    pass (call again)."""
    if isinstance(exc, signals.LOOP):
        task_ctx.task_loop_count += 1
        task_ctx.task_loop_result = exc.result
        task_ctx.task_run_count = 1
        return None
    if isinstance(exc, signals.SUCCESS):
        return Completed(exc.message or SUCCEEDED, exc.result)
    if isinstance(exc, signals.SKIP):
        return Skipped(exc.message or "Task run was skipped.")
    failure = _failure_state(spec, exc)
    attempt = task_ctx.task_run_count
    if attempt > spec.retries:
        return failure
    return Retrying(
        f"Attempt {attempt} of {spec.retries + 1} failed: {failure.message}",
        exception=exc,
        run_count=attempt,
        loop=(task_ctx.task_loop_count, task_ctx.task_loop_result),
    )


def _run_plain(spec, arguments, task_ctx, flow_ctx, run_id: str) -> State:
    """A run, its result persisted as the task and the flow say."""
    state = _attempt(spec, arguments, task_ctx)
    if not state.is_completed():
        return state
    if spec.persist is False or (spec.persist is None and not flow_ctx.persist_result):
        return state
    return _persisted(state, spec, flow_ctx, run_id, task_ctx.task_run_name)


def _run_cached(spec, arguments, task_ctx, flow_ctx, run_id: str) -> State:
    """A run of a cached task (see `engine.caching`): an entry that holds, or the run
    computed under its key's claim and its entry written."""
    from headrace.engine.caching import plan_cache

    logger = _logger(task_ctx.task_run_name, run_id, flow_ctx)
    plan, decided = plan_cache(spec, arguments, flow_ctx, logger, run_id)
    if decided is not None:
        return decided
    if plan is None:  # no key for this run: it runs uncached
        return _run_plain(spec, arguments, task_ctx, flow_ctx, run_id)
    refresh = spec.cache.refresh
    if not refresh:
        cached = plan.look_up()
        if cached is not None:
            return cached
    with plan.store.claim(plan.key):
        if not refresh:
            why = plan.why
            cached = plan.look_up(quiet=True)  # written by the run we waited for?
            if cached is not None:
                return cached
            plan.why = why  # the first look's, which says what changed
            plan.missed()
        state = _attempt(spec, arguments, task_ctx)
        return plan.write(state) if state.is_completed() else state


_NOT_PERSISTED: set[str] = set()  # tasks already warned of in this process


def _persisted(
    state: State, spec: TaskSpec, flow_ctx, run_id: str, run_name: str, data: bytes | None = None
) -> State:
    """The state with a `ref` its value can be read again from (`data`: its bytes, when
    already serialised); a value that its serializer (or storage) cannot write warns
    once per task, and the state says so."""
    try:
        state.ref = persist(state._value, spec.serializer, spec.storage,
                            f"{flow_ctx.flow_run_id}/{run_id}", flow_ctx.host, data)  # fmt: skip
    except StorageUnreachableError as exc:
        return Failed(str(exc), exception=exc)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
        if spec.name not in _NOT_PERSISTED:
            _NOT_PERSISTED.add(spec.name)
            _logger(run_name, run_id, flow_ctx).warning(
                "The result of task %r is not persisted (%s): it stays in memory only while "
                "needed. Give the task a serializer that writes it, or persist_result=False.",
                spec.name, problem,
            )  # fmt: skip
        state.message = f"{state.message} Not persisted ({problem})."
    return state


def _logger(run_name: str, run_id: str | None, flow_ctx):
    return logs.task_logger(run_name, run_id, getattr(flow_ctx, "flow_run_id", None))


def _look_up_target(spec, arguments, flow_ctx, map_index, run_name, run_id) -> tuple:
    """(the run's TargetPlan, its Cached state if the target reads); a template that
    cannot be filled in fails the run, naming what it lacks."""
    from headrace.engine.targets import TargetPlan
    from headrace.results.targets import TargetError

    try:
        target = TargetPlan(spec, arguments, flow_ctx, map_index)
    except TargetError as exc:
        return None, Failed(str(exc), exception=exc)
    return target, target.look_up(_logger(run_name, run_id, flow_ctx))


def outcome(future, run_count: int, retries: int) -> State:
    """The state a finished executor future holds. If the executor or its worker
    failed (not the task), the run is Crashed, or Retrying while retries remain."""
    try:
        return future.result()
    except Exception as exc:
        message = f"The executor failed to run the task: {exc!r}"
        if run_count <= retries:
            return Retrying(f"Attempt {run_count} crashed. {message}", exc, run_count)
        return Crashed(message, exception=exc)


def after_run(
    task, state: State, run_name: str, run_id: str | None = None, flow_run_id: str | None = None
) -> None:
    """What follows a task run's final state in both runners: log a failure's
    traceback (once, not for TriggerFailed) and call the task's hooks."""
    failed = state.is_failed()
    traceback_due = failed and state.exception is not None and not state.is_trigger_failed()
    if traceback_due and logs.TASK_RUNS.isEnabledFor(40):
        logs.log_exception(logs.task_logger(run_name, run_id, flow_run_id), state.exception)
    if failed:
        hooks = task.on_failure
    elif state.is_successful() and not state.is_skipped():
        hooks = task.on_completion
    else:
        return
    for hook in hooks:
        try:
            hook(task, state)
        except Exception:
            logs.task_logger(run_name, run_id, flow_run_id).exception(
                "An %s hook raised; the task run's state is unchanged",
                "on_failure" if failed else "on_completion",
            )


def _failure_state(spec: TaskSpec, exc: Exception) -> State:
    if isinstance(exc, TaskTimeoutError):
        return TimedOut(str(exc), exception=exc)
    if isinstance(exc, signals.FAIL | signals.RETRY):
        label = type(exc).__name__
        return Failed(exc.message or f"Task raised {label}.", exception=exc)
    return Failed(f"Task run encountered an exception {type(exc).__name__}: {exc}", exception=exc)
