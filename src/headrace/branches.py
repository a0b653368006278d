"""Conditional branches of graph flows: `case`, `switch`, `ifelse`, `merge`.

Each branch is gated by a small comparison task that raises SKIP when its
condition does not hold; the skip then propagates to the branch's tasks
(`skip_on_upstream_skip`). `merge` joins branches: it runs unless every
branch was skipped and returns the first result that is not None.
"""

from __future__ import annotations

import contextlib
from typing import Any

from headrace import _build
from headrace.signals import SKIP
from headrace.tasks import Task
from headrace.triggers import not_all_skipped


class CompareValue(Task):
    """Pass when the condition's result equals `value`; otherwise SKIP."""

    def __init__(self, value: Any, **kwargs):
        self.value = value
        super().__init__(name=kwargs.pop("name", f"case({value!r})"), **kwargs)

    def run(self, condition, value):
        if condition != value:
            raise SKIP(f"Condition {condition!r} did not match {value!r}.")
        return condition


def _flow_context(what: str) -> _build.BuildContext:
    ctx = _build.current()
    if ctx.flow is None:
        raise RuntimeError(f"{what} is used inside `with Flow(...)` only")
    return ctx


def _compare(ctx: _build.BuildContext, condition: Task, value: Any) -> Task:
    return CompareValue(value)._add_node(ctx, (condition, value), {}, None, False)


@contextlib.contextmanager
def case(condition: Task, value: Any):
    """Tasks called inside the block run only when `condition`'s result == `value`."""
    ctx = _flow_context("case(...)")
    compare = _compare(ctx, condition, value)
    token = _build.push(conditions=(*ctx.conditions, compare))
    try:
        yield compare
    finally:
        _build.pop(token)


def switch(condition: Task, cases: dict[Any, Task]) -> None:
    """Run only the task in `cases` whose key equals `condition`'s result; skip the rest."""
    ctx = _flow_context("switch(...)")
    for value, branch in cases.items():
        ctx.flow.add_edge(_compare(ctx, condition, value), branch)


class _AsBool(Task):
    def run(self, value):
        return bool(value)


def ifelse(condition: Task, true_task: Task, false_task: Task) -> None:
    """Run `true_task` when `condition`'s result is truthy, else `false_task`."""
    ctx = _flow_context("ifelse(...)")
    as_bool = _AsBool(name="bool")._add_node(ctx, (condition,), {}, None, False)
    switch(as_bool, {True: true_task, False: false_task})


class Merge(Task):
    """The first non-None result among its inputs; runs unless all were skipped."""

    def __init__(self, **kwargs):
        kwargs.setdefault("name", "merge")
        super().__init__(trigger=not_all_skipped, skip_on_upstream_skip=False, **kwargs)

    def run(self, *values):
        return next((v for v in values if v is not None), None)


def merge(*tasks: Task) -> Task:
    """Join the branches of a `case`/`switch`/`ifelse` into one result."""
    ctx = _flow_context("merge(...)")
    return Merge()._add_node(ctx, tasks, {}, None, False)
