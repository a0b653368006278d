"""Edges and the markers that shape them: `unmapped` and `flatten`.

An `Edge` says that `downstream` needs `upstream`: its result as the
argument `key`, or only its state when `key` is None (`upstream_tasks=`).
`mapped` edges are iterated by a mapped task; `flat` edges are un-nested
one level first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Edge:
    upstream: Any
    downstream: Any
    key: str | None = None
    mapped: bool = False
    flat: bool = False

    def __repr__(self) -> str:
        label = f"[{self.key}]" if self.key else ""
        kind = " (mapped)" if self.mapped else ""
        return f"<Edge {self.upstream.name} -> {self.downstream.name}{label}{kind}>"


class unmapped:
    """Pass a value whole to every child of `task.map(...)` instead of iterating it."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return f"unmapped({self.value!r})"


class flatten:
    """Un-nest a list of lists one level before mapping over it (or passing it)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return f"flatten({self.value!r})"


def flatten_once(value: Any, name: str) -> list:
    """Concatenate the items of `value`; the error names the input that was not nested."""
    out: list = []
    for item in value:
        if item is None:
            continue
        if isinstance(item, str | bytes) or not hasattr(item, "__iter__"):
            from headrace.errors import MappingError

            raise MappingError(
                f"flatten({name}) needs a list of lists, but an item is {type(item).__name__}: "
                f"{item!r:.60}"
            )
        out.extend(item)
    return out
