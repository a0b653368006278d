"""A plain map's children, run in batches on the core's thread (inline executors).

Through the general path each child of a map costs an `Attempt`, an event, a
`State`, a `TaskRun` record and its row, about 15 µs for a trivial task. Most
maps' children run alike: same function, same upstream states, only their
item differs. For such a map (`plan`) the core hands this module up to
`CHILDREN` children of its ready span at once (`run`); for each it binds the
item, sets the child's run context, calls, and keeps the result's bytes
straight in the map's `ChildStates`. Their history is one `ChildRuns` record
per batch (`Core.child_record`), which the store's writer turns into rows (in
its own process once a run is busy).

A child whose outcome is anything else (an exception, a signal, a retry, a
result too big to keep inline or not persisted) leaves the fast lane where it
stands: its state goes through `Core.handle`, exactly as a submitted
attempt's does. What a batch does not change: children run in index order,
each under its own `TaskRunContext`; every finished child wakes what waited
for it before the next one runs.

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
    state_after_raise,
)
from headrace.errors import ResultReleasedError
from headrace.results.persist import INLINE_BYTES, PICKLE
from headrace.states import SUCCEEDED, ChildStates, Completed

CHILDREN = 512  # children a batch runs before the core's loop looks around again
CHAINED = 1  # when element-wise consumers wait: each child's run next (depth-first)


class Plan:
    """What every child of one map shares: how to bind, call, persist and record it."""

    __slots__ = ("spec", "serializer", "persist", "call", "base", "sequences")

    def __init__(self, node: Node, flow_ctx, shared: bool):
        spec = node.spec
        self.spec = spec
        self.serializer = spec.serializer or PICKLE
        self.persist = spec.persist is True or (spec.persist is None and flow_ctx.persist_result)
        self.call = node.call
        self.base = None if shared else False  # False: each child's arguments made anew
        self.sequences = list(node.sequences.items())


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
    spec, flow_ctx, children = plan.spec, core.flow_ctx, node.children
    fn_name, name, parent = spec.name, node.name, node.run_id
    keep_bytes = plan.persist and children.serializer in (None, plan.serializer)
    if keep_bytes:
        children.serializer, children.flow_run_id = plan.serializer, flow_ctx.flow_run_id
    dumps, call, recording = plan.serializer.dumps, plan.call, core.recorder.recording
    core.running += 1  # the batch is running: a task that calls a task finds the loop busy
    flow_token = flow_run_var.set(flow_ctx)
    prints_token = None
    if flow_ctx.log_prints:
        logs.enable_log_prints()
        prints_token = logs.log_prints_var.set(True)
    try:
        for i in indices:
            bound = arguments(core, node, plan, i)
            run_id = f"{parent}.{i}"
            ctx = TaskRunContext(fn_name, f"{name}[{i}]", i, spec.tags, run_id)
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
                blob = _bytes(dumps, value)
                if keep_bytes and blob is not None and len(blob) <= INLINE_BYTES:
                    end = time.time()
                    children.keep_inline(i, value, blob)
                    if recording:  # (looked up each time: handing it over makes a new one)
                        core.add_child_record(node, core.child_record(node), i, start, end, blob)
                    if call is not None:  # a function flow's: its future may be gone
                        if node.holds[i] == 0:
                            children.release(i)
                        call.child_completed(node, i)
                    core.child_finished(node, i, False)
                    continue
            if state is None:
                state = Completed(SUCCEEDED, value)
            if plan.persist and state.is_completed():  # as `run_task` persists it
                state = _persisted(state, spec, flow_ctx, run_id, ctx.task_run_name, blob)
            core.running += 1  # as `Core.submit` counts an attempt it hands `handle`
            core.in_flight += 1
            core.handle((Attempt(node, i, bound, start), state, None))
    finally:
        if prints_token is not None:
            prints_token.var.reset(prints_token)
        flow_run_var.reset(flow_token)
        core.running -= 1
        node.started += len(indices) - 1  # the batch's children took their inputs
        core._started(node, indices[-1])
        core.flush_child_record(node)  # (after Ctrl-C too: those children finished)
    return True


def _bytes(dumps, value) -> bytes | None:
    """The value's bytes, or None when its serializer cannot write it (persisting it the
    general way then says why)."""
    try:
        return dumps(value)
    except Exception:
        return None


__all__ = ["Plan", "plan", "run", "CHILDREN"]
