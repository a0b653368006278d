"""States: what happened to a task run or a flow run, as plain values.

A `State` has a `type` (the coarse lifecycle stage, one of `StateType`), a
`name` (the precise outcome: Completed, Cached, Mapped, Skipped, Retrying,
Failed, TriggerFailed, TimedOut, Looped, NotRun, ...), a `message`, and a
result read with `result()`.

Rules kept here so every layer agrees on them:

- `is_failed()` is true for FAILED and CRASHED types. A mapped task's state
  is `Mapped` with one state per child in `map_states`; its type is FAILED
  when any child failed, so failure propagates to reduces and to the flow.
- `is_successful()` is true for the COMPLETED type (Completed, Cached,
  Mapped with no failed child, Skipped).
- A result that the engine released (no consumer needed it any more) raises
  `ResultReleasedError` when read, saying how to keep it.

This module must not import the engine or the store.
"""

from __future__ import annotations

import enum

from headrace.errors import ResultReleasedError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class StateType(enum.Enum):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"
    PAUSED = "PAUSED"


_FINISHED_TYPES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
)
_FAILED_TYPES = frozenset({StateType.FAILED, StateType.CRASHED})
# Identity checks on these are the hot path's predicates (enum hashing is slow).
_COMPLETED, _FAILED, _CRASHED = StateType.COMPLETED, StateType.FAILED, StateType.CRASHED


class _Released:
    """Marker for a result the engine dropped; never visible to users."""

    __slots__ = ("task_name",)

    def __init__(self, task_name: str):
        self.task_name = task_name

    def __repr__(self) -> str:
        return "<released>"


class RemoteValue:
    """A result that stays where it was computed (a Dask worker) until read.

    Executors that keep data remote put one in a state; downstream runs on
    the same cluster receive the data there, and `State.result()` fetches it.
    """

    __slots__ = ()

    def fetch(self) -> Any:
        raise NotImplementedError


class State:
    """The outcome of a run. `result()` returns its value.

    For a failed state `result()` raises the exception that failed it, unless
    `raise_on_failure=False`, in which case the exception is returned.
    """

    __slots__ = (
        "type", "name", "message", "_value", "exception", "flow_run_id", "task_run_id", "ref"
    )  # fmt: skip

    def __init__(
        self,
        type: StateType,
        name: str | None = None,
        message: str | None = None,
        result: Any = None,
        exception: BaseException | None = None,
    ):
        self.type = type
        self.name = name or type.value.capitalize()
        self.message = message
        self._value = result
        self.exception = exception
        # The run this state belongs to, set by the engine when the state is final.
        self.flow_run_id: str | None = None
        self.task_run_id: str | None = None
        self.ref = None  # where a persisted result is read again (headrace.results.persist)

    # -- reading -----------------------------------------------------------
    def result(self, raise_on_failure: bool = True) -> Any:
        if self.type is _FAILED or self.type is _CRASHED:
            error = self.exception or RuntimeError(self.message or f"{self.name} state")
            if raise_on_failure:
                raise error
            return error if self._value is None else self._value
        value = self._value
        if value.__class__ is _Released:
            if self.ref is not None:
                return self.ref.load()  # released from memory, persisted: read it again
            raise ResultReleasedError(value.task_name)
        if isinstance(value, RemoteValue):
            value = self._value = value.fetch()
        return value

    # -- predicates --------------------------------------------------------
    def is_successful(self) -> bool:
        return self.type is _COMPLETED

    def is_released(self) -> bool:
        """The engine dropped the result from memory; `result()` reads it again from where
        it was persisted, or raises ResultReleasedError if it was not."""
        return self._value.__class__ is _Released

    def is_failed(self) -> bool:
        return self.type is _FAILED or self.type is _CRASHED

    def is_finished(self) -> bool:
        return self.type in _FINISHED_TYPES

    def is_skipped(self) -> bool:
        return self.name == "Skipped"

    def is_retrying(self) -> bool:
        return False

    def is_completed(self) -> bool:
        """Completed by running, not Cached, Skipped or Mapped."""
        return self.name == "Completed"

    def is_not_run(self) -> bool:
        """Above a run's start_tasks: it neither ran nor has a state to reuse."""
        return self.name == "NotRun"

    def is_timed_out(self) -> bool:
        return self.name == "TimedOut"

    def is_trigger_failed(self) -> bool:
        """Failed because of its upstream states, not by running."""
        return self.name == "TriggerFailed"

    def is_cached(self) -> bool:
        return self.name == "Cached"

    def is_mapped(self) -> bool:
        return False

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    # -- display -----------------------------------------------------------
    def _result_repr(self) -> str | None:
        if self.type in _FAILED_TYPES:
            return None
        value = self._value
        if value is None:
            return None
        if isinstance(value, RemoteValue):
            return "<on the cluster>"
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."

    def __repr__(self) -> str:
        parts = [f"message={self.message!r}"]
        if self.name.upper() != self.type.value:
            parts.append(f"type={self.type.value}")
        shown = self._result_repr()
        if shown is not None:
            parts.append(f"result={shown}")
        return f"{self.name}({', '.join(parts)})"


