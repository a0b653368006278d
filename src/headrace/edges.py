"""Edges and the markers that shape them: `unmapped` and `flatten`.

An `Edge` says that `downstream` needs `upstream`: its result as the
argument `key`, or only its state when `key` is None (`upstream_tasks=`).
`mapped` edges are iterated by a mapped task; `flat` edges are un-nested
one level first.
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class Edge:
    """Equal (and hashed) by all five fields; never changed once made."""

    __slots__ = ("upstream", "downstream", "key", "mapped", "flat")

    def __init__(self, upstream: Any, downstream: Any, key: str | None = None,
                 mapped: bool = False, flat: bool = False):  # fmt: skip
        self.upstream, self.downstream, self.key = upstream, downstream, key
        self.mapped, self.flat = mapped, flat

    def _fields(self) -> tuple:
        return (self.upstream, self.downstream, self.key, self.mapped, self.flat)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Edge:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        label = f"[{self.key}]" if self.key else ""
        kind = " (mapped)" if self.mapped else ""
        return f"<Edge {self.upstream.name} -> {self.downstream.name}{label}{kind}>"


class _Marker:
    """A value wrapped to say how a task call takes it."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class unmapped(_Marker):
    """Pass a value whole to every child of `task.map(...)` instead of iterating it."""

    __slots__ = ()


class flatten(_Marker):
    """Un-nest a list of lists one level before mapping over it (or passing it)."""

    __slots__ = ()


def is_nested(value: Any) -> bool:
    """Whether `flatten` un-nests `value`: an iterable that is not a str, bytes or dict."""
    return hasattr(value, "__iter__") and not isinstance(value, str | bytes | dict)


def flatten_once(value: Any, name: str, warn: Callable[[str], Any] | None = None) -> list:
    """Concatenate the items of `value`, as Prefect's `flatten` does (see `flatten_origins`)."""
    return flatten_origins(value, name, warn)[0]


def flatten_origins(
    value: Any, name: str, warn: Callable[[str], Any] | None = None
) -> tuple[list, list[int]]:
    """The items of `value`'s items, and for each the index of the item it came from.

    An item that is not itself a list passes through as one item, so None
    from a skipped run and the exception of a failed one keep their place;
    `warn(message)` is called once when any other item did. A `value` that
    cannot be iterated is a MappingError naming the input.
    """
    if not is_nested(value):
        from headrace.errors import MappingError

        raise MappingError(
            f"flatten({name}) needs a list of lists, but {name} is a {type(value).__name__}: "
            f"{value!r:.60}. Pass a list, or drop flatten(...)."
        )
    out: list = []
    origins: list[int] = []
    loose = 0
    for i, item in enumerate(value):
        if is_nested(item):
            before = len(out)
            out.extend(item)
            origins.extend([i] * (len(out) - before))
        else:
            out.append(item)
            origins.append(i)
            loose += item is not None and not isinstance(item, BaseException)
    if loose and warn is not None:
        warn(f"flatten({name}): {loose} item(s) were not lists and passed through as single items.")
    return out, origins
