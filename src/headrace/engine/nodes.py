"""The records the core runs: a flow run's `Node`s, their `Input`s, and `Attempt`s.

A flow style builds these (graph_run from a Flow, function_flow from task
calls) and the core changes their run-state fields; see `engine.core` for
what each field means. Slotted, since a run may hold a million.
"""

from __future__ import annotations

from types import MappingProxyType

from headrace.engine.task_run import TaskSpec
from headrace.states import MappedState, State

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

WHOLE, ELEMENT = 0, 1
NOTHING = MappingProxyType({})  # the shared value of an empty mapping field


class Input:
    """Where one argument of a node comes from: an upstream node's result.

    `key` is the argument's name, or None when only the upstream's state
    matters. `mapped` inputs are iterated by a mapped node (child by child
    when the upstream is mapped too); `flat` ones are un-nested first.
    """

    __slots__ = ("key", "up", "mapped", "flat")

    def __init__(self, key: str | None, up: Node, mapped: bool = False, flat: bool = False):
        self.key = key
        self.up = up
        self.mapped = mapped
        self.flat = flat

    @property
    def element_wise(self) -> bool:
        return self.mapped and not self.flat and self.up.mapped


class Node:
    """One task of a flow run and its run state (see the module docstring)."""

    __slots__ = (
        "task",
        "name",
        "key",
        "run_id",
        "spec",
        "mapped",
        "inputs",
        "constants",
        "iterated",
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
        "sources",
        "given_children",
        "unexpandable",
        "owner",
        "extra_holds",
        "call",
        "given",
        "batch",
    )

    def __init__(
        self,
        task,
        key: str,
        run_id: str,
        inputs: list[Input] = (),
        constants: dict[str, Any] | None = None,
        iterated: dict[str, Any] | None = None,
        mapped: bool = False,
    ):
        self.task = task
        self.name = task.name
        self.key = key
        self.run_id = run_id
        self.spec: TaskSpec | None = None
        self.mapped = mapped
        # Empty fields share one immutable value (a run may make a node per call);
        # whoever fills one gives the node its own.
        self.inputs = list(inputs) if inputs else ()
        self.constants = constants if constants is not None else {}
        self.iterated = iterated or NOTHING
        self.keep = False
        self.start = False
        self.ups: list[tuple[Node, int]] | tuple = ()
        self.downs: list[tuple[Node, int]] | tuple = ()
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
        self.sources: dict[Node, list[State]] = NOTHING
        self.given_children: list[State] | None = None
        self.unexpandable: Node | None = None
        self.owner: int | None = None  # the thread a direct call runs on
        self.extra_holds = 0  # holds on each result beyond its consumers' (live futures)
        self.call = None  # what a function flow's call adds (see function_flow.Call)
        self.given: State | None = None  # a finished state from before the run
        self.batch = None  # a mapped node's batch plan (engine.batch), False for none

    def unit_id(self, index: int | None) -> str:
        """The run id of the unit: the node's, or `<node's>.<index>` for a child."""
        return self.run_id if index is None else f"{self.run_id}.{index}"

    def unit_name(self, index: int | None) -> str:
        return self.name if index is None else f"{self.name}[{index}]"

    def upstream_ids(self, index: int | None) -> list[str]:
        """The run ids a unit's inputs came from: its recorded dependency edges."""
        call = self.call
        if call is not None:  # its inputs, then what it picked and traced
            if not (self.inputs or call.picks or call.traced or call.per_child):
                return []
            ids = [
                f"{inp.up.run_id}.{index}" if inp.element_wise else inp.up.run_id
                for inp in self.inputs
                if inp.key is not None and (index is not None or not inp.element_wise)
            ]
            return [*dict.fromkeys([*ids, *call.upstream_ids(index)])]
        return [
            up.run_id if mode == WHOLE or index is None else f"{up.run_id}.{index}"
            for up, mode in self.ups
            if not up.preset
        ]

    def __repr__(self) -> str:
        return f"<Node {self.key}>"


class Attempt:
    """One submission of a unit: its bound arguments and how far it got."""

    __slots__ = ("node", "index", "arguments", "run_count", "loop", "start")

    def __init__(self, node: Node, index: int | None, arguments: dict, start: float):
        self.node = node
        self.index = index
        self.arguments = arguments
        self.run_count = 1
        self.loop: tuple[int, Any] = (1, None)
        self.start = start


__all__ = ["Node", "Input", "Attempt", "ReadyStack", "WHOLE", "ELEMENT"]


def give_state(node: Node, state: State | None) -> None:
    """A state known before the run (`task_states`, a flow's retry, resume): a finished
    one becomes the node's state when it is added (`given`); a Mapped one with unfinished
    children is reused child by child when the node expands."""
    if isinstance(state, MappedState) and not all(c.is_finished() for c in state.map_states):
        node.given_children = state.map_states
    elif state is not None and state.is_finished():
        node.reused = True
        if isinstance(state, MappedState):
            node.children = list(state.map_states)
        node.given = state


class ReadyStack(list):
    """The units ready to run, `(node, index)`, the last pushed popped first. All the
    children of a mapped node pushed at once are one entry, a `_Span`, not one each."""

    def push_all(self, node: Node, length: int) -> None:
        """Push children 0 to `length - 1` of `node`, to pop in that order."""
        self.append(_Span(node, length))

    def pop_unit(self) -> tuple[Node, int | None]:
        top = self[-1]
        if top.__class__ is not _Span:
            return self.pop()
        top.next += 1
        if top.next == top.stop:
            self.pop()
        return top.node, top.next - 1

    def top_span(self) -> _Span | None:
        """The entry that pops next when it is a span of children, else None."""
        top = self[-1]
        return top if top.__class__ is _Span else None

    def take(self, span: _Span, count: int) -> range:
        """Pop the next `count` children (or fewer, the rest) of `span`, the top entry."""
        first = span.next
        span.next = stop = min(span.stop, first + count)
        if stop == span.stop:
            self.pop()
        return range(first, stop)

    def units(self) -> list[tuple[Node, int | None]]:
        """Unit by unit, bottom first (the last pops first)."""
        out = []
        for entry in self:
            if entry.__class__ is _Span:
                out.extend((entry.node, i) for i in range(entry.stop - 1, entry.next - 1, -1))
            else:
                out.append(entry)
        return out


class _Span:
    __slots__ = ("node", "next", "stop")

    def __init__(self, node: Node, stop: int):
        self.node, self.next, self.stop = node, 0, stop