SUCCEEDED = "Task run succeeded."  # the message of a plain Completed task run


_AS_STORED, _HELD, _RELEASED = 0, 1, 2  # how ChildStates keeps a child


def is_plain_inline(state: State) -> bool:
    """Completed with the plain message and no exception, its result inline: a child that
    carries nothing of its own but its value and bytes (kept and recorded compactly)."""
    ref = state.ref
    return (
        state.__class__ is State
        and ref is not None
        and ref.data is not None
        and state.name == "Completed"
        and state.message == SUCCEEDED
        and state.exception is None
    )


class ChildStates:
    """A mapped task's child states, read like a list, kept compactly.

    A finished child that carries nothing of its own (Completed, the plain message, the
    run id `<map's>.<index>`, its result inline) is kept as its value, and once the value
    is released as nothing at all: its result's bytes go into one buffer for the whole
    map. About 25 bytes a child, where its State with its result reference and run id
    took about 300, and no object per child (a million small objects left behind would
    keep the memory they are scattered over). Reading it makes that State again: equal
    in every field, not the same object each time. The engine compacts a child when it
    finishes, unless the caller keeps the map's result.
    """

    __slots__ = ("_items", "_how", "_data", "_start", "_size", "name", "run_id",
                 "flow_run_id", "serializer")  # fmt: skip

    def __init__(self, length: int, name: str, run_id: str):
        from array import array

        self._items: list = [None] * length  # a State, None, or a compacted child's value
        self._how = bytearray(length)  # _AS_STORED, _HELD or _RELEASED
        self._data = bytearray()  # compacted children's result bytes, one after another
        self._start = array("Q", bytes(8 * length))
        self._size = array("I", bytes(4 * length))
        self.name, self.run_id = name, run_id
        self.flow_run_id = self.serializer = None

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._items)))]
        if self._how[index] == _AS_STORED:
            return self._items[index]
        return self._state(index % len(self._items))

    def __setitem__(self, index: int, state: State | None) -> None:
        self._items[index] = state
        self._how[index] = _AS_STORED

    def __iter__(self):
        for index in range(len(self._items)):
            yield self[index]

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __repr__(self) -> str:
        return f"<{len(self._items)} child states of {self.name!r}>"

    def is_compact(self, index: int) -> bool:
        return self._how[index] != _AS_STORED

    def value(self, index: int, value_of):
        """Child `index`'s value; `value_of(state)` for one kept as a State."""
        how = self._how[index]
        if how == _HELD:
            return self._items[index]
        if how == _RELEASED:
            return self.serializer.loads(self._bytes(index))
        return value_of(self._items[index])

    def compact(self, index: int) -> None:
        """Keep finished child `index` compactly, if it carries nothing of its own."""
        state = self._items[index]
        ref, value = state.ref, state._value
        # (a value on a worker stays a state: downstreams read it there)
        if not is_plain_inline(state) or isinstance(value, RemoteValue):
            return
        if self.serializer is None:
            self.serializer, self.flow_run_id = ref.serializer, state.flow_run_id
        if (
            ref.serializer is self.serializer
            and state.flow_run_id == self.flow_run_id
            and state.task_run_id == f"{self.run_id}.{index}"
        ):
            self.keep_inline(index, value, ref.data)
            if value.__class__ is _Released:
                self._items[index], self._how[index] = None, _RELEASED

    def keep_inline(self, index: int, value, data: bytes) -> None:
        """Keep finished child `index` as `compact` would: Completed with `value`, its
        result `data` inline by this map's `serializer` (set before)."""
        self._start[index], self._size[index] = len(self._data), len(data)
        self._data += data
        self._items[index], self._how[index] = value, _HELD

    def release(self, index: int) -> None:
        """Drop child `index`'s value from memory (it is read again from its bytes)."""
        how, item = self._how[index], self._items[index]
        if how == _HELD:
            self._items[index], self._how[index] = None, _RELEASED
        elif how == _AS_STORED and item is not None and item._value is not None:
            item._value = _Released(f"{self.name}[{index}]")

    def failed(self) -> list[int]:
        """The indices of the failed children (a compacted child did not fail)."""
        return [
            i
            for i, (how, s) in enumerate(zip(self._how, self._items))
            if how == _AS_STORED and s is not None and s.type in _FAILED_TYPES
        ]

    def _bytes(self, index: int) -> bytes:
        start = self._start[index]
        return bytes(self._data[start : start + self._size[index]])

    def _state(self, index: int) -> State:
        from headrace.results.persist import ResultRef

        if self._how[index] == _HELD:
            value = self._items[index]
        else:
            value = _Released(f"{self.name}[{index}]")
        state = State(_COMPLETED, "Completed", SUCCEEDED, value)
        state.ref = ResultRef(self.serializer, self._bytes(index))
        state.flow_run_id, state.task_run_id = self.flow_run_id, f"{self.run_id}.{index}"
        return state


