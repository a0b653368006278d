"""What the engine tells the run history, as records (`store.records`) handed to a `Recorder`.

Both runners call these four; none of them waits (the Recorder queues, its
writer thread does the I/O). No SQL row is built here: rows are the store's
business (`store.sql`).
"""

from __future__ import annotations

import os
import time

from headrace._pid import HOST
from headrace.states import State
from headrace.store.base import Recorder
from headrace.store.records import FlowRun, StateRecord, TaskRun


def flow_run_started(
    store: Recorder, run_id: str, name: str, flow_name: str, style: str, parameters: dict,
    parent_id: str | None, executor, upstream: list[str] = (), resumed_from: str | None = None,
    entry_point: str | None = None,
) -> float:  # fmt: skip
    start = time.time()
    store.flow_run_started(
        FlowRun(
            run_id,
            name,
            flow_name,
            style,
            parameters,
            parent_id,
            start_time=start,
            executor=repr(executor) if executor is not None else None,
            host=HOST,
            pid=os.getpid(),
            upstream=list(upstream),
            resumed_from=resumed_from,
            entry_point=entry_point,
        )  # fmt: skip
    )
    return start


def flow_run_ended(store: Recorder, run_id: str, state: State) -> None:
    store.flow_run_ended(run_id, state.type.value, state.name, state.message, time.time())


def task_run_done(
    store: Recorder, run_id: str, flow_run_id: str, task_name: str, name: str,
    key: str | None, map_index: int | None, parent_id: str | None, upstream: list[str], tags,
    state: State, start: float, run_count: int,
) -> None:  # fmt: skip
    """One finished task run: Running at `start`, its final state now.

    `key` is the task's stable key in the flow run (with `map_index`, the
    run's identity); `parent_id` is the mapped task's own run for a map
    child; `upstream` the ids of the task runs it depended on. Intermediate
    transitions (Retrying) are recorded as they happen by `task_state`.
    """
    ref = state.ref
    store.task_run(
        TaskRun(
            run_id, flow_run_id, task_name, name, key, map_index, parent_id, upstream,
            tags, state.type.value, state.name, state.message, start, time.time(), run_count,
            *((ref.cache_key, ref.record()) if ref is not None else (None, None)),
        )
    )  # fmt: skip


def task_state(store: Recorder, run_id: str, flow_run_id: str, state: State) -> None:
    """An intermediate transition (Retrying) as it happens."""
    store.task_state(
        StateRecord(run_id, flow_run_id, state.type.value, state.name, state.message, time.time())
    )
