"""A plain map's children, run in batches: on the core's thread (inline executors),
or handed to a pool's worker as one call (executors that take `batches`).

Through the general path each child of a map costs an `Attempt`, an event, a
`State`, a `TaskRun` record and its row, about 15 µs for a trivial task. Most
maps' children run alike: same function, same upstream states, only their
item differs. For such a map (`plan`) the core hands this module up to
`CHILDREN` children of its ready span at once (`run`); for each it binds the
item, sets the child's run context, calls, and keeps the result's bytes
straight in the map's `ChildStates`. Their history is one `ChildRuns` record
per batch (`Core.child_record`), which the store's writer turns into rows (in
its own process once a run is busy).

On a pool (`send`) the core binds the children's items, the worker calls them
in order (`run_children`: the same steps, up to the bytes) and the core takes
the outcomes in one event (`sent_ran`). Only for a task the executor knows to
be short (`Executor.batch_size`): a slow or not yet timed task's children go
one per run, so an I/O-bound map keeps every thread busy. A batch counts as
one running unit holding one in-flight slot per child.

A child whose outcome is anything else (an exception, a signal, a retry, a
result too big to keep inline or not persisted) leaves the fast lane where it
stands: its state goes through `Core.handle`, exactly as a submitted
attempt's does. What a batch does not change: children run in index order,
each under its own `TaskRunContext`; on the core's thread, every finished
child wakes what waited for it before the next one runs (a pool's batch wakes
them as it comes back). An interrupt keeps every child that ran: an inline
batch stops at the child it landed in; a pool's batch already run is taken
whole, and one not started stays unrun.

A map qualifies when nothing about a child is decided child by child: no
target, cache, timeout or trigger of its own, not async, no on_completion
hook, no tag that is capped or limited in the store, no element-wise or
flattened input, and its upstream states let it run (decided once, for all
of its children).
"""

from __future__ import annotations

import time

from headrace.engine import logs
from headrace.engine.context import TaskRunContext, flow_run_var, task_run_var
from headrace.engine.nodes import ELEMENT, Attempt, Node
from headrace.engine.task_run import (
    _attempt,
    _persisted,
    call_function,
    decide_before_run,
    outcome,
    state_after_raise,
)
from headrace.errors import ResultReleasedError
from headrace.results.persist import INLINE_BYTES, PICKLE
from headrace.states import SUCCEEDED, ChildStates, Completed

CHILDREN = 512  # children a batch runs before the core's loop looks around again
CHAINED = 1  # when element-wise consumers wait: each child's run next (depth-first)


class Plan:
    """What every child of one map shares: how to bind, call, persist and record it."""

    __slots__ = (
        "spec", "serializer", "dumps", "persist", "call", "base", "sequences", "name", "parent",
    )  # fmt: skip

    def __init__(self, node: Node, flow_ctx, shared: bool):
        spec = node.spec
        self.spec = spec
        self.serializer = spec.serializer or PICKLE
        self.dumps = self.serializer.dumps
        self.persist = spec.persist is True or (spec.persist is None and flow_ctx.persist_result)
        self.call = node.call
        self.base = None if shared else False  # False: each child's arguments made anew
        self.sequences = list(node.sequences.items())
        self.name, self.parent = node.name, node.run_id


def plan(core, node: Node) -> Plan | None:
    """The batch plan of a mapped node whose children are all ready, or None when its
    children must go one by one (see the module's docstring)."""
    task, spec, call = node.task, node.spec, node.call
    if (
        node.keep
        or node.children.__class__ is not ChildStates
        or node.sources
        or spec.target is not None
        or spec.cache is not None
        or spec.timeout is not None
        or spec.is_async
        or task.trigger is not None
        or task.on_completion
        or (core.throttle and core.throttle.limits(task.tags))
        or (call is not None and (call.picks or call.per_child or call.states or call.structures))
        or any(inp.element_wise for inp in node.inputs)
    ):
        return None
    if decide_before_run(task, core._upstream_states(node, 0), check_trigger=not node.start):
        return None  # decided without running: the general path records each child so
    # An input passed whole from a map (or flattened) is a list made per child: not shared.
    shared = not any(
        inp.key is not None and inp.key not in node.sequences and (inp.up.mapped or inp.flat)
        for inp in node.inputs
    )
    return Plan(node, core.flow_ctx, shared)