class MappedState(State):
    """The state of a mapped task: one child state per item in `map_states`."""

    __slots__ = ("map_states",)

    def __init__(self, map_states: list[State] | ChildStates, message: str | None = None):
        if isinstance(map_states, ChildStates):
            failed = len(map_states.failed())  # without making the compacted ones again
        else:
            failed = sum(1 for s in map_states if s.type in _FAILED_TYPES)
        if message is None:
            total = len(map_states)
            message = (
                f"{failed} of {total} mapped runs failed."
                if failed
                else f"Mapped {total} run{'s' if total != 1 else ''}."
            )
        super().__init__(StateType.FAILED if failed else StateType.COMPLETED, "Mapped", message)
        self.map_states = map_states
        if failed:
            first = next(s for s in map_states if s.type in _FAILED_TYPES)
            self.exception = first.exception

    def result(self, raise_on_failure: bool = True) -> list[Any]:
        """The list of child results; raises the first child failure unless told not to."""
        if raise_on_failure and self.type in _FAILED_TYPES:
            for s in self.map_states:
                if s.type in _FAILED_TYPES:
                    s.result()
        return [s.result(raise_on_failure=False) for s in self.map_states]

    def is_mapped(self) -> bool:
        return True

    def _result_repr(self) -> str | None:
        return None

    def __repr__(self) -> str:
        return f"Mapped(message={self.message!r}, map_states=[{len(self.map_states)} states])"


class FlowState(State):
    """The state of a graph-flow run: `state[task]` is that task's state.

    `task_states` maps every task of the flow to its state; it can be passed
    to a later `flow.run(task_states=...)` to reuse finished work.
    `result()` returns `task_states` (and raises on a failed flow unless
    `raise_on_failure=False`).
    """

    __slots__ = ("task_states",)

    def __init__(self, type: StateType, message: str, task_states: dict, name: str | None = None):
        super().__init__(type, name, message)
        self.task_states = task_states

    def __getitem__(self, task) -> State:
        try:
            return self.task_states[task]
        except KeyError:
            raise KeyError(
                f"{task!r} is not a task of this flow run; use a task returned inside "
                "`with Flow(...)`, not the @task function itself."
            ) from None

    def result(self, raise_on_failure: bool = True) -> dict:
        if raise_on_failure and self.type in _FAILED_TYPES:
            from headrace.errors import FlowRunFailed

            raise FlowRunFailed(self)
        return self.task_states

    def _result_repr(self) -> str | None:
        return None


