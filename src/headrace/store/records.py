"""The records of run history, as plain dataclasses (what the store writes and reads)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FlowRun:
    id: str
    name: str
    flow_name: str
    style: str  # "graph" or "function"
    parameters: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None
    state_type: str = "RUNNING"
    state_name: str = "Running"
    state_message: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    executor: str | None = None
    host: str | None = None
    pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TaskRun:
    id: str
    flow_run_id: str
    task_name: str
    name: str
    task_key: str | None = None
    map_index: int | None = None
    parent_task_run_id: str | None = None
    upstream: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    state_type: str = "RUNNING"
    state_name: str = "Running"
    state_message: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    run_count: int = 1
    cache_key: str | None = None
    result_ref: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StateRecord:
    task_run_id: str | None
    flow_run_id: str
    type: str
    name: str
    message: str | None
    time: float


@dataclass
class LogRecord:
    flow_run_id: str
    task_run_id: str | None
    level: int
    time: float
    logger: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
