"""What a task call in a function flow makes: the `Call` on its core node, the
`TaskFuture`s and `FutureList`s it returns, and the `TaskRunRecord`s that read
it back for `FunctionRun.records`.

This module holds no running logic: `function_flow` files calls, `core` runs
them and calls the few methods here that resolve a call's arguments.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Sequence

from headrace.engine.core import INTERRUPTED
from headrace.engine.nodes import ELEMENT, NOTHING, Node
from headrace.states import Cancelled, ChildStates, Pending, State, StateType

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

    from headrace.engine.function_flow import FunctionRun


class Call:
    """What a task call in a function flow adds to its core `Node`.

    `structures` are arguments with futures or states inside, resolved when
    the unit runs; `picks` the futures whose units each unit waits for (for
    a map, `per_child` holds each child's own); `states` states passed as
    arguments, which the trigger sees; `traced` the run ids of tasks whose
    results were passed back in by identity. `allowed` says which failures
    the flow was told to accept (True, or the set of child indices).
    """

    __slots__ = ("run", "core", "structures", "per_child", "picks", "states", "traced", "allowed")

    def __init__(self, run: FunctionRun):
        self.run = run
        self.core = run.core
        # Most calls have none of these: they share empty values until filled.
        self.structures: dict[str, Any] = NOTHING
        self.per_child: dict[str, list] = NOTHING
        self.picks: list[TaskFuture] = ()
        self.states: list[State] = ()
        self.traced: list[str] = ()
        self.allowed: bool | set = False

    # -- filled by the run, as it files a call's arguments -----------------------------
    def structure(self, key: str, value: Any) -> None:
        self.structures = {**self.structures, key: value}

    def each_child(self, key: str, items) -> None:
        self.per_child = {**self.per_child, key: items}

    def pick(self, future: TaskFuture) -> None:
        if self.picks:
            self.picks.append(future)
        else:
            self.picks = [future]

    def add_states(self, states) -> None:
        self.states = [*self.states, *states]

    def trace(self, run_id: str) -> None:
        if self.traced:
            self.traced.append(run_id)
        else:
            self.traced = [run_id]

    # -- called by the core, holding its turn ---------------------------------------------
    def upstream_states(self, node: Node, index: int | None) -> list[tuple[str, State]]:
        pairs = [(f.name, f.state_now()) for f in self.picks]
        pairs.extend(
            (inp.up.name, inp.up.state)
            for inp in node.inputs
            if inp.key is not None and not inp.element_wise
        )
        if index is not None:
            pairs.extend((up.name, up.children[index]) for up, mode in node.ups if mode == ELEMENT)
            for items in self.per_child.values():
                pairs.extend((f.name, f.state_now()) for f in futures_in(items[index]))
        pairs.extend(("state", s) for s in self.states)
        return pairs

    def resolve(self, arguments: dict, index: int | None) -> None:
        for key, value in self.structures.items():
            arguments[key] = _resolve(value)
        if index is not None:
            for key, items in self.per_child.items():
                arguments[key] = _resolve(items[index])

    def upstream_ids(self, index: int | None) -> list[str]:
        ids = [f.unit_id for f in self.picks]
        if index is not None:
            for items in self.per_child.values():
                ids.extend(f.unit_id for f in futures_in(items[index]))
        return [*dict.fromkeys([*ids, *self.traced])]

    def accept_failures(self) -> None:
        """The unit runs although its trigger saw failures: it accepts them."""
        for f in self.picks:
            if f.state_now().is_failed():
                f.allow()

    def finished(self, node: Node, index: int | None, state: State) -> None:
        self.run.task_run_finished(node, index, state)

    def child_completed(self, node: Node, index: int) -> None:
        """`finished` for a child a batch kept compactly (Completed, no State made)."""
        self.run.child_completed(node, index)

    def is_allowed(self, index: int | None) -> bool:
        allowed = self.allowed
        return allowed is True or (index is not None and allowed is not False and index in allowed)


class TaskRunRecord:
    """One task run of a function flow, read from its core node (or a subflow run)."""

    __slots__ = ("node", "index", "run", "kind")

    def __init__(self, node: Node | None, index: int | None, run: FunctionRun | None = None):
        self.node = node
        self.index = index
        self.run = run  # a subflow's run, for a record of kind "flow"
        self.kind = "task" if run is None else "flow"

    @property
    def id(self) -> str:
        return self.run.id if self.run is not None else self.node.unit_id(self.index)

    @property
    def name(self) -> str:
        return self.run.name if self.run is not None else self.node.unit_name(self.index)

    @property
    def task_name(self) -> str:
        return self.run.flow.name if self.run is not None else self.node.task.name

    @property
    def map_index(self) -> int | None:
        return self.index

    @property
    def state(self) -> State | None:
        if self.run is not None:
            return self.run.state
        node = self.node
        if self.index is None:
            return node.state
        child = node.children[self.index] if node.children is not None else None
        return child if child is not None else node.state  # decided as a whole, or not yet

    def failed(self) -> bool:
        """Whether the run failed (a compacted child did not: it is not made a State)."""
        node = self.node
        if self.run is None and self.index is not None and node.children is not None:
            children = node.children
            if children.__class__ is ChildStates and children.is_compact(self.index):
                return False
        state = self.state
        return state is not None and state.is_failed()

    @property
    def upstream(self) -> list[str]:
        if self.run is not None:
            return self.run.upstream
        return self.node.upstream_ids(self.index)

    @property
    def allowed(self) -> bool:
        if self.run is not None:
            return self.run.allowed_by_parent
        return self.node.call.is_allowed(self.index)

    def __repr__(self) -> str:
        return f"<TaskRunRecord {self.name} {self.state!r}>"


class TaskFuture:
    """A submitted task run: `result()`, `wait()`, `state`, `done()`; awaitable in async flows.

    While a future is referenced, its run's result stays in memory; once it
    is gone and the run's consumers have started, the result is released.
    """

    __slots__ = ("node", "index", "_hold")

    def __init__(self, node: Node, index: int | None, hold: Hold):
        self.node = node
        self.index = index
        self._hold = hold

    @property
    def name(self) -> str:
        return self.node.unit_name(self.index)

    task_run_name = name

    @property
    def unit_id(self) -> str:
        return self.node.unit_id(self.index)

    @property
    def record(self) -> TaskRunRecord:
        return TaskRunRecord(self.node, self.index)

    def __eq__(self, other) -> bool:  # two futures of one task run are the same
        if isinstance(other, TaskFuture):
            return self.node is other.node and self.index == other.index
        return NotImplemented

    def __hash__(self) -> int:
        return hash((id(self.node), self.index))

    def state_now(self) -> State | None:
        """The run's final state, or None while it is unfinished (read holding the turn)."""
        node = self.node
        if self.index is not None and node.children is not None:
            child = node.children[self.index]
            if child is not None:
                return child
        return node.state if node.state is not None and not node.state.is_mapped() else None

    @property
    def state(self) -> State:
        """Where the run is now, without waiting: its final state, or Pending."""
        state = self.state_now()
        return state if state is not None else Pending("The task run has not finished yet.")

    def done(self) -> bool:
        return self.state_now() is not None

    def wait(self, timeout: float | None = None) -> State | None:
        """Wait for the run's final state; with `timeout` (seconds on the flow's clock),
        at most that long: None if it has not finished by then."""
        state = self.state_now()
        if state is None:
            core = self.node.call.core
            if timeout is None:
                core.drive(self.done)
            else:
                core.drive_for(self.done, timeout)
            state = self.state_now()
            if state is None and core.stopped:
                return Cancelled(INTERRUPTED)
        return state

    def __bool__(self) -> bool:
        warnings.warn(
            f"The truth value of a TaskFuture ({self.name}) is always True: it is of the "
            "future, not of its result. Use future.result() in the condition.",
            UserWarning,
            stacklevel=2,
        )
        return True

    def allow(self) -> None:
        call = self.node.call
        if self.index is None:
            call.allowed = True
        elif call.allowed is not True:
            call.allowed = (call.allowed or set()) | {self.index}

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        state = self.wait(timeout)
        if state is None:
            raise TimeoutError(f"Task run {self.name!r} did not finish within {timeout:g} s.")
        if not raise_on_failure:
            self.allow()
        return state.result(raise_on_failure=raise_on_failure)

    def __await__(self):
        import asyncio  # (only async flows await futures)

        return asyncio.to_thread(self.result).__await__()

    def __repr__(self) -> str:
        state = self.state_now()
        return f"<TaskFuture {self.name}: {'running' if state is None else repr(state)}>"


class Hold:
    """Keeps a call's results in memory while its futures (or FutureList) live."""

    __slots__ = ("node",)

    def __init__(self, node: Node):
        self.node = node

    def __del__(self):
        try:
            self.node.call.core.dropped.append(self.node)
        except Exception:  # the interpreter is going away
            pass


class FutureList(Sequence):
    """The futures of a `task.map(...)` in a function flow, child 0 first.

    A read-only sequence: indexing, slicing and iterating make each child's
    `TaskFuture` as it is read, so a map of a million items holds no million
    objects for its caller. While the list or any of its futures lives, the
    map's results stay in memory.
    """

    __slots__ = ("node", "_length", "_hold")

    def __init__(self, node: Node, length: int, hold: Hold):
        self.node, self._length, self._hold = node, length, hold

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [
                TaskFuture(self.node, i, self._hold) for i in range(*index.indices(self._length))
            ]
        i = operator.index(index)  # a TypeError for what is not an int
        if i < 0:
            i += self._length
        if not 0 <= i < self._length:
            raise IndexError(f"FutureList index {index} out of range (length {self._length})")
        return TaskFuture(self.node, i, self._hold)

    def __iter__(self):
        node, hold = self.node, self._hold
        return (TaskFuture(node, i, hold) for i in range(self._length))

    def __eq__(self, other) -> bool:
        if isinstance(other, FutureList):
            return self.node is other.node and self._length == other._length
        return NotImplemented

    __hash__ = None

    def __add__(self, other) -> list:
        return [*self, *other]

    def __radd__(self, other) -> list:
        return [*other, *self]

    def result(self, raise_on_failure: bool = True) -> list:
        return [f.result(raise_on_failure=raise_on_failure) for f in self]

    def wait(self) -> list[State]:
        return [f.wait() for f in self]

    def __await__(self):
        """In an async flow: wait without blocking the loop, then the list of results."""
        import asyncio  # (only async flows await futures)

        return asyncio.to_thread(self.result).__await__()

    def __repr__(self) -> str:
        return f"<FutureList of {self._length} runs of {self.node.name}>"


def futures_in(value: Any):
    """The futures in an argument: itself, or inside a list, tuple or dict."""
    if isinstance(value, TaskFuture):
        yield value
    elif isinstance(value, FutureList):
        yield from value
    elif isinstance(value, list | tuple):
        for v in value:
            if isinstance(v, TaskFuture):
                yield v
    elif isinstance(value, dict):
        for v in value.values():
            if isinstance(v, TaskFuture):
                yield v


def states_in(value: Any) -> list[State]:
    if isinstance(value, State):
        return [value]
    return []


def children_of_one_map(value: Any) -> Node | None:
    """The mapped node whose futures, child 0 to n-1, `value` is; else None."""
    if isinstance(value, FutureList):
        return value.node
    if not isinstance(value, list) or not value or not isinstance(value[0], TaskFuture):
        return None
    node = value[0].node
    if not node.mapped:
        return None
    for i, f in enumerate(value):
        if not isinstance(f, TaskFuture) or f.node is not node or f.index != i:
            return None
    return node


def _resolve(value: Any) -> Any:
    """Futures and states in an argument replaced by what they hold (read holding the turn)."""
    if isinstance(value, TaskFuture):
        return value_for(value.state_now())
    if isinstance(value, State):
        return value_for(value)
    if isinstance(value, FutureList):
        return [value_for(f.state_now()) for f in value]
    if isinstance(value, list | tuple):
        return type(value)(_resolve(v) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    return value


def value_for(state: State) -> Any:
    """What a downstream receives: the result, or the exception of a failed state."""
    if state.type is StateType.FAILED or state.type is StateType.CRASHED:
        return state.exception
    return state.result()
