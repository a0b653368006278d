"""Targets: the file a task run's result lives in, named by a template.

`@task(target="data_{id}.csv")` names the file from the task's arguments by
name and these fields: `{parameters[x]}` (the flow's parameters),
`{map_index}`, `{task_name}`, `{flow_name}`, `{flow_run_id}` and `{today}`
(the local date, 2026-12-01). An argument of the same name wins over a field.
A template naming anything else is refused when the task is defined, naming
the field and the ones available. The key is the rendered template, under the
task's `result_storage` (`LocalStorage()`, `$HEADRACE_HOME/results`, unless
set).
"""

from __future__ import annotations

import datetime
import inspect
import re
import string

from headrace.errors import HeadraceError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

FIELDS = ("parameters", "map_index", "task_name", "flow_name", "flow_run_id", "today")


class TargetError(HeadraceError, ValueError):
    """A target template that cannot name a file: an unknown field, or a value it lacks."""


class Target:
    """A checked template (see the module docstring). Picklable: it travels with the task."""

    __slots__ = ("template",)

    def __init__(self, template: str, signature: inspect.Signature, task_name: str):
        if not isinstance(template, str) or not template:
            raise TargetError(
                f"Task {task_name!r}: target must be a non-empty str, got {template!r}."
            )
        arguments = [
            p.name
            for p in signature.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            raise TargetError(
                f"Task {task_name!r}: target {template!r} is not a template: {exc}."
            ) from None
        for field in fields:
            root = re.split(r"[.\[]", field, maxsplit=1)[0]
            if root in arguments or root in FIELDS or (takes_any and root):
                continue
            available = ", ".join([*arguments, *FIELDS])
            what = (
                "an empty field: name one"
                if not root
                else f"and {root!r} is neither an argument of the task nor a target field"
            )
            raise TargetError(
                f"Task {task_name!r}: target {template!r} names {{{field}}}, {what}. "
                f"Available: {available}."
            )
        self.template = template

    @property
    def fields(self) -> set[str]:
        """The names the template uses (the part before any `.` or `[`)."""
        parsed = string.Formatter().parse(self.template)
        return {re.split(r"[.\[]", f, maxsplit=1)[0] for _, f, _, _ in parsed if f is not None}

    def check_mapped(self, mapped: set[str], task_name: str) -> None:
        """A map's children must write files of their own: the template names a mapped
        argument or `{map_index}`."""
        if not self.fields & (mapped | {"map_index"}):
            raise TargetError(
                f"Task {task_name!r} is mapped, but its target {self.template!r} names no "
                "mapped argument and no {map_index}, so every child would write the same "
                f"file. Add {{map_index}} or one of {sorted(mapped) or ['its mapped inputs']}."
            )

    def render(
        self, arguments: dict[str, Any], flow_ctx, map_index: int | None, task_name: str
    ) -> str:
        values = {
            "parameters": dict(flow_ctx.parameters or {}) if flow_ctx is not None else {},
            "map_index": map_index,
            "task_name": task_name,
            "flow_name": getattr(flow_ctx, "flow_name", None),
            "flow_run_id": getattr(flow_ctx, "flow_run_id", None),
            "today": datetime.date.today().isoformat(),
            **arguments,
        }
        try:
            return self.template.format_map(values)
        except (KeyError, IndexError, AttributeError) as exc:
            raise TargetError(
                f"Task {task_name!r}: target {self.template!r} cannot be filled in: no value "
                f"for {exc}. (Parameters of this run: {sorted(values['parameters'])}.)"
            ) from None

    def __repr__(self) -> str:
        return f"Target({self.template!r})"
