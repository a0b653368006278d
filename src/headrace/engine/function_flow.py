"""Function flows: a `@flow` function called like a function, its task calls on the core.

One `FunctionRun` per flow call. Inside it (found through a contextvar,
`_build.function_run`), each task call adds a node to the run's core:

    task(...)           a node owned by the calling thread, which drives the
                        core until it is done -> value (or its State with
                        return_state=True)
    task.submit(...)    a node on the flow's executor; returns a TaskFuture
    task.map(...)       a mapped node (element-wise over another map's
                        futures), same mapping rules as graph flows;
                        returns a FutureList

The core does the rest for both flow styles: readiness, throttle (shared
with subflows), retries on the run's clock, the in-flight bound, depth-first
maps, and releasing a result once its futures are gone and its consumers
have started. A `Call` on each node holds what only function flows have:
arguments with futures or states inside, resolved when the unit runs, and
the ids of tasks whose results were passed back in by identity, so a
function flow records a DAG like a graph flow.

Final state: Failed when the body raised, or when a task run failed that
was not explicitly allowed to (`return_state=True`, or consumed by a task
whose trigger accepts failure); a State the body returns is the flow's own;
otherwise Completed with the return value.

Inside an `async def` flow every task call returns an awaitable; the work
runs on a thread, so sync tasks never block the event loop.
"""

from __future__ import annotations

import copy
import functools
import itertools
import sys
import threading
from collections import defaultdict

from headrace import _build
from headrace.edges import flatten, flatten_once, unmapped
from headrace.engine import logs, progress
from headrace.engine.calls import (
    Call,
    FutureList,
    Hold,
    TaskFuture,
    TaskRunRecord,
    _resolve,
    children_of_one_map,
    futures_in,
    states_in,
)
from headrace.engine.clock import SYSTEM_CLOCK
from headrace.engine.context import FlowRunContext, flow_run_var
from headrace.engine.core import INTERRUPTED, Core
from headrace.engine.entry import entry_point
from headrace.engine.names import new_run_id, slug
from headrace.engine.nodes import Input, Node, give_state
from headrace.engine.recorder import flow_run_ended, flow_run_started
from headrace.engine.resume import resuming
from headrace.engine.task_run import TaskSpec, TriggerFailedError
from headrace.engine.throttle import Throttle
from headrace.errors import ParameterError
from headrace.results.persist import persist_default
from headrace.states import (
    Cancelled,
    ChildStates,
    Completed,
    Failed,
    MappedState,
    Pending,
    State,
    TimedOut,
    TriggerFailed,
    _Released,
    failure_summary,
)
from headrace.store import default_recorder
from headrace.tasks import check_lengths, check_mappable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

# Results of these types are too often shared (interned, cached) to say who made them.
_UNTRACKED = (int, float, bool, str, bytes, type(None))
_SCALARS = frozenset(_UNTRACKED)
# After this many task runs, a flow run's per-task lifecycle lines go to DEBUG.
QUIET_AFTER = 20


