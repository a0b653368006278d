"""What a finished unit hands on: the value a downstream receives, remote parts fetched,
and results released once nothing needs them."""

from __future__ import annotations

from headrace.errors import ResultReleasedError
from headrace.states import ChildStates, MappedState, RemoteValue, State, StateType, _Released

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


def value_of(state: State) -> Any:
    """The value a downstream receives from a finished upstream state."""
    if isinstance(state, MappedState):
        children = state.map_states
        if children.__class__ is ChildStates:
            return [children.value(i, value_of) for i in range(len(children))]
        return [value_of(s) for s in children]
    if state.type is StateType.FAILED or state.type is StateType.CRASHED:
        return state.exception
    value = state._value
    if value.__class__ is _Released:
        if state.ref is not None:  # persisted: read it again
            return state.ref.load()
        raise ResultReleasedError(value.task_name)
    return value


def child_value(children: ChildStates | list, index: int) -> Any:
    """The value of a map's child `index` (read from its bytes if it was released)."""
    if children.__class__ is ChildStates:
        return children.value(index, value_of)
    return value_of(children[index])


def local_value(value: Any) -> Any:
    """A value the core itself must read (to map over it): fetch remote parts."""
    if isinstance(value, RemoteValue):
        return value.fetch()
    if isinstance(value, list) and any(isinstance(v, RemoteValue) for v in value):
        return [v.fetch() if isinstance(v, RemoteValue) else v for v in value]
    return value


def release_value(state: State, name: str) -> None:
    if isinstance(state, MappedState):
        return
    if state._value is not None:
        state._value = _Released(name)
