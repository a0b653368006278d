"""The flow being built: set by `with Flow(...)`, `case(...)` and `tags(...)` blocks.

Kept in a contextvar so that building in two threads never mixes flows.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BuildContext:
    flow: Any = None
    conditions: tuple = ()  # condition tasks of enclosing `case` blocks
    tags: frozenset = field(default_factory=frozenset)


_EMPTY = BuildContext()
_current: contextvars.ContextVar[BuildContext] = contextvars.ContextVar(
    "headrace_build", default=_EMPTY
)


def current() -> BuildContext:
    return _current.get()


def push(**changes) -> contextvars.Token:
    ctx = _current.get()
    return _current.set(BuildContext(**{**ctx.__dict__, **changes}))


def pop(token: contextvars.Token) -> None:
    _current.reset(token)


# The function-flow run a task call belongs to (set by the engine while a @flow
# runs); None outside function flows. Kept here so tasks need not import the engine.
function_run: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "headrace_function_run", default=None
)