class FunctionRun:
    """One run of a function flow. Created and driven by `run_function_flow`.

    Its task calls become nodes of a core (one per attempt of the flow): a
    direct call is a node owned by the calling thread, which it waits for;
    `.submit` a node on the flow's executor; `.map` a mapped node. The core
    runs them all: readiness, throttle (shared with the parent flow run),
    retries, the in-flight bound, depth-first maps and result release.
    """

    def __init__(
        self, flow, parameters: dict, parent: FunctionRun | None, clock, named: bool = True
    ):
        self.flow = flow
        self.parent = parent
        self.id = new_run_id()
        self.log_prints = flow.log_prints
        if self.log_prints is None:  # unset: as its parent flow run
            self.log_prints = parent.log_prints if parent is not None else False
        persists = persist_default(
            flow.persist_result, parent.ctx.persist_result if parent is not None else True
        )
        self.ctx = FlowRunContext(self.id, "", flow.name, parameters, self.log_prints, persists)
        self.name = self.ctx.flow_run_name = self._run_name(parameters) if named else slug()
        self.clock = clock
        if parent is not None:  # one throttle for a flow run and its subflows
            self.throttle = parent.throttle.extended(flow.throttle)
        else:
            from headrace.engine.limits import in_force

            self.throttle = Throttle(flow.throttle, in_force())
        self.logger = logs.flow_logger(self.name, self.id)
        self.recorder = parent.recorder if parent is not None else default_recorder()
        self.is_async = False
        self.state: State | None = None
        self.allowed_by_parent = False
        self._executor = None
        self._owns_executor = False
        self._made = itertools.count()  # nodes, for run ids
        self.key: str | None = None  # as a subflow: its key in the parent's attempt
        self.called_with: tuple = ((), {})  # as a subflow: its arguments, futures resolved
        self.upstream: list[str] = []  # as a subflow: the task runs it waited for
        self.resume = resuming.get() if parent is None else None  # a ResumePlan, or None
        self.entries: list[Node | TaskRunRecord] = []
        self._finished = 0  # task runs, for the log level of their lines
        self._producers: dict[int, tuple[str, Any]] = {}
        self._specs: dict[int, TaskSpec] = {}  # by id(task): made once per task per run
        self._lock = threading.Lock()
        self.attempt = 0
        self.new_attempt()

    def new_attempt(self) -> None:
        """A fresh core for an attempt of the flow's body (its records start empty)."""
        executor = self.flow.executor
        if executor is None:
            from headrace.executors import ThreadExecutor

            executor = ThreadExecutor()
        shown = None
        if progress.enabled():
            shown = progress.Progress(self.logger)
        self.core = Core(executor, self.throttle, self.clock, self.ctx, self.recorder, shown)
        self.core.share_turn = self.is_async
        self._reusable = _reusable(self.entries)  # what a failed attempt completed, by key
        # Keys restart with each attempt, so that a retry finds what the last one finished.
        self._keys = defaultdict(functools.partial(itertools.count, 1))  # task keys, per task
        self._calls = defaultdict(itertools.count)  # run names: calls (not maps) per task
        self._subflows = defaultdict(functools.partial(itertools.count, 1))  # subflow keys
        self.entries = []  # nodes, and records of subflow runs
        self.attempt += 1
        # An attempt that may be retried keeps its results, for the retry to reuse.
        self._keep_all = self.attempt <= self.flow.retries

    @property
    def records(self) -> list[TaskRunRecord]:
        """Every task run and subflow run of the latest attempt, in the order made."""
        return list(self._records())

    def _records(self, failed: bool = False):
        """The records in the order made; with `failed`, only those that failed, without
        a record per compacted child (a million-item map is not walked record by record)."""
        for entry in self.entries:
            if entry.__class__ is TaskRunRecord:  # a subflow run
                candidates = (entry,)
            elif entry.children is None:  # a task run, or a map decided as a whole
                candidates = (TaskRunRecord(entry, None),)
            else:  # an expanded map
                children = entry.children
                indices = (
                    children.failed()
                    if failed and children.__class__ is ChildStates
                    else range(len(children))
                )
                candidates = (TaskRunRecord(entry, i) for i in indices)
            yield from (r for r in candidates if r.failed()) if failed else candidates

    def _run_name(self, parameters: dict) -> str:
        """The flow's run name; a callable naming it reads `context.parameters`."""
        token = flow_run_var.set(self.ctx)
        try:
            return self.flow.run_name(parameters)
        finally:
            flow_run_var.reset(token)

    # -- nodes -----------------------------------------------------------------------------
    def _node(self, task, mapped: bool = False) -> Node:
        # Counters in C (each next() is atomic): calls may come from several threads.
        task_name = task.name
        k = next(self._made)
        node = Node(
            task, f"{task_name}-{next(self._keys[task_name])}", f"{self.id}-{k}", mapped=mapped
        )
        node.spec = self._specs.get(id(task)) or self._spec(task)
        node.call = Call(self)
        node.keep = self._keep_all
        if not mapped:
            node.name = name = f"{task_name}-{next(self._calls[task_name])}"
            if k <= QUIET_AFTER or logs.FLOW_RUNS.isEnabledFor(10):
                self._log_created(name, task_name, k + 1)
        return node

    def _spec(self, task) -> TaskSpec:
        spec = self._specs[id(task)] = TaskSpec(task)
        return spec

    def _log_created(self, name: str, task_name: str, count: int) -> None:
        level = 20 if count <= QUIET_AFTER else 10
        if logs.FLOW_RUNS.isEnabledFor(level):
            self.logger.log(level, "Created task run %r for task %r", name, task_name)
        if count == QUIET_AFTER + 1:
            self.logger.info(
                "More than %d task runs: further task-run lines are logged at DEBUG "
                "(HEADRACE_LOGGING_LEVEL=DEBUG shows them).",
                QUIET_AFTER,
            )

    def _reuse(self, node: Node) -> None:
        """After a failed attempt: the run this attempt's call repeats (same key, same
        arguments) keeps what it completed, its id and its state."""
        previous, part = self._reusable.get(node.key, (None, None))
        if previous is not None and _same_call(previous, node):
            node.run_id = previous.run_id
            give_state(node, part)

    def _add(self, node: Node) -> None:
        if self._reusable:
            self._reuse(node)
        elif self.resume is not None:
            self.resume.give(node, self.recorder, self.id)
        self.entries.append(node)
        self.core.post((self.core.add_one, node))

    def _argument(self, node: Node, key: str, value: Any) -> None:
        """File one argument of a call: a constant, or a structure with futures or states."""
        call = node.call
        if type(value) in _SCALARS:
            node.constants[key] = value
            return
        whole = children_of_one_map(value)
        if whole is not None:  # another map's futures, all of them: its Mapped result
            _add_input(node, Input(key, whole))
            return
        futures = list(futures_in(value))
        states = states_in(value)
        if futures or states:
            call.structure(key, value)
            self._pick(node, futures)
            call.add_states(states)
            return
        node.constants[key] = value
        self._trace(call, value)

    def _pick(self, node: Node, futures: list[TaskFuture]) -> None:
        """Each unit of `node` waits for these futures' runs and sees their states."""
        for f in futures:
            node.call.pick(f)
        _wait_for_nodes(node, futures)

    def _trace(self, call: Call, value: Any) -> bool:
        """Record the run that made `value`, found by identity; whether there was one."""
        if not isinstance(value, _UNTRACKED):
            made = self._producers.get(id(value))
            if made is not None and made[1] is value:
                call.trace(made[0])
                return True
        return False

    def _with_wait_for(self, node: Node, wait_for) -> None:
        for dep in wait_for or ():
            if isinstance(dep, TaskFuture):
                self._pick(node, [dep])
            elif isinstance(dep, State):
                node.call.add_states([dep])

    # -- direct calls --------------------------------------------------------------------------
    def call(self, task, args: tuple, kwargs: dict):
        return_state, wait_for = False, None
        if kwargs:
            return_state = _pop_option(task, kwargs, "return_state", False)
            wait_for = _pop_option(task, kwargs, "wait_for", None)
        if self.is_async and _in_event_loop():
            return self._call_awaitable(task, args, kwargs, return_state, wait_for)
        return self._call(task, args, kwargs, return_state, wait_for)

    async def _call_awaitable(self, task, args, kwargs, return_state, wait_for):
        import asyncio

        return await asyncio.to_thread(self._call, task, args, kwargs, return_state, wait_for)

    def _call(self, task, args, kwargs, return_state, wait_for):
        arguments = task.bind(args, kwargs)
        node = self._node(task)
        node.owner = threading.get_ident()
        node.keep = True  # the caller has the value; the record keeps its state
        for value in arguments.values():
            if type(value) not in _SCALARS:
                for key, value in arguments.items():
                    self._argument(node, key, value)
                break
        else:
            node.constants = arguments  # nothing to resolve or trace: the common trivial call
        if wait_for:
            self._with_wait_for(node, wait_for)
        if return_state:
            node.call.allowed = True
        if self._reusable:
            self._reuse(node)
        self.entries.append(node)
        self.core.call(node)
        state = node.state or Cancelled(INTERRUPTED)  # (none: the run was interrupted)
        return state if return_state else state.result()

    # -- submitted runs ------------------------------------------------------------------------
    def submit(self, task, args: tuple, kwargs: dict) -> TaskFuture:
        wait_for = _pop_option(task, kwargs, "wait_for", None)
        arguments = task.bind(args, kwargs)
        node = self._node(task)
        node.extra_holds = 1  # the future's
        for key, value in arguments.items():
            self._argument(node, key, value)
        self._with_wait_for(node, wait_for)
        self._start_executor()
        future = TaskFuture(node, None, Hold(node))
        self._add(node)
        return future

    def map(self, task, args: tuple, kwargs: dict) -> FutureList:
        wait_for = _pop_option(task, kwargs, "wait_for", None)
        arguments = task.bind(args, kwargs, for_map=True)
        node = self._node(task, mapped=True)
        node.extra_holds = 1  # each child's future
        lengths: dict[str, Any] = {}
        for key, value in arguments.items():
            if isinstance(value, unmapped):
                self._argument(node, key, value.value)
                continue
            flat = isinstance(value, flatten)
            if flat:
                value = value.value
            lengths[key] = self._mapped_argument(node, key, value, flat)
        self._with_wait_for(node, wait_for)
        n = check_lengths(lengths, task.name)
        self._start_executor()
        hold = Hold(node)
        futures = FutureList(node, n, hold)
        self._add(node)
        return futures

    def _mapped_argument(self, node: Node, key: str, value: Any, flat: bool):
        """File one iterated argument of a map; return what its length is read from."""
        call = node.call
        whole = children_of_one_map(value)
        if whole is not None and not flat:  # another map's futures: child by child
            _add_input(node, Input(key, whole, mapped=True))
            return value
        if isinstance(value, TaskFuture):  # iterate its result: wait for it here
            call.trace(value.unit_id)
            value = value.result()
            warn = self.logger.warning
        elif isinstance(value, State):  # iterate the value it holds
            value = value.result()
            warn = self.logger.warning
        else:
            warn = self.logger.warning if self._trace(call, value) else None
        if flat:  # a task's result that is not nested is worth a warning
            value = flatten_once(value, key, warn)
        items = check_mappable(value, key, node.task.name)
        node.iterated = {**node.iterated, key: items}
        if not isinstance(items, range) and any(
            type(item) not in _SCALARS and next(futures_in(item), None) is not None
            for item in items
        ):
            call.each_child(key, items)  # each child resolves its own futures
            _wait_for_nodes(node, [f for item in items for f in futures_in(item)])
        return items

    def _start_executor(self) -> None:
        if self._executor is None:
            executor = self.core.executor
            self._owns_executor = not executor.started
            if self._owns_executor:
                executor.start()
            self._executor = executor

    # -- finishing ---------------------------------------------------------------------------------
    def task_run_finished(self, node: Node, index: int | None, state: State) -> None:
        """Called by the core for each finished unit: log it, remember who made its value."""
        if index is None and state.is_successful():
            value = state._value
            if not isinstance(value, _UNTRACKED):
                self._producers[id(value)] = (node.run_id, value)
        self._log_finished(node, index, state)

    def child_completed(self, node: Node, index: int) -> None:
        """`task_run_finished` for a map child kept compactly: Completed, no State made."""
        self._log_finished(node, index, None)

    def _log_finished(self, node: Node, index: int | None, state: State | None) -> None:
        """The unit's "Finished in state" line (the first few at INFO); None: Completed()."""
        self._finished += 1
        failed = state is not None and state.is_failed()
        level = 40 if failed else 20 if self._finished <= QUIET_AFTER else 10
        if logs.TASK_RUNS.isEnabledFor(level):
            label = "Completed()" if state is None else logs.state_label(state)
            logs.task_logger(node.unit_name(index), node.unit_id(index), self.id).log(
                level, "Finished in state %s", label
            )

    def interrupted(self) -> None:
        """Ctrl-C, after `core.stop`: cancel what has not started, wait for nothing."""
        if self.core.progress is not None:
            self.core.progress.close()
        executor, self._executor = self._executor, None  # (a waiting thread may shut it down)
        if executor is not None and self._owns_executor:
            executor.cancel()

    def wait_for_submitted(self, timed_out: bool = False) -> None:
        """Wait for every task run (not after a timeout: those are abandoned)."""
        if not timed_out:
            self.core.drive(self.core.finished)
            self.core.post((_released, None))  # futures the body left behind hold nothing
        if self.core.progress is not None:
            self.core.progress.close()
        executor, self._executor = self._executor, None
        if executor is not None and self._owns_executor:
            executor.shutdown()

    def final_state(self, value: Any) -> State:
        """A returned State is the flow's own (as in Prefect 2/3), unless it succeeded while
        a failure the flow did not accept happened; otherwise Completed with the value."""
        try:
            value, problem = _resolve_returned(value), None
        except Exception as exc:  # a returned future failed: the flow fails, never raises
            value, problem = None, exc
        if _states_only(value):  # a collection of states decides as Prefect's does
            value = _collected_state(value)
        returned_state = isinstance(value, State)
        if returned_state and (value.is_failed() or value.is_cancelled()):
            return copy.copy(value)  # the flow's own state, apart from the run it came from
        unallowed = [r for r in self._records(failed=True) if not r.allowed]
        if unallowed:
            first = [(r.name, r.state) for r in unallowed if not r.state.is_trigger_failed()]
            after = [(r.name, r.state) for r in unallowed if r.state.is_trigger_failed()]
            cause = (first or after)[0][1]
            return Failed(failure_summary(first, after), exception=cause.exception)
        if problem is not None:
            return Failed(f"A returned future failed: {problem}", exception=problem)
        if returned_state:
            return copy.copy(value)
        ran = next(self._records(), None) is not None
        return Completed("All states completed." if ran else None, value)