def arguments(core, node: Node, plan: Plan, index: int) -> dict:
    """Child `index`'s arguments: what the children share, bound once, and its items.
    Raises ResultReleasedError as `Core._arguments` does."""
    base = plan.base
    if base is False:
        return core._arguments(node, index)
    if base is None:
        base = plan.base = core._arguments(node, index)
    bound = dict(base)
    for key, seq in plan.sequences:
        bound[key] = seq[index]
    return bound


def run(core, node: Node, plan: Plan, span) -> bool:
    """Run the next children of `span` (the top of the ready stack) in order; False,
    taking none, when an input they share is gone (each child then fails alone)."""
    try:
        arguments(core, node, plan, span.next)
    except ResultReleasedError:
        return False
    chained = any(mode == ELEMENT for _, mode in node.downs)
    indices = core.ready.take(span, CHAINED if chained else CHILDREN)
    flow_ctx, keep_bytes = core.flow_ctx, _keep_bytes(core, node, plan)
    recording = core.recorder.recording
    core.running += 1  # the batch is running: a task that calls a task finds the loop busy
    tokens = _enter(flow_ctx)
    try:
        for i in indices:
            bound = arguments(core, node, plan, i)
            ran = _run_child(plan, flow_ctx, i, bound, keep_bytes)
            _child_ran(core, node, plan, i, bound, ran, recording)
    finally:
        _leave(tokens)
        core.running -= 1
        node.started += len(indices) - 1  # the batch's children took their inputs
        core._started(node, indices[-1])
        core.flush_child_record(node)  # (after Ctrl-C too: those children finished)
    return True


def send(core, node: Node, plan: Plan, span) -> bool:
    """Hand the executor the next children of `span` as one call when it knows the
    task's runs are short (`Executor.batch_size`): they run in order on a worker
    (`run_children`) and come back together (`sent_ran`). False, taking none, when
    they go one by one, or an input they share is gone."""
    size = core.executor.batch_size(plan.spec)
    if not size:
        return False
    size = min(size, core.limit - core.in_flight)  # (at least one: the loop's bound)
    try:
        first = arguments(core, node, plan, span.next)
    except ResultReleasedError:
        return False
    indices = core.ready.take(span, size)
    bounds = [first, *(arguments(core, node, plan, i) for i in indices[1:])]
    keep_bytes = _keep_bytes(core, node, plan)
    core.running += 1  # one call on the executor, holding len(indices) of its slots
    core.in_flight += len(indices)
    node.started += len(indices) - 1  # the children took their inputs
    core._started(node, indices[-1])
    future = core.executor.submit_runs(
        len(indices), run_children, plan.spec, plan, core.flow_ctx, indices, bounds, keep_bytes
    )
    sent = (core, node, plan, indices, bounds)
    future.add_done_callback(lambda future: core.post((sent_ran, (sent, future))))
    return True


def run_children(spec, plan: Plan, flow_ctx, indices, bounds: list, keep_bytes: bool) -> list:
    """On a worker: run children `indices` with their `bounds` in order (see `send`).
    `spec` is `plan.spec`, first for the executor to tell the task's runs by."""
    tokens = _enter(flow_ctx)
    try:
        return [
            _run_child(plan, flow_ctx, i, bound, keep_bytes) for i, bound in zip(indices, bounds)
        ]
    finally:
        _leave(tokens)