def failure_summary(
    first: list[tuple[str, State]], downstream: list[tuple[str, State]], shown: int = 3
) -> str:
    """A failed run's message: the task runs that failed first, then what failed after.

    `first` pairs run names with the states that failed by running; at most
    `shown` are named, each with its exception, and the rest counted.
    `downstream` pairs the names of deciding tasks that failed only because
    of their upstream with their states.
    """

    def cause(state: State) -> str:
        exc = state.exception
        text = f"{type(exc).__name__}: {exc}" if exc is not None else state.message or state.name
        return text if len(text) <= 100 else text[:97] + "..."

    parts = []
    if first:
        runs = ", ".join(f"{name!r} ({cause(state)})" for name, state in first[:shown])
        more = f" and {len(first) - shown} more" if len(first) > shown else ""
        parts.append(f"{len(first)} task run{'s' if len(first) != 1 else ''} failed: {runs}{more}")
    if downstream:
        names = ", ".join(f"{name!r} {state.name}" for name, state in downstream[:shown])
        more = f" and {len(downstream) - shown} more" if len(downstream) > shown else ""
        parts.append(f"downstream: {names}{more}")
    return "; ".join(parts) + "."


# -- constructors, named as users read them ---------------------------------


def Scheduled(message: str | None = None, name: str = "Scheduled") -> State:
    return State(StateType.SCHEDULED, name, message)


def Pending(message: str | None = None, name: str = "Pending") -> State:
    return State(StateType.PENDING, name, message)


def Running(message: str | None = None, name: str = "Running") -> State:
    return State(StateType.RUNNING, name, message)


class RetryingState(State):
    """A failed attempt that runs again after its delay.

    `run_count` is the attempt that failed, counted within the current LOOP
    pass; `loop` is the `(loop count, loop result)` reached, for the next
    attempt to resume from, or None to start where the failed attempt did.
    """

    __slots__ = ("run_count", "loop")

    def __init__(self, message, exception, run_count: int, loop: tuple[int, Any] | None):
        super().__init__(StateType.SCHEDULED, "Retrying", message, exception=exception)
        self.run_count = run_count
        self.loop = loop

    def is_retrying(self) -> bool:
        return True


def Retrying(
    message: str | None = None,
    exception: BaseException | None = None,
    run_count: int = 1,
    loop: tuple[int, Any] | None = None,
) -> RetryingState:
    return RetryingState(message, exception, run_count, loop)


def Looped(message: str | None = None, result: Any = None) -> State:
    return State(StateType.RUNNING, "Looped", message, result)


def Completed(message: str | None = None, result: Any = None, name: str = "Completed") -> State:
    return State(StateType.COMPLETED, name, message, result)


def Cached(message: str | None = None, result: Any = None) -> State:
    return State(StateType.COMPLETED, "Cached", message, result)


def Skipped(message: str | None = None) -> State:
    return State(StateType.COMPLETED, "Skipped", message)


def NotRun(message: str | None = None) -> State:
    """A task that did not run because the run started below it (`start_tasks`)."""
    return State(StateType.PENDING, "NotRun", message)


def Failed(
    message: str | None = None,
    exception: BaseException | None = None,
    name: str = "Failed",
    result: Any = None,
) -> State:
    """A failed run. `result` is data it keeps (Prefect's `data=`): what
    `result(raise_on_failure=False)` gives instead of the exception."""
    return State(StateType.FAILED, name, message, result=result, exception=exception)


def TriggerFailed(message: str | None = None, exception: BaseException | None = None) -> State:
    return State(StateType.FAILED, "TriggerFailed", message, exception=exception)


def TimedOut(message: str | None = None, exception: BaseException | None = None) -> State:
    return State(StateType.FAILED, "TimedOut", message, exception=exception)


def Crashed(message: str | None = None, exception: BaseException | None = None) -> State:
    return State(StateType.CRASHED, "Crashed", message, exception=exception)


def Cancelled(message: str | None = None) -> State:
    return State(StateType.CANCELLED, "Cancelled", message)


def Mapped(map_states: list[State], message: str | None = None) -> MappedState:
    return MappedState(map_states, message)


__all__ = [
    "State",
    "StateType",
    "MappedState",
    "FlowState",
    "Scheduled",
    "Pending",
    "Running",
    "Retrying",
    "RetryingState",
    "Looped",
    "Completed",
    "Cached",
    "Skipped",
    "NotRun",
    "Failed",
    "TriggerFailed",
    "TimedOut",
    "Crashed",
    "Cancelled",
    "Mapped",
]