def _reusable(entries: list) -> dict[str, tuple]:
    """key -> (node or subflow record, the state to reuse) of what completed in an
    attempt, result in hand."""
    out: dict[str, tuple] = {}
    for entry in entries:
        if entry.__class__ is TaskRunRecord:
            if entry.state is not None and entry.state.is_completed():
                out[entry.run.key] = (entry, entry.state)
        elif entry.state is not None:
            part = _completed_part(entry.state)
            if part is not None:
                out[entry.key] = (entry, part)
    return out


def _same_call(a: Node, b: Node) -> bool:
    """The same task called with equal arguments (the same runs feeding them)."""
    if a.mapped != b.mapped or a.task.name != b.task.name:
        return False
    if not _equal((a.constants, a.iterated), (b.constants, b.iterated)):
        return False
    feeds = [[(i.key, i.up.key) for i in n.inputs] for n in (a, b)]
    picks = [[f.node.key for f in n.call.picks] for n in (a, b)]
    return feeds[0] == feeds[1] and picks[0] == picks[1] and not a.call.structures


def _equal(a: Any, b: Any) -> bool:
    """Equal, as far as can be told (values that do not compare, like arrays, are not)."""
    try:
        return bool(a == b)
    except Exception:
        return False


def _completed_part(state: State) -> State | None:
    """What of a state a retry can reuse: a completed run whose result is still held;
    of a map, its children that are (the others show as Pending, to run again)."""
    if isinstance(state, MappedState):
        children = [c if _completed_part(c) is not None else Pending() for c in state.map_states]
        return MappedState(children) if any(c.is_completed() for c in children) else None
    if state.is_completed() and state._value.__class__ is not _Released:
        return state
    return None


