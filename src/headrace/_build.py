"""The flow being built: set by `with Flow(...)`, `case(...)` and `tags(...)` blocks.

Kept in a contextvar so that building in two threads never mixes flows.
"""

from __future__ import annotations

import contextvars

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class BuildContext:
    """Where a task call is made: the flow being built, the condition tasks of enclosing
    `case` blocks and the tags of enclosing `tags` blocks. Never changed once made."""

    __slots__ = ("flow", "conditions", "tags")

    def __init__(self, flow: Any = None, conditions: tuple = (), tags: frozenset = frozenset()):
        self.flow, self.conditions, self.tags = flow, conditions, tags


_EMPTY = BuildContext()
_current: contextvars.ContextVar[BuildContext] = contextvars.ContextVar(
    "headrace_build", default=_EMPTY
)


def current() -> BuildContext:
    return _current.get()


def push(**changes) -> contextvars.Token:
    ctx = _current.get()
    fields = {"flow": ctx.flow, "conditions": ctx.conditions, "tags": ctx.tags, **changes}
    return _current.set(BuildContext(**fields))


def pop(token: contextvars.Token) -> None:
    _current.reset(token)


# The function-flow run a task call belongs to (set by the engine while a @flow
# runs); None outside function flows. Kept here so tasks need not import the engine.
function_run: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "headrace_function_run", default=None
)
