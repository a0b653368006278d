"""Graph flows: a DAG of task nodes built inside `with Flow("name") as flow:`.

A `Flow` holds nodes (task copies made by calls inside the block, and
Parameters), the edges between them, and each node's constant arguments.
`with flow:` extends an existing flow. Building never runs anything;
`flow.run(...)` hands the graph to the engine.

Errors at build time name the culprit: a dependency that would make a
cycle, a task of another flow used as an input, two Parameters with one
name, an argument a task does not take.

This module is the graph layer: it imports the engine only inside `run`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from headrace import _build
from headrace.edges import Edge, flatten, unmapped
from headrace.errors import CycleError, FlowBuildError
from headrace.tasks import (
    CollectDict,
    CollectList,
    CollectSet,
    CollectTuple,
    Constant,
    Task,
    check_mappable,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class Flow:
    """A named graph of tasks. Use as a context manager to add tasks to it."""

    def __init__(
        self,
        name: str,
        tasks: Iterable[Task] = (),
        edges: Iterable[Edge] = (),
        persist_result: bool | None = None,
    ):
        if not isinstance(name, str) or not name:
            raise ValueError("a Flow needs a name, e.g. Flow('xfiles')")
        self.persist_result = persist_result  # its tasks' default; None: on
        self.name = name
        self.module = sys._getframe(1).f_globals.get("__name__")  # where it can be loaded
        self._tasks: dict[Task, None] = {}  # an ordered set
        self._in: dict[Task, list[Edge]] = {}
        self._out: dict[Task, list[Edge]] = {}
        self._slug_counts: dict[str, int] = {}
        self._parameters: dict[str, Task] = {}
        self._tokens: list = []
        self._reference_tasks: list[Task] | None = None
        for t in tasks:
            self.add_task(t)
        for e in edges:
            self.add_edge(e.upstream, e.downstream, e.key, e.mapped, e.flat)

    # -- context manager ---------------------------------------------------
    def __enter__(self) -> Flow:
        outer = _build.current().flow
        if outer is not None and outer is not self:
            raise FlowBuildError(
                f"Flow {self.name!r} is entered inside the block of flow {outer.name!r}; "
                "headrace has no nested flows. Build one flow and put a branch's tasks in "
                "`with case(condition, value):`, or end the block of "
                f"{outer.name!r} before building {self.name!r}."
            )
        self._tokens.append(_build.push(flow=self, conditions=()))
        return self

    def __exit__(self, *exc) -> None:
        _build.pop(self._tokens.pop())

    # -- reading the graph ---------------------------------------------------
    @property
    def tasks(self) -> list[Task]:
        """Every node, in the order it was added."""
        return list(self._tasks)

    @property
    def edges(self) -> list[Edge]:
        return [e for edges in self._in.values() for e in edges]

    @property
    def constants(self) -> dict[Task, dict[str, Any]]:
        return {t: dict(t.constants) for t in self._tasks if t.constants}

    def parameters(self) -> list[Task]:
        return list(self._parameters.values())

    def upstream_edges(self, task: Task) -> list[Edge]:
        return list(self._in[self._own(task)])

    def downstream_edges(self, task: Task) -> list[Edge]:
        return list(self._out[self._own(task)])

    def upstream_tasks(self, task: Task) -> set[Task]:
        return {e.upstream for e in self._in[self._own(task)]}

    def downstream_tasks(self, task: Task) -> set[Task]:
        return {e.downstream for e in self._out[self._own(task)]}

    def terminal_tasks(self) -> list[Task]:
        """Tasks nothing depends on."""
        return [t for t in self._tasks if not self._out[t]]

    def reference_tasks(self) -> list[Task]:
        """The tasks whose states decide the flow's: those given to
        `set_reference_tasks`, else the terminal tasks."""
        if self._reference_tasks is not None:
            return list(self._reference_tasks)
        return self.terminal_tasks()

    def set_reference_tasks(self, tasks: Iterable[Task]) -> None:
        """Judge the flow's state by these tasks instead of its terminal tasks."""
        tasks = list(tasks)
        for t in tasks:
            if t not in self._tasks:
                raise FlowBuildError(
                    f"set_reference_tasks names {t!r}, which is not a task of flow "
                    f"{self.name!r}; use the tasks returned by calls inside `with Flow(...)`."
                )
        self._reference_tasks = tasks

    def root_tasks(self) -> list[Task]:
        return [t for t in self._tasks if not self._in[t]]

    def get_tasks(self, name: str | None = None, tags: Iterable[str] = ()) -> list[Task]:
        wanted = set(tags)
        return [
            t for t in self._tasks if (name is None or t.name == name) and wanted <= set(t.tags)
        ]

    def sorted_tasks(self) -> list[Task]:
        """The nodes in an order where every task follows its upstream tasks."""
        pending = {t: len({e.upstream for e in self._in[t]}) for t in self._tasks}
        ready = [t for t, n in pending.items() if n == 0]
        order = []
        while ready:
            t = ready.pop(0)
            order.append(t)
            for d in {e.downstream for e in self._out[t]}:
                pending[d] -= 1
                if pending[d] == 0:
                    ready.append(d)
        return order

    def __contains__(self, task: object) -> bool:
        return task in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"<Flow {self.name!r}: {len(self._tasks)} tasks>"

    def _own(self, task: Task) -> Task:
        if task not in self._tasks:
            raise FlowBuildError(f"{task!r} is not a task of flow {self.name!r}")
        return task

    # -- building ------------------------------------------------------------
    def add_task(self, task: Task) -> Task:
        """Add a node. A task already in another flow is refused."""
        if not isinstance(task, Task):
            raise TypeError(f"Flow {self.name!r} can only hold tasks, got {task!r}")
        if task in self._tasks:
            return task
        if task.flow is not None and task.flow is not self:
            raise FlowBuildError(
                f"Task {task.name!r} belongs to flow {task.flow.name!r} and cannot be used in "
                f"flow {self.name!r}. Call the task again inside `with Flow({self.name!r})` to "
                "make a node of this flow, or extend the first flow with `with flow:`."
            )
        from headrace.parameters import Parameter

        if isinstance(task, Parameter):
            if task.name in self._parameters:
                raise FlowBuildError(
                    f"Flow {self.name!r} already has a Parameter named {task.name!r}; "
                    "parameter names must be unique. Reuse the first one."
                )
            self._parameters[task.name] = task
        task.flow = self
        n = self._slug_counts.get(task.name, 0) + 1
        self._slug_counts[task.name] = n
        task.slug = f"{task.name}-{n}"
        self._tasks[task] = None
        self._in[task] = []
        self._out[task] = []
        return task

    def add_edge(
        self,
        upstream: Task,
        downstream: Task,
        key: str | None = None,
        mapped: bool = False,
        flat: bool = False,
    ) -> Edge:
        """Make `downstream` depend on `upstream` (its result as `key`, or its state)."""
        for t in (upstream, downstream):
            if not isinstance(t, Task):
                raise TypeError(f"edges join tasks; got {t!r}")
        from headrace.parameters import Parameter

        if isinstance(downstream, Parameter):
            raise FlowBuildError(
                f"Parameter {downstream.name!r} cannot depend on {upstream.name!r}: a Parameter "
                "takes its value from flow.run(parameters={...}) and waits for no task. Make "
                f"the tasks that use {downstream.name!r} depend on {upstream.name!r} instead."
            )
        new_pair = upstream in self._tasks and downstream in self._tasks
        self.add_task(upstream)
        self.add_task(downstream)
        if upstream is downstream:
            raise CycleError([upstream, upstream])
        if key is not None and any(e.key == key for e in self._in[downstream]):
            raise FlowBuildError(
                f"Task {downstream.name!r} already receives argument {key!r} from another task"
            )
        if new_pair:
            path = self._path(downstream, upstream)
            if path:
                raise CycleError([upstream, *path])
        edge = Edge(upstream, downstream, key, mapped, flat)
        self._in[downstream].append(edge)
        self._out[upstream].append(edge)
        return edge

    def _drop_unused(self, task: Task) -> None:
        """Remove a node nothing depends on, and its edges (an empty `case` block's gate)."""
        if self._out[self._own(task)]:
            raise FlowBuildError(f"{task!r} has downstream tasks and cannot be removed")
        for e in self._in.pop(task):
            self._out[e.upstream].remove(e)
        del self._out[task], self._tasks[task]
        if task.slug == f"{task.name}-{self._slug_counts[task.name]}":
            self._slug_counts[task.name] -= 1
        task.flow = None
        task.slug = None

    def _path(self, start: Task, goal: Task) -> list[Task] | None:
        """A downstream path from start to goal, if any (depth-first)."""
        parents: dict[Task, Task | None] = {start: None}
        stack = [start]
        while stack:
            t = stack.pop()
            if t is goal:
                path = [t]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])
                return path[::-1]
            for e in self._out[t]:
                if e.downstream not in parents:
                    parents[e.downstream] = t
                    stack.append(e.downstream)
        return None

    def add_input(self, node: Task, key: str | None, value: Any, mapped: bool) -> bool:
        """Record one argument of `node`: an edge for a task, else a constant.

        Returns True when `value` is a constant that the mapped node iterates.
        """
        flat = False
        while isinstance(value, unmapped | flatten):
            if isinstance(value, unmapped):
                mapped = False
            else:
                flat = True
            value = value.value
        if not isinstance(value, Task):
            value = self._collect(value)
        if key is None and not isinstance(value, Task):
            value = self.add_task(Constant(value))  # Prefect 1 makes it a constant task
        if isinstance(value, Task):
            self.add_edge(value, node, key, mapped, flat)
            return False
        if flat:
            from headrace.edges import flatten_once

            value = flatten_once(value, key)
        if mapped:
            value = check_mappable(value, key, node.name)
        node.constants[key] = value
        return mapped

    def _collect(self, value: Any) -> Any:
        """A collection holding tasks becomes a node that builds it; else unchanged."""
        if isinstance(value, dict):
            if any(isinstance(v, Task) for kv in value.items() for v in kv):
                collector = CollectDict(name="Dict")
                return collector._add_node(
                    self._context(), (list(value.keys()), list(value.values())), {}, None, False
                )
            return value
        kinds = {list: CollectList, tuple: CollectTuple, set: CollectSet}
        kind = kinds.get(type(value))
        if kind and any(isinstance(v, Task) for v in value):
            collector = kind(name=type(value).__name__.capitalize())
            return collector._add_node(self._context(), tuple(value), {}, None, False)
        return value

    def _context(self) -> _build.BuildContext:
        """The build context for nodes this flow adds itself (inside or outside `with`)."""
        ctx = _build.current()
        return ctx if ctx.flow is self else _build.BuildContext(flow=self)

    def set_dependencies(
        self,
        task: Task,
        upstream_tasks: Iterable[Task] = (),
        downstream_tasks: Iterable[Task] = (),
        keyword_tasks: dict[str, Task] | None = None,
        mapped: bool = False,
    ) -> None:
        """Add `task` and its edges directly (the imperative way to build)."""
        self.add_task(task)
        if mapped:
            task.mapped = True
        for up in upstream_tasks:
            self.add_input(task, None, up, mapped)
        for down in downstream_tasks:
            self.add_edge(task, down)
        for key, up in (keyword_tasks or {}).items():
            self.add_input(task, key, up, mapped)

    def chain(self, *tasks: Task | Iterable[Task]) -> list[Edge]:
        """Make each task (or every task of a list) depend on the one before it.

        Returns the edges added, in order.
        """
        groups = [list(t) if isinstance(t, list | tuple | set) else [t] for t in tasks]
        return [
            self.add_edge(up, down)
            for before, after in zip(groups, groups[1:])
            for up in before
            for down in after
        ]

    # -- running ---------------------------------------------------------------
    def run(
        self,
        parameters: dict[str, Any] | None = None,
        *,
        executor=None,
        throttle: dict[str, int] | None = None,
        task_states: dict | None = None,
        start_tasks: Iterable[Task] | None = None,
        return_tasks: Iterable[Task] | None = None,
        clock=None,
        recorder=None,
    ):
        """Run the flow and return its `FlowState`; `state[task]` is a task's state.

        `parameters` are checked before anything runs. `executor` defaults to
        `LocalExecutor()`. `throttle={tag: n}` caps running task runs per tag.
        `task_states` gives finished states to reuse instead of running.
        `start_tasks` runs only these (parameters included) and what is
        downstream of them (their triggers unchecked, their given states
        ignored); tasks above them reuse a given state or are NotRun and pass
        None. Parameters always resolve. `return_tasks` keeps those results besides the terminal
        tasks' and the parameters'. `clock` is for tests; `recorder` (a
        `headrace.store.base.Recorder`) receives the run's history instead of the
        settings' store.
        """
        from headrace.engine.graph_run import run_flow

        options = (executor, throttle, task_states, start_tasks, return_tasks, clock, recorder)
        return run_flow(self, parameters, *options)

    def resume(self, run_id: str, *, parameters: dict[str, Any] | None = None, **options):
        """Run the flow again as a resume of the run `run_id` names (an id, a prefix or a
        name): with its recorded parameters, reusing as Cached every task run its chain
        completed with a result that reads (see `headrace.engine.resume`). `parameters`
        replace recorded values; `options` are those of `run` but `task_states` and
        `start_tasks`."""
        from headrace.engine.graph_run import run_flow
        from headrace.engine.resume import plan_resume
        from headrace.store import open_reader

        with open_reader() as reader:
            plan = plan_resume(reader, run_id, self.name, parameters)
        known = ("executor", "throttle", "return_tasks", "clock", "recorder")
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"resume() takes {', '.join(known)}; not {', '.join(unknown)}.")
        return run_flow(self, plan.parameters, resume=plan, **options)

    def serve(self, **options) -> None:
        """Run the flow on a schedule until Ctrl-C: `cron="0 2 * * *"` (with `timezone`)
        or `interval=timedelta(...)`, `catchup`, `max_catchup`, `overlap`, `parameters`,
        or several `schedules=[Schedule(...), ...]` (see `headrace.serving`)."""
        from headrace.serving import serve

        serve(self, **options)

    def visualize(self, filename: str | None = None, format: str = "svg", flow_state=None):
        """Draw the flow as a `graphviz.Digraph` (see `headrace.visualize`)."""
        from headrace.visualize import visualize

        return visualize(self, filename=filename, format=format, flow_state=flow_state)