def _wait_for_nodes(node: Node, futures: list[TaskFuture]) -> None:
    """`node` waits for the whole node of each future (once per upstream node)."""
    known = {inp.up for inp in node.inputs}
    for f in futures:
        if f.node not in known:
            known.add(f.node)
            _add_input(node, Input(None, f.node))


def _add_input(node: Node, inp: Input) -> None:
    if node.inputs:
        node.inputs.append(inp)
    else:
        node.inputs = [inp]


def _released(_) -> None:
    """An event that does nothing: handling it releases what dropped futures held."""


def _resolve_returned(value: Any) -> Any:
    """A returned future gives its value, also inside a returned list, tuple or dict."""
    if isinstance(value, TaskFuture | FutureList):
        return value.result()
    if isinstance(value, list | tuple) and any(isinstance(v, TaskFuture) for v in value):
        return type(value)(_resolve_returned(v) for v in value)
    if isinstance(value, dict) and any(isinstance(v, TaskFuture) for v in value.values()):
        return {k: _resolve_returned(v) for k, v in value.items()}
    return value


def _states_only(value: Any) -> bool:
    return (
        isinstance(value, list | tuple) and bool(value) and all(isinstance(v, State) for v in value)
    )


def _collected_state(states) -> State:
    """Returned states decide the flow: any failed fails it ("2/3 states failed."), then
    any cancelled cancels it; otherwise it completes with them as its value."""
    failed = [s for s in states if s.is_failed()]
    if failed:
        return Failed(
            f"{len(failed)}/{len(states)} states failed.",
            exception=failed[0].exception,
            result=states,
        )
    cancelled = [s for s in states if s.is_cancelled()]
    if cancelled:
        return Cancelled(f"{len(cancelled)}/{len(states)} states cancelled.")
    return Completed("All states completed.", states)


