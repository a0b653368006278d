"""The records of run history, as plain slotted classes.

They are the only thing the engine hands the store (`store.base.Recorder`)
and the only thing the store's readers hand back (`store.base.Reader`).
SQL rows (tuples in column order) are built from them inside `store/` alone.

Each is what a slotted dataclass would be (fields in `__slots__` order, an
`__init__` taking them in that order, equality and repr over them), written
out: making the dataclasses cost a run's start-up 2 ms.
"""

from __future__ import annotations

import binascii
from array import array

from headrace.states import StateType

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

_RUNNING, _CRASHED = StateType.RUNNING.value, StateType.CRASHED.value


class Record:
    """Equality, repr, `astuple()` and `to_dict()` over the fields in `__slots__`."""

    __slots__ = ()
    __hash__ = None  # mutable, as a dataclass is

    def astuple(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.astuple() == other.astuple()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class RecordedState(Record):
    """Predicates over a record's `state_type` and `state_name`, as `State` has them."""

    __slots__ = ()

    def is_running(self) -> bool:
        return self.state_type == _RUNNING

    def is_crashed(self) -> bool:
        return self.state_type == _CRASHED

    def is_mapped(self) -> bool:
        return self.state_name == "Mapped"

    def is_completed_or_cached(self) -> bool:
        """Completed or Cached: a state whose message is not worth showing."""
        return self.state_name in ("Completed", "Cached")


class FlowRun(RecordedState):
    __slots__ = ("id", "name", "flow_name", "style", "parameters", "parent_id", "state_type",
                 "state_name", "state_message", "start_time", "end_time", "executor", "host",
                 "pid", "upstream", "resumed_from", "entry_point")  # fmt: skip

    def __init__(
        self,
        id: str,
        name: str,
        flow_name: str,
        style: str,  # "graph" or "function"
        parameters: dict[str, Any] | None = None,
        parent_id: str | None = None,
        state_type: str = "RUNNING",
        state_name: str = "Running",
        state_message: str | None = None,
        start_time: float | None = None,
        end_time: float | None = None,
        executor: str | None = None,
        host: str | None = None,
        pid: int | None = None,
        upstream: list[str] | None = None,  # a subflow's: task runs it waited for
        resumed_from: str | None = None,  # the run this one resumed (`flow.resume`)
        entry_point: str | None = None,  # how to load the flow again: FILE.py:NAME or module:NAME
    ):
        self.id, self.name, self.flow_name, self.style = id, name, flow_name, style
        self.parameters = {} if parameters is None else parameters
        self.parent_id = parent_id
        self.state_type, self.state_name = state_type, state_name
        self.state_message = state_message
        self.start_time, self.end_time = start_time, end_time
        self.executor, self.host, self.pid = executor, host, pid
        self.upstream = [] if upstream is None else upstream
        self.resumed_from, self.entry_point = resumed_from, entry_point


class TaskRun(RecordedState):
    """One task run. Its identity in a flow run is (`task_key`, `map_index`).

    `parent_task_run_id` is the mapped task's own run for a map child;
    `upstream` holds the ids of the task runs it depended on (its edges).
    """

    __slots__ = ("id", "flow_run_id", "task_name", "name", "task_key", "map_index",
                 "parent_task_run_id", "upstream", "tags", "state_type", "state_name",
                 "state_message", "start_time", "end_time", "run_count", "cache_key",
                 "result_ref")  # fmt: skip

    def __init__(
        self,
        id: str,
        flow_run_id: str,
        task_name: str,
        name: str,
        task_key: str | None = None,
        map_index: int | None = None,
        parent_task_run_id: str | None = None,
        upstream: list[str] | None = None,
        tags: list[str] | None = None,
        state_type: str = "RUNNING",
        state_name: str = "Running",
        state_message: str | None = None,
        start_time: float | None = None,
        end_time: float | None = None,
        run_count: int = 1,
        cache_key: str | None = None,
        result_ref: str | None = None,
    ):
        self.id, self.flow_run_id, self.task_name, self.name = id, flow_run_id, task_name, name
        self.task_key, self.map_index = task_key, map_index
        self.parent_task_run_id = parent_task_run_id
        self.upstream = [] if upstream is None else upstream
        self.tags = [] if tags is None else tags
        self.state_type, self.state_name = state_type, state_name
        self.state_message = state_message
        self.start_time, self.end_time = start_time, end_time
        self.run_count, self.cache_key, self.result_ref = run_count, cache_key, result_ref


class ChildRuns:
    """Children of one mapped task run that completed alike, as one record: each ran
    once to Completed with `state_message`, its result inline by `serializer`; they
    differ only in their index, times and result bytes (`data`, one after another,
    `sizes` long). Child `i` is the TaskRun `<parent_task_run_id>.<i>`, named
    `<name>[<i>]` (`runs()`)."""

    __slots__ = ("flow_run_id", "task_name", "name", "task_key", "parent_task_run_id",
                 "upstream", "tags", "serializer", "state_message", "indices", "starts",
                 "ends", "sizes", "data")  # fmt: skip

    def __init__(
        self, flow_run_id: str, task_name: str, name: str, task_key: str | None,
        parent_task_run_id: str, upstream: list[str], tags: list[str], serializer: str,
        state_message: str | None,
    ):  # fmt: skip
        self.flow_run_id, self.task_name, self.name = flow_run_id, task_name, name
        self.task_key, self.parent_task_run_id = task_key, parent_task_run_id
        self.upstream, self.tags, self.serializer = upstream, tags, serializer
        self.state_message = state_message  # `name` is the mapped task run's name
        self.indices, self.starts, self.ends = array("q"), array("d"), array("d")
        self.sizes, self.data = array("I"), bytearray()

    def __len__(self) -> int:
        return len(self.indices)

    def add(self, index: int, start: float, end: float, data: bytes) -> None:
        self.indices.append(index)
        self.starts.append(start)
        self.ends.append(end)
        self.sizes.append(len(data))
        self.data.extend(data)

    def emptied(self) -> ChildRuns:
        """A record of the same map's next children (this one is handed over)."""
        return ChildRuns(
            self.flow_run_id, self.task_name, self.name, self.task_key,
            self.parent_task_run_id, self.upstream, self.tags, self.serializer,
            self.state_message,
        )  # fmt: skip

    def refs(self):
        """(index, start, end, result reference) per child, in order."""
        prefix, data, offset = f"inline:{self.serializer}:", memoryview(self.data), 0
        encode = binascii.b2a_base64
        for i, start, end, size in zip(self.indices, self.starts, self.ends, self.sizes):
            blob = data[offset : offset + size]
            offset += size
            yield i, start, end, prefix + encode(blob, newline=False).decode("ascii")

    def runs(self) -> list[TaskRun]:
        """The children as TaskRun records."""
        parent, name = self.parent_task_run_id, self.name
        return [
            TaskRun(f"{parent}.{i}", self.flow_run_id, self.task_name, f"{name}[{i}]",
                    self.task_key, i, parent, list(self.upstream), list(self.tags),
                    "COMPLETED", "Completed", self.state_message, start, end, 1, None, ref)
            for i, start, end, ref in self.refs()
        ]  # fmt: skip


class StateRecord(Record):
    __slots__ = ("task_run_id", "flow_run_id", "type", "name", "message", "time")

    def __init__(self, task_run_id: str | None, flow_run_id: str, type: str, name: str,
                 message: str | None, time: float):  # fmt: skip
        self.task_run_id, self.flow_run_id = task_run_id, flow_run_id
        self.type, self.name, self.message, self.time = type, name, message, time


class LogRecord(Record):
    __slots__ = ("flow_run_id", "task_run_id", "level", "time", "logger", "message")

    def __init__(self, flow_run_id: str, task_run_id: str | None, level: int, time: float,
                 logger: str, message: str):  # fmt: skip
        self.flow_run_id, self.task_run_id = flow_run_id, task_run_id
        self.level, self.time, self.logger, self.message = level, time, logger, message


class MapGroup(Record):
    """The children of one mapped task in a flow run, counted by state.

    `parent_task_run_id` is the mapped task's own run (None when only its
    children were recorded; they are then grouped by `task_key`, else by
    `task_name`). `failed` names failed or crashed children in map-index order,
    at most one more than a face shows, so it can tell there are more.
    """

    __slots__ = ("parent_task_run_id", "task_key", "task_name", "size", "counts",
                 "start_time", "end_time", "failed")  # fmt: skip

    def __init__(self, parent_task_run_id: str | None, task_key: str | None, task_name: str,
                 size: int, counts: dict[str, int], start_time: float | None,
                 end_time: float | None, failed: list[str] | None = None):  # fmt: skip
        self.parent_task_run_id, self.task_key, self.task_name = (
            parent_task_run_id, task_key, task_name)  # fmt: skip
        self.size, self.counts = size, counts
        self.start_time, self.end_time = start_time, end_time
        self.failed = [] if failed is None else failed
