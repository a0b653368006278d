"""Function flows: a `@flow` function called like a function, on the graph engine's pipeline.

One `FunctionRun` per flow call. Inside it (found through a contextvar,
`_build.function_run`):

    task(...)           runs now, in the flow's thread: decide_before_run ->
                        throttle slot (waits) -> run_task, retrying on the
                        run's clock -> value (or State with return_state=True)
    task.submit(...)    returns a TaskFuture at once; the run starts on the
                        flow's executor when the futures it was given are done
    task.map(...)       one submit per item, same mapping rules as graph flows

Every task run is recorded as a `TaskRunRecord` with the ids of the task
runs that produced its inputs (from futures, states, and results passed
back in by identity), so a function flow has a DAG like a graph flow.

Final state: Failed when the body raised, or when a task run failed that
was not explicitly allowed to (`return_state=True`, or consumed by a task
whose trigger accepts failure); a State the body returns is the flow's own;
otherwise Completed with the return value.

Inside an `async def` flow every task call returns an awaitable; the work
runs on a thread, so sync tasks never block the event loop.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from concurrent.futures import Future
from typing import Any

from headrace import _build
from headrace.edges import flatten, flatten_once, unmapped
from headrace.engine import logs
from headrace.engine.clock import SYSTEM_CLOCK
from headrace.engine.context import FlowRunContext, flow_run_var
from headrace.engine.names import new_run_id
from headrace.engine.recorder import flow_run_ended, flow_run_started, task_run_done, task_state
from headrace.engine.task_run import TaskSpec, after_run, decide_before_run, outcome, run_task
from headrace.engine.throttle import Throttle
from headrace.states import Completed, Failed, State, StateType, TimedOut, failure_summary
from headrace.store import get_store
from headrace.tasks import check_lengths, check_mappable

# Results of these types are too often shared (interned, cached) to say who made them.
_UNTRACKED = (int, float, bool, str, bytes, type(None))
_SCALARS = frozenset(_UNTRACKED)
# After this many task runs, a flow run's per-task lifecycle lines go to DEBUG.
QUIET_AFTER = 20


class TaskRunRecord:
    """One task run of a function flow (or a subflow run), for the DAG and the history."""

    __slots__ = (
        "id",
        "name",
        "task_name",
        "map_index",
        "upstream",
        "state",
        "allowed",
        "kind",
        "start",
        "run_count",
    )

    def __init__(
        self, id: str, name: str, task_name: str, map_index: int | None, upstream: list[str]
    ):
        self.id = id
        self.name = name
        self.task_name = task_name
        self.map_index = map_index
        self.upstream = upstream
        self.state: State | None = None
        self.allowed = False  # a failure the flow was told to accept
        self.kind = "task"
        self.start = time.time()
        self.run_count = 1

    def __repr__(self) -> str:
        return f"<TaskRunRecord {self.name} {self.state!r}>"


class TaskFuture:
    """A submitted task run: `result()`, `wait()`, `state`, `done()`; awaitable in async flows."""

    def __init__(self, record: TaskRunRecord, run: FunctionRun):
        self.record = record
        self._run = run
        self._future: Future = Future()

    @property
    def task_run_name(self) -> str:
        return self.record.name

    @property
    def state(self) -> State:
        return self.wait()

    def wait(self, timeout: float | None = None) -> State:
        return self._future.result(timeout)

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        state = self.wait(timeout)
        if not raise_on_failure:
            self.record.allowed = True
        return state.result(raise_on_failure=raise_on_failure)

    def __await__(self):
        yield from asyncio.wrap_future(self._future).__await__()
        return self.result()

    def __repr__(self) -> str:
        shown = repr(self._future.result()) if self.done() else "running"
        return f"<TaskFuture {self.record.name}: {shown}>"


class FutureList(list):
    """The futures of a `task.map(...)` in a function flow."""

    def result(self, raise_on_failure: bool = True) -> list:
        return [f.result(raise_on_failure=raise_on_failure) for f in self]

    def wait(self) -> list[State]:
        return [f.wait() for f in self]

    def __await__(self):
        """In an async flow: wait without blocking the loop, then the list of results."""
        for future in self:
            yield from asyncio.wrap_future(future._future).__await__()
        return self.result()


class FunctionRun:
    """One run of a function flow. Created and driven by `run_function_flow`."""

    def __init__(self, flow, parameters: dict, parent: FunctionRun | None, clock):
        self.flow = flow
        self.parent = parent
        self.id = new_run_id()
        self.name = flow.run_name(parameters)
        self.ctx = FlowRunContext(self.id, self.name, flow.name, parameters, flow.log_prints)
        self.clock = clock
        self.throttle = Throttle(flow.throttle)
        self.logger = logs.flow_logger(self.name, self.id)
        self.records: list[TaskRunRecord] = []
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._specs: dict[int, TaskSpec] = {}
        self._producers: dict[int, tuple[TaskRunRecord, Any]] = {}
        self._pending: set[Future] = set()
        self._executor = None
        self._owns_executor = False
        self._run_counts: dict[str, int] = {}  # attempts of task runs that retried
        self.store = get_store()
        self.is_async = False
        self.state: State | None = None

    # -- naming and records ----------------------------------------------------------------
    def _record(self, task, map_index, upstream) -> TaskRunRecord:
        with self._lock:
            if map_index is None:
                n = self._counts.get(task.name, 0)
                self._counts[task.name] = n + 1
                name = f"{task.name}-{n}"
            else:
                name = f"{task.name}[{map_index}]"
            count = len(self.records) + 1
            record = TaskRunRecord(f"{self.id}-{count}", name, task.name, map_index, upstream)
            self.records.append(record)
        level = 20 if count <= QUIET_AFTER else 10
        if logs.FLOW_RUNS.isEnabledFor(level):
            self.logger.log(level, "Created task run %r for task %r", name, task.name)
        if count == QUIET_AFTER + 1:
            self.logger.info(
                "More than %d task runs: further task-run lines are logged at DEBUG "
                "(HEADRACE_LOGGING_LEVEL=DEBUG shows them).",
                QUIET_AFTER,
            )
        return record

    def _spec(self, task) -> TaskSpec:
        spec = self._specs.get(id(task))
        if spec is None:
            spec = self._specs[id(task)] = TaskSpec(task)
        return spec

    # -- inputs ------------------------------------------------------------------------------
    def _resolve(self, value: Any, upstream: list, states: list) -> Any:
        """Replace futures and states by their results; note where inputs came from."""
        if type(value) in _SCALARS:
            return value
        if isinstance(value, TaskFuture):
            state = value.wait()
            upstream.append(value.record.id)
            states.append((value.record.name, state, value.record))
            return _value_for(state)
        if isinstance(value, State):
            states.append(("state", value, None))
            return _value_for(value)
        if isinstance(value, list | tuple) and value and any(_is_future(v) for v in value):
            return type(value)(self._resolve(v, upstream, states) for v in value)
        if isinstance(value, dict) and any(_is_future(v) for v in value.values()):
            return {k: self._resolve(v, upstream, states) for k, v in value.items()}
        if not isinstance(value, _UNTRACKED):
            made = self._producers.get(id(value))
            if made is not None and made[1] is value:
                upstream.append(made[0].id)
        return value

    def _inputs(self, task, args, kwargs, wait_for):
        arguments = task.bind(args, kwargs)
        upstream: list[str] = []
        states: list = []
        if all(type(v) in _SCALARS for v in arguments.values()):
            resolved = arguments  # nothing to resolve or trace: the common trivial call
        else:
            resolved = {k: self._resolve(v, upstream, states) for k, v in arguments.items()}
        for dep in wait_for or ():
            self._resolve(dep, upstream, states)
        return resolved, upstream, states

    def _decide(self, task, states: list) -> State | None:
        decided = decide_before_run(task, [(name, s) for name, s, _ in states])
        if decided is None and task.trigger is not None:
            for _, s, record in states:  # a trigger that ran past failures accepts them
                if record is not None and s.is_failed():
                    record.allowed = True
        return decided

    # -- direct calls --------------------------------------------------------------------------
    def call(self, task, args: tuple, kwargs: dict):
        return_state = _pop_option(task, kwargs, "return_state", False)
        wait_for = _pop_option(task, kwargs, "wait_for", None)
        if self.is_async and _in_event_loop():
            return self._call_awaitable(task, args, kwargs, return_state, wait_for)
        return self._call(task, args, kwargs, return_state, wait_for)

    async def _call_awaitable(self, task, args, kwargs, return_state, wait_for):
        return await asyncio.to_thread(self._call, task, args, kwargs, return_state, wait_for)

    def _call(self, task, args, kwargs, return_state, wait_for):
        arguments, upstream, states = self._inputs(task, args, kwargs, wait_for)
        record = self._record(task, None, upstream)
        state = self._decide(task, states) if states else None
        if state is None:
            spec = self._spec(task)
            if self.throttle:
                self.throttle.take_waiting(task.tags)
            try:
                state = self._run_inline(spec, arguments, record.name, record.id)
            finally:
                if self.throttle:
                    self._relaunch(self.throttle.release(task.tags))
        self._finish(task, record, state, allowed=return_state)
        self._note_producer(record, state)
        return state if return_state else state.result()

    def _run_inline(self, spec: TaskSpec, arguments: dict, name: str, run_id: str) -> State:
        run_count, loop = 1, (1, None)
        while True:
            state = run_task(spec, arguments, name, None, self.ctx, run_count, loop, run_id)
            if not state.is_retrying():
                return state
            delay = spec.retry_delay(state.run_count)
            self._log_retry(run_id, name, state, delay)
            task_state(self.store, run_id, self.id, state)
            loop = state.loop or loop
            self.clock.sleep(delay)
            run_count = state.run_count + 1
            self._run_counts[run_id] = run_count

    # -- submitted runs ------------------------------------------------------------------------
    def submit(self, task, args: tuple, kwargs: dict, map_index: int | None = None, sources=()):
        """`sources`: ids of runs whose results a map iterates, upstream of each child."""
        wait_for = _pop_option(task, kwargs, "wait_for", None)
        arguments = task.bind(args, kwargs)
        deps = [v for v in arguments.values() if _is_future(v)]
        for v in arguments.values():
            if isinstance(v, list | tuple):
                deps.extend(x for x in v if _is_future(x))
            elif isinstance(v, dict):
                deps.extend(x for x in v.values() if _is_future(x))
        deps.extend(d for d in wait_for or () if _is_future(d))
        future_ids = [*sources, *(d.record.id for d in deps)]
        record = self._record(task, map_index, future_ids)
        future = TaskFuture(record, self)
        self._pending.add(future._future)
        unit = [task, arguments, wait_for, future, len(deps) + 1]
        for dep in deps:
            dep._future.add_done_callback(lambda _, unit=unit: self._dep_done(unit))
        self._dep_done(unit)  # the +1 above: launch once every dependency is done
        return future

    def _dep_done(self, unit: list) -> None:
        with self._lock:
            unit[4] -= 1
            if unit[4]:
                return
        self._launch(unit)

    def _launch(self, unit: list) -> None:
        task, arguments, wait_for, future, _ = unit
        upstream: list[str] = []
        states: list = []
        resolved = {k: self._resolve(v, upstream, states) for k, v in arguments.items()}
        for dep in wait_for or ():
            self._resolve(dep, upstream, states)
        future.record.upstream = [*dict.fromkeys([*future.record.upstream, *upstream])]
        decided = self._decide(task, states)
        if decided is not None:
            self._complete(task, future, decided)
            return
        attempt = (task, resolved, future, 1, (1, None))
        if self.throttle.take(task.tags, attempt):
            self._submit(attempt)

    def _submit(self, attempt: tuple) -> None:
        task, arguments, future, run_count, loop = attempt
        record = future.record
        args = (self._spec(task), arguments, record.name, record.map_index, self.ctx)
        done = self.executor.submit(run_task, *args, run_count, loop, record.id)
        done.add_done_callback(lambda f, attempt=attempt: self._on_done(attempt, f))

    def _on_done(self, attempt: tuple, done: Future) -> None:
        task, arguments, future, run_count, loop = attempt
        state = outcome(done, run_count, task.retries)
        self._relaunch(self.throttle.release(task.tags))
        if state.is_retrying():
            delay = self._spec(task).retry_delay(state.run_count)
            self._log_retry(future.record.id, future.record.name, state, delay)
            task_state(self.store, future.record.id, self.id, state)
            self._run_counts[future.record.id] = state.run_count + 1
            retry = (task, arguments, future, state.run_count + 1, state.loop or loop)
            threading.Thread(target=self._retry_after, args=(delay, retry), daemon=True).start()
            return
        self._complete(task, future, state)

    def _retry_after(self, delay: float, attempt: tuple) -> None:
        self.clock.sleep(delay)
        if self.throttle.take(attempt[0].tags, attempt):
            self._submit(attempt)

    def _relaunch(self, attempts: list) -> None:
        for attempt in attempts:
            if self.throttle.take(attempt[0].tags, attempt):
                self._submit(attempt)

    def _complete(self, task, future: TaskFuture, state: State) -> None:
        self._finish(task, future.record, state, allowed=False)
        self._note_producer(future.record, state)
        future._future.set_result(state)

    def _note_producer(self, record: TaskRunRecord, state: State) -> None:
        """Remember who made a result, to record it as upstream where it is passed on."""
        value = state._value
        if state.is_successful() and not isinstance(value, _UNTRACKED):
            self._producers[id(value)] = (record, value)

    def map(self, task, args: tuple, kwargs: dict) -> FutureList:
        wait_for = _pop_option(task, kwargs, "wait_for", None)
        arguments = task.bind(args, kwargs, for_map=True)
        fixed, iterated, sources = {}, {}, []
        for key, value in arguments.items():
            if isinstance(value, unmapped):
                fixed[key] = value.value
                continue
            flat = isinstance(value, flatten)
            if flat:
                value = value.value
            known = len(sources)
            if isinstance(value, TaskFuture):  # iterate its result: wait for it here
                sources.append(value.record.id)
                value = value.result()
            elif not isinstance(value, _UNTRACKED):
                made = self._producers.get(id(value))
                if made is not None and made[1] is value:
                    sources.append(made[0].id)
            if flat:  # a task's result that is not nested is worth a warning
                value = flatten_once(
                    value, key, self.logger.warning if len(sources) > known else None
                )
            iterated[key] = check_mappable(value, key, task.name)
        n = check_lengths(iterated, task.name)
        futures = FutureList()
        for i in range(n):
            child = {**fixed, **{k: v[i] for k, v in iterated.items()}}
            if wait_for:
                child["wait_for"] = wait_for
            futures.append(self.submit(task, (), child, map_index=i, sources=sources))
        return futures

    # -- finishing ---------------------------------------------------------------------------------
    def _finish(self, task, record: TaskRunRecord, state: State, allowed: bool) -> None:
        state.task_run_id, state.flow_run_id = record.id, self.id
        record.state = state
        record.allowed = record.allowed or allowed
        failed = state.is_failed()
        level = 40 if failed else 20 if len(self.records) <= QUIET_AFTER else 10
        after_run(task, state, record.name, record.id, self.id)
        task_run_done(
            self.store, record.id, self.id, task.name, record.name, None, record.map_index,
            None, record.upstream, task.tags, state, record.start,
            self._run_counts.pop(record.id, 1),
        )  # fmt: skip
        if logs.TASK_RUNS.isEnabledFor(level):
            logs.task_logger(record.name, record.id, self.id).log(
                level, "Finished in state %s", logs.state_label(state)
            )

    def _log_retry(self, record_id: str, name: str, state: State, delay: float) -> None:
        logs.task_logger(name, record_id, self.id).warning(
            "%s Retrying in %g s.", state.message, delay
        )

    @property
    def executor(self):
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    from headrace.executors import ThreadExecutor

                    executor = self.flow.executor or ThreadExecutor()
                    self._owns_executor = not executor.started
                    if self._owns_executor:
                        executor.start()
                    self._executor = executor
        return self._executor

    def wait_for_submitted(self, timed_out: bool = False) -> None:
        """Wait for every submitted run (not after a timeout: those are abandoned)."""
        if not timed_out:
            for future in list(self._pending):
                future.result()
        if self._executor is not None and self._owns_executor:
            self._executor.shutdown()

    def final_state(self, value: Any) -> State:
        """A returned State is the flow's own (as in Prefect 2/3), unless it succeeded while
        a failure the flow did not accept happened; otherwise Completed with the value."""
        value = _resolve_returned(value)
        returned_state = isinstance(value, State)
        if returned_state and value.is_failed():
            return copy.copy(value)  # the flow's own state, apart from the run it came from
        failed = [r for r in self.records if r.state is not None and r.state.is_failed()]
        unallowed = [r for r in failed if not r.allowed]
        if unallowed:
            first = [(r.name, r.state) for r in unallowed if not r.state.is_trigger_failed()]
            after = [(r.name, r.state) for r in unallowed if r.state.is_trigger_failed()]
            cause = (first or after)[0][1]
            return Failed(failure_summary(first, after), exception=cause.exception)
        if returned_state:
            return copy.copy(value)
        return Completed("All states completed." if self.records else None, value)


def _is_future(value: Any) -> bool:
    return isinstance(value, TaskFuture)


def _value_for(state: State) -> Any:
    """What a downstream receives: the result, or the exception of a failed state."""
    if state.type is StateType.FAILED or state.type is StateType.CRASHED:
        return state.exception
    return state.result()


def _resolve_returned(value: Any) -> Any:
    if isinstance(value, TaskFuture):
        return value.result()
    if isinstance(value, FutureList):
        return value.result()
    return value


def _pop_option(task, kwargs: dict, name: str, default: Any) -> Any:
    """Take an orchestration keyword, unless the task's own function takes that name."""
    if name in kwargs and name not in task.signature.parameters:
        return kwargs.pop(name)
    return default


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# -- running a flow ---------------------------------------------------------------------------