def _pop_option(task, kwargs: dict, name: str, default: Any) -> Any:
    """Take an orchestration keyword, unless the task's own function takes that name."""
    if name in kwargs and name not in task.signature.parameters:
        return kwargs.pop(name)
    return default


def _in_event_loop() -> bool:
    asyncio = sys.modules.get("asyncio")  # (not imported: no loop runs, and none is imported)
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# -- running a flow ---------------------------------------------------------------------------


def _start(flow, args: tuple, kwargs: dict, clock, wait_for, key) -> tuple:
    """Make and record the flow run. Returns it, its parameters and, when it must not
    run, the state it ends in: Failed for bad parameters; TriggerFailed when a run it
    waits for (a future among its arguments, or in `wait_for`) failed."""
    logs.configure()
    parent = _build.function_run.get()
    waited: list[TaskFuture] = []
    if parent is not None:  # futures among its arguments give their values, as for a task
        args, kwargs, waited = _resolved_arguments(args, kwargs, wait_for)
    early = None
    try:
        parameters = flow.bind_parameters(args, kwargs)
    except ParameterError as exc:
        parameters = {**{f"args[{i}]": v for i, v in enumerate(args)}, **kwargs}
        early = Failed(str(exc), exception=exc)
    run = FunctionRun(flow, parameters, parent, clock or flow.clock or SYSTEM_CLOCK, early is None)
    if run.log_prints:
        logs.enable_log_prints()
    run.key, run.called_with = key, (args, kwargs)
    if parent is not None:
        run.upstream = [*dict.fromkeys(f.unit_id for f in waited)]
        failed = [f.name for f in waited if f.state_now().is_failed()]
        if failed and early is None:
            message = f"Upstream {', '.join(map(repr, failed))} failed; the subflow did not run."
            early = TriggerFailed(message, exception=TriggerFailedError(message))
    flow_run_started(
        run.recorder, run.id, run.name, flow.name, "function", parameters,
        parent.id if parent else None, flow.executor, run.upstream,
        run.resume.run.id if run.resume else None,
        entry_point(flow, flow.fn.__module__) if parent is None else None,
    )  # fmt: skip
    if parent is None:
        logs.ENGINE.info(
            "Created flow run %r for flow %r", run.name, flow.name, extra={"flow_run_id": run.id}
        )
    else:
        parent.logger.info("Created subflow run %r for flow %r", run.name, flow.name)
    if early is not None and not early.is_trigger_failed():
        run.logger.error("%s", early.message)
    return run, parameters, early


