"""Conditional branches of graph flows: `case`, `switch`, `ifelse`, `merge`.

Each branch is gated by a small comparison task that raises SKIP when its
condition does not hold; the skip then propagates to the branch's tasks
(`skip_on_upstream_skip`). `merge` joins branches: it runs unless every
branch was skipped and returns the first result that is not None.

Over a mapped condition, `switch` and `ifelse` gate mapped branches child by
child: the comparison is mapped too, and child i of a branch depends on
child i of its comparison. `merge` of mapped branches is mapped the same way.
"""

from __future__ import annotations

import contextlib

from headrace import _build
from headrace.edges import unmapped
from headrace.errors import FlowBuildError
from headrace.signals import SKIP
from headrace.tasks import Task
from headrace.triggers import not_all_skipped

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


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


def _name(obj: Any) -> str:
    return repr(obj.name) if isinstance(obj, Task) else repr(obj)


def _is_mapped(task: Any) -> bool:
    return isinstance(task, Task) and task.mapped


def _check_value(condition: Any, value: Any) -> None:
    if isinstance(value, Task):
        raise FlowBuildError(
            f"The value compared with {_name(condition)} is the task {value.name!r}; a case "
            "value is a constant. To branch on two results being equal, compare them in a "
            f"task: `with case({getattr(condition, 'name', 'condition')}.is_equal("
            f"{value.name}), True):`."
        )


def _compare(ctx: _build.BuildContext, condition: Any, value: Any) -> Task:
    """The gate of one branch: per child when the condition is mapped."""
    _check_value(condition, value)
    if _is_mapped(condition):
        arguments = (condition, unmapped(value))
        return CompareValue(value)._add_node(ctx, arguments, {}, None, True)
    return CompareValue(value)._add_node(ctx, (condition, value), {}, None, False)


@contextlib.contextmanager
def case(condition: Task, value: Any):
    """Tasks called inside the block run only when `condition`'s result == `value`.

    An empty block adds nothing to the flow.
    """
    ctx = _flow_context("case(...)")
    if _is_mapped(condition):
        raise FlowBuildError(
            f"case() cannot gate a block on the mapped task {condition.name!r}: the block's "
            "tasks would all follow one state. To choose per child, map the branches and "
            f"use switch({condition.name}, {{value: mapped_task}}) or ifelse(...)."
        )
    compare = _compare(ctx, condition, value)
    token = _build.push(conditions=(*ctx.conditions, compare))
    try:
        yield compare
    finally:
        _build.pop(token)
        if not ctx.flow.downstream_tasks(compare):
            ctx.flow._drop_unused(compare)


def _branch_tasks(condition: Any, value: Any, branch: Any) -> list[Task]:
    """The tasks of one branch (a task, a list of tasks, or None), checked before building."""
    _check_value(condition, value)
    if branch is None:
        return []
    tasks = list(branch) if isinstance(branch, list | tuple) else [branch]
    for task in tasks:
        if not isinstance(task, Task):
            raise FlowBuildError(
                f"The branch for {value!r} must be a task, a list of tasks or None; got {task!r}."
            )
        if _is_mapped(condition) and not task.mapped:
            raise FlowBuildError(
                f"Task {task.name!r} is a branch of the mapped condition {condition.name!r}, "
                "which chooses a branch per child, so the branch must be mapped too: build "
                f"it with {task.name}.map(...) and each of its children follows the same "
                f"child of {condition.name!r}."
            )
    return tasks


def switch(condition: Task, cases: dict[Any, Any]) -> None:
    """Run only the branch in `cases` whose key equals `condition`'s result; skip the rest.

    A branch is a task, a list of tasks, or None (nothing to run). Over a mapped
    condition the branches are mapped and chosen child by child.
    """
    ctx = _flow_context("switch(...)")
    branches = {value: _branch_tasks(condition, value, b) for value, b in cases.items()}
    for value, tasks in branches.items():
        if tasks:
            compare = _compare(ctx, condition, value)
            for task in tasks:
                ctx.flow.add_edge(compare, task, mapped=compare.mapped)


class _AsBool(Task):
    def run(self, value):
        return bool(value)


def ifelse(condition: Task, true_task: Any, false_task: Any) -> None:
    """Run `true_task` when `condition`'s result is truthy, else `false_task`.

    Each side is a task, a list of tasks, or None, as for `switch`.
    """
    ctx = _flow_context("ifelse(...)")
    _branch_tasks(condition, True, true_task)
    _branch_tasks(condition, False, false_task)
    mapped = _is_mapped(condition)
    as_bool = _AsBool(name="bool")._add_node(ctx, (condition,), {}, None, mapped)
    switch(as_bool, {True: true_task, False: false_task})


class Merge(Task):
    """The first non-None result among its inputs; runs unless all were skipped."""

    def __init__(self, **kwargs):
        kwargs.setdefault("name", "merge")
        super().__init__(trigger=not_all_skipped, skip_on_upstream_skip=False, **kwargs)

    def run(self, *values):
        return next((v for v in values if v is not None), None)


def merge(*tasks: Task) -> Task:
    """Join the branches of a `case`/`switch`/`ifelse` into one result.

    Mapped branches are joined child by child.
    """
    ctx = _flow_context("merge(...)")
    if any(_is_mapped(t) for t in tasks):
        inputs = tuple(t if _is_mapped(t) else unmapped(t) for t in tasks)
        return Merge()._add_node(ctx, inputs, {}, None, True)
    return Merge()._add_node(ctx, tasks, {}, None, False)
