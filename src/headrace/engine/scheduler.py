"""The scheduler: runs a graph flow as an event-driven ready-set loop.

Units of work
-------------
A *unit* is `(node, index)`: a whole node (`index` None) or child `index`
of a mapped node. Each node has a `NodeRun` holding its run state:

    waiting      prerequisites not yet met. A plain node waits for each
                 distinct upstream node to finish. A mapped node waits to
                 *expand*: for each whole upstream to finish and for each
                 element-wise upstream (a mapped node feeding it child by
                 child) to expand.
    state        the final State, once finished.
    children     child states of an expanded mapped node (None = not done).
    child_wait   per child, element-wise upstream children not yet done.
    holds        per result (one, or one per child), consumers not yet
                 started; at zero the result is released unless kept.

Events
------
`finish(unit, state)` records a state and wakes dependents:
    - a whole node finishing wakes its whole-mode dependents;
    - a mapped node expanding wakes its element-wise dependents;
    - child i finishing wakes child i of element-wise dependents, and the
      last child finishing finishes the node with a `Mapped` state.
A mapped node whose element-wise upstream finished without expanding
(it failed as a whole) is decided as a whole too.

Ready policy
------------
Ready units sit on a stack: the newest ready unit runs first, and a
mapped node's children are pushed so child 0 pops first. With
`executor.max_in_flight` bounding submitted units, child i's next step in
a chain of maps runs before new first steps start: depth-first, so
intermediate results are released early and memory stays flat.

Throttle: a unit whose tag is at its cap waits in that tag's queue and is
pushed back when a unit holding the tag finishes. A unit with several
capped tags takes a slot of each.

Retries: a run that returns Retrying frees its throttle slots and waits
in a timer heap on the run's clock; the loop resubmits it when due, with
the same inputs. No worker is held while a retry waits.

Results are released once their last consumer has started, except for
terminal tasks, `return_tasks` and parameters. States are never released.
States reused from `task_states` are never changed.

Every produced final state goes through `_after`: the task's hooks, the
failure's traceback in the log, and a row of run history (put on the
store's queue, never waited for). Map sizes and finished children feed the
progress display.

No polling and no sleeps: the loop blocks on a queue fed by future
callbacks, or on the clock until the next retry is due.
"""

from __future__ import annotations

import copy
import heapq
import queue
import time
from collections.abc import Iterable
from typing import Any

from headrace.edges import flatten_once, flatten_origins
from headrace.engine import logs, progress
from headrace.engine.clock import SYSTEM_CLOCK
from headrace.engine.context import FlowRunContext
from headrace.engine.names import new_run_id, slug
from headrace.engine.recorder import flow_run_ended, flow_run_started, task_run_done, task_state
from headrace.engine.task_run import TaskSpec, after_run, decide_before_run, outcome, run_task
from headrace.engine.throttle import Throttle
from headrace.errors import MappingError, ParameterError, ResultReleasedError
from headrace.states import (
    Completed,
    Crashed,
    Failed,
    FlowState,
    MappedState,
    NotRun,
    RemoteValue,
    State,
    StateType,
    _Released,
    failure_summary,
)
from headrace.store import get_store
from headrace.tasks import check_lengths, check_mappable

WHOLE, ELEMENT = 0, 1


class NodeRun:
    """The run state of one node (see the module docstring)."""

    __slots__ = (
        "node",
        "name",
        "spec",
        "mapped",
        "keep",
        "start",
        "ups",
        "downs",
        "waiting",
        "state",
        "reused",
        "preset",
        "children",
        "child_wait",
        "remaining",
        "started",
        "holds",
        "sequences",
        "unexpandable",
        "sources",
        "given_children",
        "run_id",
    )

    def __init__(self, node):
        self.node = node
        self.name = node.name
        self.spec = None
        self.mapped = node.mapped
        self.keep = False
        self.start = False
        self.ups: list[tuple[NodeRun, int]] = []  # distinct upstream runs and their mode
        self.downs: list[tuple[NodeRun, int]] = []
        self.waiting = 0
        self.state: State | None = None
        self.reused = False
        self.preset = False
        self.children: list | None = None
        self.child_wait: list[int] | None = None
        self.remaining = 0
        self.started = 0
        self.holds: Any = 0
        self.sequences: dict | None = None
        self.unexpandable: NodeRun | None = None
        self.sources: dict[NodeRun, list[State]] = {}
        self.given_children: list[State] | None = None
        self.run_id = ""

    def __repr__(self) -> str:
        return f"<NodeRun {self.name}>"