def _resolved_arguments(args: tuple, kwargs: dict, wait_for) -> tuple[tuple, dict, list]:
    """A subflow's arguments with the futures in them waited for and replaced by their
    values (a failed one by its exception), and every future it waited for."""
    waited = [f for v in (*args, *kwargs.values()) for f in futures_in(v)]
    waited.extend(f for f in wait_for or () if isinstance(f, TaskFuture))
    for f in waited:
        f.wait()
    if waited:
        args = tuple(_resolve(v) for v in args)
        kwargs = {k: _resolve(v) for k, v in kwargs.items()}
    return args, kwargs, waited


def _enter(run: FunctionRun) -> tuple:
    return (
        _build.function_run.set(run),
        flow_run_var.set(run.ctx),
        logs.log_prints_var.set(run.log_prints),
        _build._current.set(_build._EMPTY),
    )


def _exit(tokens: tuple) -> None:
    run_token, ctx_token, prints_token, build_token = tokens
    _build._current.reset(build_token)
    logs.log_prints_var.reset(prints_token)
    flow_run_var.reset(ctx_token)
    _build.function_run.reset(run_token)


def _end(flow, run: FunctionRun, state: State, return_state: bool):
    state.flow_run_id, state.task_run_id = run.id, None  # the flow run's own, even when adopted
    run.logger.log(40 if state.is_failed() else 20, "Finished in state %s", logs.state_label(state))
    run.state = state
    flow_run_ended(run.recorder, run.id, state)
    parent = run.parent
    if parent is None:
        run.throttle.close()
        run.recorder.flush()
    else:
        run.allowed_by_parent = return_state
        with parent._lock:
            parent.entries.append(TaskRunRecord(None, None, run))
    flow.last_run = run
    return _returned(state, return_state)


def _returned(state: State, return_state: bool):
    return state if return_state else state.result()


def _subflow(flow, args: tuple, kwargs: dict) -> tuple[str | None, TaskRunRecord | None]:
    """A subflow's key in its parent's attempt, and the record of the subflow run the
    parent's failed attempt completed under that key with equal arguments (reused
    rather than run again)."""
    parent = _build.function_run.get()
    if parent is None:
        return None, None
    key = f"{flow.name}-{next(parent._subflows[flow.name])}"
    previous = parent._reusable.get(key, (None,))[0]
    if previous is not None and not _equal(previous.run.called_with, (args, kwargs)):
        previous = None
    if previous is not None:
        with parent._lock:
            parent.entries.append(previous)
    return key, previous


