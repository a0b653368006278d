"""Rows of run history, built from engine objects and handed to the store without waiting.

Both runners call these; the store's writer thread does the I/O.
"""

from __future__ import annotations

import json
import os
import socket
import time

from headrace.states import State
from headrace.store.records import FlowRun

_EMPTY = "[]"


def flow_run_started(
    store, run_id: str, name: str, flow_name: str, style: str, parameters: dict,
    parent_id: str | None, executor,
) -> float:  # fmt: skip
    start = time.time()
    store.started(
        FlowRun(
            id=run_id,
            name=name,
            flow_name=flow_name,
            style=style,
            parameters=parameters,
            parent_id=parent_id,
            start_time=start,
            executor=repr(executor) if executor is not None else None,
            host=socket.gethostname(),
            pid=os.getpid(),
        )
    )
    return start


def flow_run_ended(store, run_id: str, state: State) -> None:
    store.ended(run_id, state.type.value, state.name, state.message, time.time())


def task_run_done(
    store, run_id: str, flow_run_id: str, task_name: str, name: str, key: str | None,
    map_index: int | None, parent_id: str | None, upstream: list[str], tags, state: State,
    start: float, run_count: int,
) -> None:  # fmt: skip
    """One finished task run, as one row: Running at `start`, its final state now.

    Intermediate transitions (Retrying) are recorded as they happen by
    `task_state`; the store reads the three together as the run's states.
    """
    store.put(
        "task_run",
        (
            run_id,
            flow_run_id,
            task_name,
            name,
            key,
            map_index,
            parent_id,
            # Run ids are [0-9a-f-.] only, so joining is JSON and cheaper than json.dumps.
            '["' + '","'.join(upstream) + '"]' if upstream else _EMPTY,
            json.dumps(sorted(tags)) if tags else _EMPTY,
            state.type.value,
            state.name,
            state.message,
            start,
            time.time(),
            run_count,
            None,
            None,
        ),
    )


def task_state(store, run_id: str, flow_run_id: str, state: State) -> None:
    """An intermediate transition (Retrying) as it happens."""
    store.put(
        "state", (run_id, flow_run_id, state.type.value, state.name, state.message, time.time())
    )