def _value_of(state: State, name: str) -> Any:
    """The value a downstream receives from a finished upstream state."""
    if isinstance(state, MappedState):
        return [_value_of(s, name) for s in state.map_states]
    if state.type is StateType.FAILED or state.type is StateType.CRASHED:
        return state.exception
    value = state._value
    if value.__class__ is _Released:
        raise ResultReleasedError(value.task_name)
    return value


def _local(value: Any) -> Any:
    """A value the scheduler itself must read (to map over it): fetch remote parts."""
    if isinstance(value, RemoteValue):
        return value.fetch()
    if isinstance(value, list) and any(isinstance(v, RemoteValue) for v in value):
        return [v.fetch() if isinstance(v, RemoteValue) else v for v in value]
    return value


class FlowRunner:
    """One run of one flow. Create, then call `run()` once."""

    def __init__(
        self,
        flow,
        parameters: dict[str, Any],
        executor,
        throttle: Throttle,
        task_states: dict,
        start_tasks: list,
        return_tasks: list,
        clock,
        store,
    ):
        self.flow = flow
        self.executor = executor
        self.clock = clock
        self.throttle = throttle
        self.ready: list[tuple[NodeRun, int | None]] = []
        self.running = 0
        self.unfinished = 0
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.timers: list = []  # (due, seq, unit) of runs waiting to retry
        self._seq = 0
        self.flow_ctx = FlowRunContext(
            flow_run_id=new_run_id(),
            flow_run_name=slug(),
            flow_name=flow.name,
            parameters=parameters,
        )
        self.store = store
        self.progress = None
        if progress.enabled():
            logger = logs.flow_logger(self.flow_ctx.flow_run_name, self.flow_ctx.flow_run_id)
            self.progress = progress.Progress(logger)
        self.runs: dict[Any, NodeRun] = {t: NodeRun(t) for t in flow.sorted_tasks()}
        for k, nr in enumerate(self.runs.values()):
            nr.run_id = f"{self.flow_ctx.flow_run_id}-{k}"
        self._link(parameters, task_states, start_tasks, return_tasks)

    # -- setting up ---------------------------------------------------------
    def _link(self, parameters, task_states, start_tasks, return_tasks) -> None:
        from headrace.parameters import Parameter

        flow = self.flow
        keep = set(flow.terminal_tasks()) | set(return_tasks)
        for node, nr in self.runs.items():
            nr.keep = node in keep or isinstance(node, Parameter)
            modes: dict[NodeRun, int] = {}
            for e in flow._in[node]:
                up = self.runs[e.upstream]
                element = node.mapped and e.mapped and not e.flat and e.upstream.mapped
                mode = ELEMENT if element else WHOLE
                modes[up] = min(modes.get(up, mode), mode)
            nr.ups = list(modes.items())
            for up, mode in nr.ups:
                up.downs.append((nr, mode))
        for nr in self.runs.values():
            nr.holds = len(nr.downs)
            if not nr.mapped:
                nr.spec = TaskSpec(nr.node)

        starts = set(start_tasks)
        runnable = self._runnable(starts) if starts else None
        self.unfinished = len(self.runs)
        for node, nr in self.runs.items():
            nr.waiting = len(nr.ups)
            nr.start = node in starts and not isinstance(node, Parameter)
        # States known before anything runs. All are chosen before any is applied,
        # so applying one never wakes a node that is about to get its own.
        preset: dict[NodeRun, State] = {}
        for node, nr in self.runs.items():
            if isinstance(node, Parameter):
                preset[nr] = Completed("Parameter resolved.", parameters[node.name])
                continue
            given = None if runnable and node in runnable else task_states.get(node)
            if isinstance(given, MappedState) and not all(
                child.is_finished() for child in given.map_states
            ):
                nr.given_children = given.map_states  # reused child by child on expansion
            elif given is not None and given.is_finished():
                nr.reused = True
                if isinstance(given, MappedState):
                    nr.children = list(given.map_states)
                preset[nr] = given
            elif runnable is not None and node not in runnable:
                preset[nr] = NotRun("Not run: it is above the run's start_tasks.")
        for nr in preset:
            nr.preset = True
        for nr, state in preset.items():
            self.finish(nr, None, state)
        for nr in self.runs.values():
            if nr.state is None and not nr.ups:  # the rest wake as their upstreams finish
                self._wake(nr)

    def _runnable(self, starts: set) -> set:
        """What a run with `start_tasks` runs: the start tasks and everything
        downstream of them, except what a parameter alone leads to above a
        start task.

        Seed 000 starts at `[bypass, episodes, url]` to skip the home page,
        which is below the `url` parameter but feeds `episodes`; its
        `create_db(db_file)`, below the `db_file` parameter, runs.
        """
        from headrace.parameters import Parameter

        flow = self.flow
        tasks = {t for t in starts if not isinstance(t, Parameter)}
        above = _closure(tasks, flow.upstream_tasks) - tasks
        below = _closure(starts, flow.downstream_tasks)
        return _closure(tasks, flow.downstream_tasks) | (below - above)

    # -- the loop -------------------------------------------------------------
    def run(self) -> FlowState:
        executor = self.executor
        inline = executor.inline
        limit = max(1, executor.max_in_flight)
        ready = self.ready
        timers = self.timers
        clock = self.clock
        while self.unfinished:
            while ready and self.running < limit:
                nr, index = ready.pop()
                if nr.state is not None:  # decided as a whole meanwhile
                    continue
                if self.throttle and not self._take_slots(nr, ("ready", (nr, index))):
                    continue
                spec, arguments = self._prepare(nr, index)
                if spec is not None:
                    self._submit(nr, index, spec, arguments, 1, (1, None), time.time())
                    if inline:
                        self._handle(self.events.get())
            if not self.unfinished:
                break
            if timers and timers[0][0] <= clock.monotonic():
                self._resubmit_due()
                continue
            if self.running == 0 and not timers and not ready:
                stuck = [nr.name for nr in self.runs.values() if nr.state is None]
                raise RuntimeError(f"scheduler stalled with unfinished tasks: {stuck[:10]}")
            if ready and self.running < limit:
                continue
            seconds = timers[0][0] - clock.monotonic() if timers else None
            event = clock.wait(self.events, seconds, busy=self.running > 0)
            if event is not None:
                self._handle(event)
        return self._flow_state()

    def _submit(self, nr, index, spec, arguments, run_count: int, loop: tuple, start) -> None:
        run_name = nr.name if index is None else f"{nr.name}[{index}]"
        run_id = self._run_id(nr, index)
        args = (spec, arguments, run_name, index, self.flow_ctx, run_count, loop, run_id)
        unit = (nr, index, spec, arguments, run_count, loop, start)
        self.running += 1
        if self.executor.inline:
            # Same code path as a pool, minus the future: the call runs right here.
            self.events.put((unit, run_task(*args), None))
            return
        future = self.executor.submit(run_task, *args)
        future.add_done_callback(lambda f, unit=unit: self.events.put((unit, None, f)))

    def _handle(self, event) -> None:
        unit, state, future = event
        nr, index, spec, arguments, run_count, loop, start = unit
        self.running -= 1
        if future is not None:
            state = outcome(future, run_count, spec.retries)
        if self.throttle:
            self._free_slots(nr)
        if state.is_retrying():  # resume from the attempt and the loop pass that failed
            unit = (*unit[:4], state.run_count, state.loop or loop, start)
            task_state(self.store, self._run_id(nr, index), self.flow_ctx.flow_run_id, state)
            due = self.clock.monotonic() + spec.retry_delay(state.run_count)
            self._seq += 1
            heapq.heappush(self.timers, (due, self._seq, unit))
            return
        self._after(nr, index, state, start, run_count)
        self.finish(nr, index, state)

    def _resubmit_due(self) -> None:
        """Retries whose delay has passed go back to their executor (throttle permitting)."""
        now = self.clock.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, unit = heapq.heappop(self.timers)
            nr, index, spec, arguments, run_count, loop, start = unit
            if self.throttle and not self._take_slots(nr, ("retry", unit)):
                continue
            self._submit(nr, index, spec, arguments, run_count + 1, loop, start)

    # -- preparing a unit ------------------------------------------------------
    def _prepare(self, nr: NodeRun, index: int | None):
        """Decide without running, or return (spec, arguments) to run."""
        if index is not None and nr.sources:  # a flattened upstream: the item's own child
            sources = nr.sources
            upstream = [
                (up.name, up.children[index] if mode == ELEMENT else sources[up][index])
                if mode == ELEMENT or up in sources
                else (up.name, up.state)
                for up, mode in nr.ups
            ]
        else:
            upstream = [
                (up.name, up.children[index] if mode == ELEMENT else up.state)
                for up, mode in nr.ups
            ]
        decided = decide_before_run(nr.node, upstream, check_trigger=not nr.start)
        arguments = None
        if decided is None:
            try:
                arguments = self._arguments(nr, index)
            except ResultReleasedError as exc:
                decided = Failed(str(exc), exception=exc)
        self._started(nr, index)
        if decided is not None:
            if self.throttle:
                self._free_slots(nr)
            self._after(nr, index, decided)
            self.finish(nr, index, decided)
            return None, None
        return nr.spec, arguments

    def _arguments(self, nr: NodeRun, index: int | None) -> dict[str, Any]:
        node = nr.node
        arguments = dict(node.constants)
        if index is not None:
            for key, seq in nr.sequences.items():
                arguments[key] = seq[index]
        for e in self.flow._in[node]:
            if e.key is None or (index is not None and e.key in nr.sequences):
                continue
            up = self.runs[e.upstream]
            if index is not None and e.mapped and not e.flat and e.upstream.mapped:
                arguments[e.key] = _value_of(up.children[index], up.name)
            else:
                value = _value_of(up.state, up.name)
                arguments[e.key] = (
                    flatten_once(_local(value), up.name, self._warn) if e.flat else value
                )
        return arguments

    # -- expansion of mapped nodes ------------------------------------------------
    def _wake(self, nr: NodeRun) -> None:
        """All prerequisites met: a plain node is ready; a mapped node expands."""
        if not nr.mapped:
            self.ready.append((nr, None))
            return
        upstream = [(up.name, up.state) for up, mode in nr.ups if up.state is not None]
        whole = [(up.name, up.state) for up, mode in nr.ups if mode == WHOLE]
        # A skipped whole upstream (an untaken `case`) skips the map as a whole.
        failure = decide_before_run(nr.node, whole, check_trigger=False)
        if failure is None and nr.unexpandable is not None:
            failure = decide_before_run(nr.node, upstream, check_trigger=not nr.start)
            failure = failure or Failed(
                f"Cannot map over {nr.unexpandable.name!r}: it finished as "
                f"{nr.unexpandable.state.name} without mapped results."
            )
        elif failure is None:
            try:
                sequences, length = self._sequences(nr)
            except (MappingError, ResultReleasedError) as exc:
                failure = decide_before_run(nr.node, upstream, check_trigger=not nr.start)
                failure = failure or Failed(str(exc), exception=exc)
        if failure is not None:
            self._started(nr, None)
            self._after(nr, None, failure)
            self.finish(nr, None, failure)
            return
        nr.sequences = sequences
        nr.spec = TaskSpec(nr.node)
        nr.children = [None] * length
        nr.remaining = length
        nr.holds = [len(nr.downs)] * length
        elements = [up for up, mode in nr.ups if mode == ELEMENT]
        nr.child_wait = [sum(1 for up in elements if up.children[i] is None) for i in range(length)]
        if self.progress is not None:
            self.progress.expanded(nr, nr.name, length)
        if nr.given_children is not None and len(nr.given_children) == length:
            self._reuse_children(nr, nr.given_children)
        for down, mode in nr.downs:
            if mode == ELEMENT:
                self._prerequisite_met(down)
        if length == 0:
            self._started(nr, None)
            self.finish(nr, None, MappedState([]))
            self._record_whole(nr)
            return
        children = nr.children
        self.ready.extend(
            (nr, i)
            for i in range(length - 1, -1, -1)
            if nr.child_wait[i] == 0 and children[i] is None
        )

    def _reuse_children(self, nr: NodeRun, given: list[State]) -> None:
        """Take the finished children of a given, partly finished Mapped state; the
        others run. Copies, so that releasing their results leaves the caller's alone."""
        for i, child in enumerate(given):
            if child.is_finished():
                nr.children[i] = copy.copy(child)
                nr.remaining -= 1
                self._started(nr, i)
                if self.progress is not None:
                    self.progress.child_done(nr, child.is_failed())

    def _sequences(self, nr: NodeRun) -> tuple[dict, int]:
        """The mapped inputs of `nr` as indexable sequences, and their common length."""
        node = nr.node
        lengths: dict[str | None, Any] = {k: node.constants[k] for k in node.mapped_constants}
        sequences = dict(lengths)
        for e in self.flow._in[node]:
            if not e.mapped:
                continue
            up = self.runs[e.upstream]
            if e.upstream.mapped and not e.flat:
                lengths[e.key or f"upstream {up.name!r}"] = up.children
                continue
            value = _local(_value_of(up.state, up.name))
            if e.flat and isinstance(up.state, MappedState):
                # Each item keeps the child it came from: a failed or skipped child
                # decides only the items it gave.
                value, origins = flatten_origins(value, up.name, self._warn)
                children = up.state.map_states
                nr.sources[up] = [children[i] for i in origins]
            elif e.flat:
                value = flatten_once(value, up.name, self._warn)
            seq = check_mappable(value, e.key, node.name)
            if e.key is not None:
                sequences[e.key] = seq
            lengths[e.key or f"upstream {up.name!r}"] = seq
        return sequences, check_lengths(lengths, node.name)

    def _prerequisite_met(self, nr: NodeRun) -> None:
        nr.waiting -= 1
        if nr.waiting == 0 and nr.state is None and not nr.preset:
            self._wake(nr)

    # -- finishing -----------------------------------------------------------------
    def finish(self, nr: NodeRun, index: int | None, state: State) -> None:
        if index is None:
            nr.state = state
            self.unfinished -= 1
            expanded = nr.children is not None
            for down, mode in nr.downs:
                if mode == WHOLE or (nr.reused and expanded):
                    # A reused Mapped state brings its expansion and its children at once.
                    self._prerequisite_met(down)
                elif not expanded:
                    # An element-wise upstream that will never expand: decide as a whole.
                    down.unexpandable = down.unexpandable or nr
                    self._prerequisite_met(down)
            return
        nr.children[index] = state
        if self.progress is not None:
            self.progress.child_done(nr, state.is_failed())
        for down, mode in nr.downs:
            if mode == ELEMENT and down.child_wait is not None and down.state is None:
                down.child_wait[index] -= 1
                if down.child_wait[index] == 0 and down.children[index] is None:
                    self.ready.append((down, index))
        nr.remaining -= 1
        if nr.remaining == 0:
            nr.state = MappedState(nr.children)
            self._record_whole(nr)
            self.unfinished -= 1
            for down, mode in nr.downs:
                if mode == WHOLE:
                    self._prerequisite_met(down)

    def _started(self, nr: NodeRun, index: int | None) -> None:
        """`nr` (or its child) has taken its inputs: drop holds on upstream results."""
        if index is not None:
            nr.started += 1
        whole_started = index is None or nr.started == len(nr.children)
        for up, mode in nr.ups:
            if up.reused or up.state is not None and up.state.name == "NotRun":
                continue
            if mode == ELEMENT and index is not None:
                self._release(up, index)
            elif whole_started:
                if up.children is None:
                    self._release(up, None)
                else:
                    for i in range(len(up.children)):
                        self._release(up, i)

    def _release(self, up: NodeRun, index: int | None) -> None:
        if index is None:
            up.holds -= 1
            if up.holds == 0 and not up.keep and up.state is not None:
                _drop(up.state, up.name)
        else:
            up.holds[index] -= 1
            child = up.children[index]
            if up.holds[index] == 0 and not up.keep and child is not None:
                _drop(child, f"{up.name}[{index}]")

    # -- throttling ------------------------------------------------------------------
    def _take_slots(self, nr: NodeRun, entry: tuple) -> bool:
        """Take `nr`'s throttle slots, or park `entry` until one frees.

        `entry` is ("ready", unit) for a unit not yet prepared, or ("retry", unit)
        for a retry whose inputs are already bound.
        """
        return self.throttle.take(nr.node.tags, entry)

    def _free_slots(self, nr: NodeRun) -> None:
        for kind, unit in self.throttle.release(nr.node.tags):
            if kind == "ready":
                self.ready.append(unit)
            else:  # due at once: the next loop turn resubmits it
                self._seq += 1
                heapq.heappush(self.timers, (float("-inf"), self._seq, unit))

    # -- hooks and the flow's state -----------------------------------------------------
    def _record_whole(self, nr: NodeRun) -> None:
        """The record of a mapped task as a whole (its children have their own)."""
        nr.state.task_run_id, nr.state.flow_run_id = nr.run_id, self.flow_ctx.flow_run_id
        if not self.store.recording:
            return
        upstream = [up.run_id for up, _ in nr.ups if not up.preset]
        task_run_done(
            self.store, nr.run_id, self.flow_ctx.flow_run_id, nr.name, nr.name, nr.node.slug,
            None, None, upstream, nr.node.tags, nr.state, None, 1,
        )  # fmt: skip

    def _warn(self, message: str) -> None:
        logs.flow_logger(self.flow_ctx.flow_run_name, self.flow_ctx.flow_run_id).warning(message)

    def _run_id(self, nr: NodeRun, index: int | None) -> str:
        return nr.run_id if index is None else f"{nr.run_id}.{index}"

    def _after(self, nr: NodeRun, index, state: State, start=None, run_count: int = 1) -> None:
        """A unit's final state: log, hooks, and its record in the run history."""
        run_name = nr.name if index is None else f"{nr.name}[{index}]"
        run_id = self._run_id(nr, index)
        state.task_run_id, state.flow_run_id = run_id, self.flow_ctx.flow_run_id
        after_run(nr.node, state, run_name, run_id, self.flow_ctx.flow_run_id)
        if not self.store.recording:
            return
        upstream = [
            up.run_id if mode == WHOLE or index is None else f"{up.run_id}.{index}"
            for up, mode in nr.ups
            if not up.preset
        ]
        task_run_done(
            self.store, run_id, self.flow_ctx.flow_run_id, nr.name, run_name, nr.node.slug,
            index, nr.run_id if index is not None else None, upstream, nr.node.tags, state,
            start or time.time(), run_count,
        )  # fmt: skip

    def kept_states(self) -> list[State]:
        """The states whose results the caller keeps (terminal, return_tasks, parameters)."""
        kept = []
        for nr in self.runs.values():
            if nr.keep and not nr.reused and nr.state is not None:
                kept.extend(
                    nr.state.map_states if isinstance(nr.state, MappedState) else [nr.state]
                )
        return kept

    def _flow_state(self) -> FlowState:
        """Failed when a reference task failed, its message naming what failed first."""
        task_states = {node: nr.state for node, nr in self.runs.items()}
        failed = [t for t in self.flow.reference_tasks() if task_states[t].is_failed()]
        if not failed:
            return FlowState(
                StateType.COMPLETED, "All reference tasks succeeded.", task_states, name="Completed"
            )
        first = list(self._failed_first())
        covered = {node for node, _, _ in first}
        downstream = [(t.name, task_states[t]) for t in failed if t not in covered]
        message = failure_summary([(name, s) for _, name, s in first], downstream)
        state = FlowState(StateType.FAILED, message, task_states, name="Failed")
        state.exception = (first[0][2] if first else task_states[failed[0]]).exception
        return state

    def _failed_first(self) -> Iterable[tuple[Any, str, State]]:
        """(node, run name, state) of each task run that failed by running, not for its
        upstream, in graph order."""
        for node, nr in self.runs.items():
            if isinstance(nr.state, MappedState):
                runs = [(f"{nr.name}[{i}]", s) for i, s in enumerate(nr.state.map_states)]
            else:
                runs = [(nr.name, nr.state)]
            for name, state in runs:
                if state.is_failed() and not state.is_trigger_failed():
                    yield node, name, state