def _start(flow, args: tuple, kwargs: dict, clock) -> tuple[FunctionRun, dict, Any]:
    logs.configure()
    if flow.log_prints:
        logs.enable_log_prints()
    parameters = flow.bind_parameters(args, kwargs)
    parent = _build.function_run.get()
    run = FunctionRun(flow, parameters, parent, clock or flow.clock or SYSTEM_CLOCK)
    flow_run_started(
        run.store, run.id, run.name, flow.name, "function", parameters,
        parent.id if parent else None, flow.executor,
    )  # fmt: skip
    if parent is None:
        logs.ENGINE.info(
            "Created flow run %r for flow %r", run.name, flow.name, extra={"flow_run_id": run.id}
        )
    else:
        parent.logger.info("Created subflow run %r for flow %r", run.name, flow.name)
    return run, parameters, parent


def _enter(run: FunctionRun, log_prints: bool) -> tuple:
    return (
        _build.function_run.set(run),
        flow_run_var.set(run.ctx),
        logs.log_prints_var.set(log_prints),
        _build._current.set(_build._EMPTY),
    )


def _exit(tokens: tuple) -> None:
    run_token, ctx_token, prints_token, build_token = tokens
    _build._current.reset(build_token)
    logs.log_prints_var.reset(prints_token)
    flow_run_var.reset(ctx_token)
    _build.function_run.reset(run_token)