def _begin(flow, args, kwargs, return_state: bool, wait_for, clock) -> tuple:
    """(run, parameters) of a flow run about to run its body; or (None, what the call
    returns) for a reused subflow run, or a run ended before its body (`_start`)."""
    key, reused = _subflow(flow, args, kwargs)
    if reused is not None:
        return None, _returned(reused.state, return_state)
    run, parameters, early = _start(flow, args, kwargs, clock, wait_for, key)
    if early is not None:
        return None, _end(flow, run, early, return_state)
    return run, parameters


def run_function_flow(flow, args, kwargs, return_state: bool, wait_for=None, clock=None):
    """Run a sync @flow now; return its value (or State), retrying the body per `retries`."""
    run, parameters = _begin(flow, args, kwargs, return_state, wait_for, clock)
    if run is None:
        return parameters  # what the call gives: it ended before its body
    attempt = 1
    try:
        while True:
            tokens = _enter(run)
            try:
                value, state = flow.call_body(parameters), None
            except Exception as exc:
                state = _failed_body(run, flow, exc)
            finally:
                _exit(tokens)
            run.wait_for_submitted(timed_out=state is not None and state.is_timed_out())
            state = state or run.final_state(value)
            if not state.is_failed() or attempt > flow.retries:
                break
            run.logger.warning("Flow run attempt %d failed; retrying.", attempt)
            run.clock.sleep(flow.retry_delay_seconds(attempt))
            attempt += 1
            run.new_attempt()
    except KeyboardInterrupt:
        _interrupted(flow, run)
        raise
    return _end(flow, run, state, return_state)


async def run_function_flow_async(
    flow, args, kwargs, return_state: bool, wait_for=None, clock=None
):  # fmt: skip
    """Run an async @flow in the current event loop (also under Jupyter's)."""
    import asyncio

    run, parameters = _begin(flow, args, kwargs, return_state, wait_for, clock)
    if run is None:
        return parameters  # what the call gives: it ended before its body
    run.is_async = run.core.share_turn = True  # task calls come from several threads
    attempt = 1
    try:
        while True:
            tokens = _enter(run)
            try:
                body = flow.call_body(parameters, timeout=False)
                timed = body if flow.timeout is None else asyncio.wait_for(body, flow.timeout)
                value, state = await timed, None
            except Exception as exc:
                if isinstance(exc, asyncio.TimeoutError | TimeoutError) and flow.timeout:
                    state = TimedOut(f"Flow run exceeded its timeout of {flow.timeout:g} s.", exc)
                else:
                    state = _failed_body(run, flow, exc)
            finally:
                _exit(tokens)
            timed_out = state is not None and state.is_timed_out()
            await asyncio.to_thread(run.wait_for_submitted, timed_out)
            state = state or run.final_state(value)
            if not state.is_failed() or attempt > flow.retries:
                break
            run.logger.warning("Flow run attempt %d failed; retrying.", attempt)
            await asyncio.to_thread(run.clock.sleep, flow.retry_delay_seconds(attempt))
            attempt += 1
            run.new_attempt()
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C under asyncio.run cancels
        _interrupted(flow, run)
        raise
    return _end(flow, run, state, return_state)


def _interrupted(flow, run: FunctionRun) -> None:
    """Ctrl-C (or the cancelling of an async flow's task): nothing more starts, the run's
    end is recorded, then the executor is cancelled; so a second Ctrl-C, which may cut
    this short, cannot leave the run Running in the history."""
    run.core.post((run.core.stop, None))
    try:
        _end(flow, run, Cancelled(INTERRUPTED), True)
    finally:
        run.interrupted()


def awaited_in_sync_parent(coroutine):
    """An async subflow called from a sync flow's body runs there and gives its value (its
    own event loop; a thread of its own if this one runs a loop). Elsewhere the coroutine
    is returned to be awaited."""
    parent = _build.function_run.get()
    if parent is None or parent.is_async:
        return coroutine
    import asyncio

    if not _in_event_loop():
        return asyncio.run(coroutine)
    import concurrent.futures
    import contextvars

    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(context.run, asyncio.run, coroutine).result()


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