def sent_ran(event: tuple) -> None:
    """In the core's loop: the children `send` handed over have run (or the executor
    failed them all, as `outcome` says for one run)."""
    (core, node, plan, indices, bounds), future = event
    core.running -= 1
    core.in_flight -= len(indices)
    if future.cancelled() and core.stopped:  # an interrupt: they never ran, so stay unrun
        return
    try:
        ran = future.result()
    except Exception:  # the executor failed, not the tasks
        for i, bound in zip(indices, bounds):
            core.running += 1
            core.in_flight += 1
            state = outcome(future, 1, plan.spec.retries)
            core.handle((Attempt(node, i, bound, time.time()), state, None))
        return
    recording = core.recorder.recording
    rest = zip(indices, bounds, ran)
    try:
        for i, bound, child in rest:
            _child_ran(core, node, plan, i, bound, child, recording)
    finally:  # (none left unless Ctrl-C landed above: the children that ran are kept)
        for i, bound, child in rest:
            _child_ran(core, node, plan, i, bound, child, recording)
    if core.stopped:  # ran on after an interrupt: what finished is recorded all the same
        core.flush_child_record(node)


def _keep_bytes(core, node: Node, plan: Plan) -> bool:
    """Whether children's results are kept as bytes in the map's `ChildStates`."""
    children = node.children
    keep = plan.persist and children.serializer in (None, plan.serializer)
    if keep:
        children.serializer, children.flow_run_id = plan.serializer, core.flow_ctx.flow_run_id
    return keep


def _enter(flow_ctx) -> tuple:
    """Set the flow run's context (and log_prints) for children run on this thread."""
    prints_token = None
    if flow_ctx.log_prints:
        logs.enable_log_prints()
        prints_token = logs.log_prints_var.set(True)
    return flow_run_var.set(flow_ctx), prints_token


def _leave(tokens: tuple) -> None:
    flow_token, prints_token = tokens
    if prints_token is not None:
        prints_token.var.reset(prints_token)
    flow_run_var.reset(flow_token)


def _run_child(plan: Plan, flow_ctx, i: int, bound: dict, keep_bytes: bool) -> tuple:
    """Run child `i` under its own context: `(start, end, None, value, blob)` for a
    result to keep inline, else `(start, None, state, None, None)`."""
    spec = plan.spec
    run_id = f"{plan.parent}.{i}"
    ctx = TaskRunContext(spec.name, f"{plan.name}[{i}]", i, spec.tags, run_id)
    token = task_run_var.set(ctx)
    start = time.time()
    state = None
    try:
        value = call_function(spec, bound)
    except Exception as exc:
        state = state_after_raise(spec, exc, ctx)
        if state is None:  # LOOP: the next pass, as a submitted attempt goes on
            state = _attempt(spec, bound, ctx)
    finally:
        task_run_var.reset(token)
    blob = None
    if state is None and plan.persist:
        blob = _bytes(plan.dumps, value)
        if keep_bytes and blob is not None and len(blob) <= INLINE_BYTES:
            return start, time.time(), None, value, blob
    if state is None:
        state = Completed(SUCCEEDED, value)
    if plan.persist and state.is_completed():  # as `run_task` persists it
        state = _persisted(state, spec, flow_ctx, run_id, ctx.task_run_name, blob)
    return start, None, state, None, None


def _child_ran(core, node: Node, plan: Plan, i: int, bound: dict, ran: tuple, recording) -> None:
    """Child `i` has run (`_run_child`'s tuple): kept compactly, or its state handled."""
    start, end, state, value, blob = ran
    if state is not None:
        core.running += 1  # as `Core.submit` counts an attempt it hands `handle`
        core.in_flight += 1
        core.handle((Attempt(node, i, bound, start), state, None))
        return
    children, call = node.children, plan.call
    children.keep_inline(i, value, blob)
    if recording:  # (looked up each time: handing it over makes a new one)
        core.add_child_record(node, core.child_record(node), i, start, end, blob)
    if call is not None:  # a function flow's: its future may be gone
        if node.holds[i] == 0:
            children.release(i)
        call.child_completed(node, i)
    core.child_finished(node, i, False)


def _bytes(dumps, value) -> bytes | None:
    """The value's bytes, or None when its serializer cannot write it (persisting it the
    general way then says why)."""
    try:
        return dumps(value)
    except Exception:
        return None


__all__ = ["Plan", "plan", "run", "send", "run_children", "CHILDREN"]