def _end(flow, run: FunctionRun, parent, state: State, return_state: bool):
    state.flow_run_id, state.task_run_id = run.id, None  # the flow run's own, even when adopted
    run.logger.log(40 if state.is_failed() else 20, "Finished in state %s", logs.state_label(state))
    run.state = state
    flow_run_ended(run.store, run.id, state)
    if parent is None:
        run.store.flush()
    if parent is not None:
        record = TaskRunRecord(run.id, run.name, flow.name, None, [])
        record.kind = "flow"
        record.state = state
        record.allowed = return_state
        with parent._lock:
            parent.records.append(record)
    flow.last_run = run
    if return_state:
        return state
    return state.result()


def run_function_flow(flow, args: tuple, kwargs: dict, return_state: bool, clock=None):
    """Run a sync @flow now; return its value (or State), retrying the body per `retries`."""
    run, parameters, parent = _start(flow, args, kwargs, clock)
    attempt = 1
    while True:
        tokens = _enter(run, flow.log_prints)
        try:
            value = flow.call_body(parameters)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            state = _failed_body(run, flow, exc)
        else:
            state = None
        finally:
            _exit(tokens)
        run.wait_for_submitted(timed_out=state is not None and state.name == "TimedOut")
        state = state or run.final_state(value)
        if not state.is_failed() or attempt > flow.retries:
            return _end(flow, run, parent, state, return_state)
        run.logger.warning("Flow run attempt %d failed; retrying.", attempt)
        run.clock.sleep(flow.retry_delay_seconds(attempt))
        attempt += 1
        run.records.clear()


