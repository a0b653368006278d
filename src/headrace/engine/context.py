"""Run context: who is running now, kept in contextvars.

Two variables: the flow run (set once per run) and the task run (set by
the task-run pipeline around each call). `context` is the read-only view
users import: `from headrace import context`. Reading a name outside a
run raises `ContextError` saying so; `context.get(name, default)` never
raises, and gives `default` for a field that has no value yet (no run, or a
value still `None`, such as `task_loop_result` before the first LOOP).
"""

from __future__ import annotations

import contextvars

from headrace._pid import HOST
from headrace.errors import ContextError
from headrace.executors.base import Shared

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class FlowRunContext(Shared):
    """The flow run as its task runs see it. Shared by them all, so a worker in another
    process receives it (and the parameters) once."""

    __slots__ = ("flow_run_id", "flow_run_name", "flow_name", "parameters", "log_prints",
                 "persist_result", "cache_url", "host")  # fmt: skip

    def __init__(
        self,
        flow_run_id: str,
        flow_run_name: str,
        flow_name: str,
        parameters: dict,
        log_prints: bool = False,
        persist_result: bool = True,
    ):
        self.flow_run_id = flow_run_id
        self.flow_run_name = flow_run_name
        self.flow_name = flow_name
        self.parameters = parameters
        self.log_prints = log_prints
        self.persist_result = persist_result  # the default of the run's tasks
        from headrace.store import database_url

        self.cache_url = database_url()  # where the run's tasks find their cache entries
        self.host = HOST  # where the run reads its results (workers may be elsewhere)


class TaskRunContext:
    __slots__ = (
        "task_name",
        "task_run_name",
        "map_index",
        "task_run_count",
        "task_loop_count",
        "task_loop_result",
        "task_tags",
        "task_run_id",
    )

    def __init__(
        self, task_name: str, task_run_name: str, map_index: int | None, tags, run_id=None
    ):
        self.task_name = task_name
        self.task_run_name = task_run_name
        self.map_index = map_index
        self.task_run_count = 1
        self.task_loop_count = 1
        self.task_loop_result = None
        self.task_tags = tags
        self.task_run_id = run_id


flow_run_var: contextvars.ContextVar[FlowRunContext | None] = contextvars.ContextVar(
    "headrace_flow_run", default=None
)
task_run_var: contextvars.ContextVar[TaskRunContext | None] = contextvars.ContextVar(
    "headrace_task_run", default=None
)

_FLOW_FIELDS = frozenset(FlowRunContext.__slots__)
_TASK_FIELDS = frozenset(TaskRunContext.__slots__)


class RunContext:
    """Read-only view of the current run: `context.task_name`, `context.parameters`, ..."""

    __slots__ = ()

    def get(self, name: str, default: Any = None) -> Any:
        """The field's value, or `default` when it has none (as in Prefect's context)."""
        if name in _TASK_FIELDS:
            value = getattr(task_run_var.get(), name, None)
        elif name in _FLOW_FIELDS:
            value = getattr(flow_run_var.get(), name, None)
        else:
            value = None
        return default if value is None else value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for fields, var, kind in (
            (_TASK_FIELDS, task_run_var, "task"),
            (_FLOW_FIELDS, flow_run_var, "flow"),
        ):
            if name in fields:
                ctx = var.get()
                if ctx is None:
                    raise ContextError(
                        f"context.{name} is set only inside a {kind} run; no {kind} is running "
                        f"here. Use context.get({name!r}, default) to read it without raising."
                    )
                return getattr(ctx, name)
        raise AttributeError(
            f"context has no field {name!r}; its fields are: "
            + ", ".join(sorted(_FLOW_FIELDS | _TASK_FIELDS))
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("context is read-only")

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for var, fields in ((flow_run_var, _FLOW_FIELDS), (task_run_var, _TASK_FIELDS)):
            ctx = var.get()
            if ctx is not None:
                out.update({f: getattr(ctx, f) for f in fields})
        return out

    def __repr__(self) -> str:
        fields = self.to_dict()
        if not fields:
            return "<context: empty (no flow or task is running)>"
        return "<context " + " ".join(f"{k}={v!r}" for k, v in sorted(fields.items())) + ">"


context = RunContext()