def _closure(starts: Iterable, neighbours) -> set:
    """`starts` and every node reached from them through `neighbours(node)`."""
    seen = set(starts)
    stack = list(seen)
    while stack:
        for n in neighbours(stack.pop()):
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return seen


def _drop(state: State, name: str) -> None:
    if isinstance(state, MappedState):
        return
    if state._value is not None:
        state._value = _Released(name)


def check_parameters(flow, parameters: dict[str, Any] | None) -> dict[str, Any]:
    """Every parameter's value, or a ParameterError naming what is unknown or missing."""
    given = dict(parameters or {})
    declared = {p.name: p for p in flow.parameters()}
    unknown = sorted(set(given) - set(declared))
    missing = sorted(n for n, p in declared.items() if p.required and n not in given)
    problems = []
    if unknown:
        problems.append(f"unknown parameter(s) {', '.join(map(repr, unknown))}")
    if missing:
        problems.append(f"missing required parameter(s) {', '.join(map(repr, missing))}")
    if problems:
        known = ", ".join(repr(n) for n in declared) or "none"
        raise ParameterError(
            f"Flow {flow.name!r} cannot run: {'; '.join(problems)}. Its parameters are: {known}."
        )
    return {n: given.get(n, p.default) for n, p in declared.items()}


def run_flow(
    flow,
    parameters=None,
    executor=None,
    throttle=None,
    task_states=None,
    start_tasks=None,
    return_tasks=None,
    clock=None,
) -> FlowState:
    """Run a graph flow (see `Flow.run` for the keywords) and return its FlowState."""
    from headrace.executors import LocalExecutor

    values = check_parameters(flow, parameters)
    throttle = Throttle(throttle)
    start_tasks = list(start_tasks or ())
    return_tasks = list(return_tasks or ())
    for what, tasks in (("start_tasks", start_tasks), ("return_tasks", return_tasks)):
        for t in tasks:
            if t not in flow:
                raise ValueError(
                    f"{what} names {t!r}, which is not a task of flow {flow.name!r}; "
                    "use the tasks returned by calls inside `with Flow(...)`."
                )
    executor = executor or LocalExecutor()
    executor.validate(flow)
    store = get_store()
    runner = FlowRunner(
        flow,
        values,
        executor,
        throttle,
        dict(task_states or {}),
        start_tasks,
        return_tasks,
        clock or SYSTEM_CLOCK,
        store,
    )
    logs.configure()
    ctx = runner.flow_ctx
    flow_run_started(
        store, ctx.flow_run_id, ctx.flow_run_name, flow.name, "graph", values, None, executor
    )
    logs.ENGINE.info(
        "Created flow run %r for flow %r",
        ctx.flow_run_name,
        flow.name,
        extra={"flow_run_id": ctx.flow_run_id},
    )
    owned = not executor.started
    if owned:
        executor.start()
    state = None
    try:
        state = runner.run()
        executor.localize(runner.kept_states())
    finally:
        if runner.progress is not None:
            runner.progress.close()
        if owned:
            executor.shutdown()
        if state is None:  # interrupted: the run did not finish
            state = Crashed("The flow run was interrupted before it finished.")
        state.flow_run_id = ctx.flow_run_id
        # The last line first: whoever follows the log stops reading at the run's end.
        logs.flow_logger(ctx.flow_run_name, ctx.flow_run_id).log(
            40 if state.is_failed() else 20, "Finished in state %s", logs.state_label(state)
        )
        flow_run_ended(store, ctx.flow_run_id, state)
        store.flush()
    return state


__all__ = ["run_flow", "check_parameters", "FlowRunner"]