async def run_function_flow_async(flow, args, kwargs, return_state: bool, clock=None):
    """Run an async @flow in the current event loop (also under Jupyter's)."""
    run, parameters, parent = _start(flow, args, kwargs, clock)
    run.is_async = True
    attempt = 1
    while True:
        tokens = _enter(run, flow.log_prints)
        try:
            body = flow.call_body(parameters, timeout=False)
            value = await (body if flow.timeout is None else asyncio.wait_for(body, flow.timeout))
            state = None
        except Exception as exc:
            if isinstance(exc, asyncio.TimeoutError | TimeoutError) and flow.timeout:
                state = TimedOut(f"Flow run exceeded its timeout of {flow.timeout:g} s.", exc)
            else:
                state = _failed_body(run, flow, exc)
        finally:
            _exit(tokens)
        timed_out = state is not None and state.name == "TimedOut"
        await asyncio.to_thread(run.wait_for_submitted, timed_out)
        state = state or run.final_state(value)
        if not state.is_failed() or attempt > flow.retries:
            return _end(flow, run, parent, state, return_state)
        await asyncio.to_thread(run.clock.sleep, flow.retry_delay_seconds(attempt))
        attempt += 1
        run.records.clear()


def _failed_body(run: FunctionRun, flow, exc: Exception) -> State:
    from headrace.engine.task_run import TaskTimeoutError

    if isinstance(exc, TaskTimeoutError):
        return TimedOut(f"Flow run exceeded its timeout of {flow.timeout:g} s.", exc)
    if any(r.state is not None and r.state.exception is exc for r in run.records):
        run.logger.error("A task run failed and its exception ended the flow (traceback above).")
    else:
        logs.log_exception(run.logger, exc)
    return Failed(f"Flow run encountered an exception {type(exc).__name__}: {exc}", exc)


__all__ = [
    "FunctionRun",
    "TaskFuture",
    "FutureList",
    "TaskRunRecord",
    "run_function_flow",
    "run_function_flow_async",
]
