"""Graph flows on the core: every node of the flow is added before the run starts.

`run_flow` checks the parameters, turns each task of the flow into a core
`Node` (its edges become `Input`s, its constant arguments stay constants),
chooses the states known before anything runs (parameters, `task_states`
to reuse, `NotRun` above `start_tasks`), and lets the core run. The flow's
state is judged by its reference tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from headrace.engine import logs, progress
from headrace.engine.clock import SYSTEM_CLOCK
from headrace.engine.context import FlowRunContext
from headrace.engine.core import INTERRUPTED, Core
from headrace.engine.entry import entry_point
from headrace.engine.names import new_run_id, slug
from headrace.engine.nodes import Input, Node, give_state
from headrace.engine.recorder import flow_run_ended, flow_run_started
from headrace.engine.throttle import Throttle
from headrace.errors import ParameterError
from headrace.results.persist import persist_default
from headrace.states import (
    Cancelled,
    Completed,
    Crashed,
    FlowState,
    MappedState,
    NotRun,
    State,
    StateType,
    failure_summary,
)
from headrace.store import default_recorder

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class GraphRun:
    """One run of one graph flow: its nodes on a core. Create, then call `run()` once."""

    def __init__(
        self,
        flow,
        parameters: dict[str, Any],
        executor,
        throttle: Throttle,
        task_states: dict,
        start_tasks: list,
        return_tasks: list,
        clock,
        recorder,
        resume=None,
    ):
        self.flow = flow
        self.resume = resume  # an engine.resume.ResumePlan, or None
        self.flow_ctx = FlowRunContext(
            flow_run_id=new_run_id(),
            flow_run_name=slug(),
            flow_name=flow.name,
            parameters=parameters,
            persist_result=persist_default(flow.persist_result),
        )
        shown = None
        if progress.enabled():
            logger = logs.flow_logger(self.flow_ctx.flow_run_name, self.flow_ctx.flow_run_id)
            shown = progress.Progress(logger)
        self.core = Core(executor, throttle, clock, self.flow_ctx, recorder, shown)
        self.nodes: dict[Any, Node] = {}
        for k, task in enumerate(flow.sorted_tasks()):
            self.nodes[task] = Node(
                task,
                key=task.slug,
                run_id=f"{self.flow_ctx.flow_run_id}-{k}",
                inputs=[
                    Input(e.key, self.nodes[e.upstream], e.mapped, e.flat)
                    for e in flow.upstream_edges(task)
                ],
                constants=task.constants,
                iterated={key: task.constants[key] for key in task.mapped_constants},
                mapped=task.mapped,
            )
        self.core.add(
            list(self.nodes.values()), self._presets(task_states, start_tasks, return_tasks)
        )

    def _presets(self, task_states: dict, start_tasks: list, return_tasks: list) -> dict:
        """The states known before anything runs; also marks what is kept and started."""
        from headrace.parameters import Parameter

        keep = set(self.flow.terminal_tasks()) | set(return_tasks)
        starts = set(start_tasks)
        runnable = self._runnable(starts) if starts else None
        presets: dict[Node, State] = {}
        for task, node in self.nodes.items():
            is_parameter = isinstance(task, Parameter)
            node.keep = task in keep or is_parameter
            node.start = task in starts and not is_parameter
            if is_parameter:
                value = self.flow_ctx.parameters[task.name]
                presets[node] = Completed("Parameter resolved.", value)
                continue
            given = None if runnable and task in runnable else task_states.get(task)
            if given is None and self.resume is not None:
                self.resume.give(node, self.core.recorder, self.flow_ctx.flow_run_id)
            else:
                give_state(node, given)
            if node.given is not None:
                presets[node] = node.given
            elif node.given_children is None and runnable is not None and task not in runnable:
                presets[node] = NotRun("Not run: it is above the run's start_tasks.")
        return presets

    def _runnable(self, starts: set) -> set:
        """What a run with `start_tasks` runs: the start tasks and everything
        downstream of them, except what a parameter alone leads to above a
        start task.

        Seed 000 starts at `[bypass, episodes, url]` to skip the home page,
        which is below the `url` parameter but feeds `episodes`; its
        `create_db(db_file)`, below the `db_file` parameter, runs.
        """
        from headrace.parameters import Parameter

        flow = self.flow
        tasks = {t for t in starts if not isinstance(t, Parameter)}
        above = _closure(tasks, flow.upstream_tasks) - tasks
        below = _closure(starts, flow.downstream_tasks)
        return _closure(tasks, flow.downstream_tasks) | (below - above)

    def run(self) -> FlowState:
        self.core.run()
        return self._flow_state()

    def kept_states(self) -> list[State]:
        """The states whose results the caller keeps (terminal, return_tasks, parameters)."""
        kept = []
        for node in self.nodes.values():
            if node.keep and not node.reused and node.state is not None:
                state = node.state
                kept.extend(state.map_states if isinstance(state, MappedState) else [state])
        return kept

    def _flow_state(self) -> FlowState:
        """Failed when a reference task failed, its message naming what failed first."""
        task_states = {task: node.state for task, node in self.nodes.items()}
        failed = [t for t in self.flow.reference_tasks() if task_states[t].is_failed()]
        if not failed:
            return FlowState(
                StateType.COMPLETED, "All reference tasks succeeded.", task_states, name="Completed"
            )
        first = list(self._failed_first())
        covered = {task for task, _, _ in first}
        downstream = [(t.name, task_states[t]) for t in failed if t not in covered]
        message = failure_summary([(name, s) for _, name, s in first], downstream)
        state = FlowState(StateType.FAILED, message, task_states, name="Failed")
        state.exception = (first[0][2] if first else task_states[failed[0]]).exception
        return state

    def _failed_first(self) -> Iterable[tuple[Any, str, State]]:
        """(task, run name, state) of each task run that failed by running, not for its
        upstream, in graph order."""
        for task, node in self.nodes.items():
            if isinstance(node.state, MappedState):
                runs = [(f"{node.name}[{i}]", s) for i, s in enumerate(node.state.map_states)]
            else:
                runs = [(node.name, node.state)]
            for name, state in runs:
                if state.is_failed() and not state.is_trigger_failed():
                    yield task, name, state


def _closure(starts: Iterable, neighbours: Callable[[Any], Iterable]) -> set:
    """`starts` and every node reached from them through `neighbours(node)`."""
    seen = set(starts)
    stack = list(seen)
    while stack:
        for n in neighbours(stack.pop()):
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return seen


def check_parameters(flow, parameters: dict[str, Any] | None) -> dict[str, Any]:
    """Every parameter's value, or a ParameterError naming what is unknown or missing."""
    given = dict(parameters or {})
    declared = {p.name: p for p in flow.parameters()}
    unknown = sorted(set(given) - set(declared))
    missing = sorted(n for n, p in declared.items() if p.required and n not in given)
    problems = []
    if unknown:
        problems.append(f"unknown parameter(s) {', '.join(map(repr, unknown))}")
    if missing:
        problems.append(f"missing required parameter(s) {', '.join(map(repr, missing))}")
    if problems:
        known = ", ".join(repr(n) for n in declared) or "none"
        raise ParameterError(
            f"Flow {flow.name!r} cannot run: {'; '.join(problems)}. Its parameters are: {known}."
        )
    return {n: given.get(n, p.default) for n, p in declared.items()}


def run_flow(
    flow,
    parameters=None,
    executor=None,
    throttle=None,
    task_states=None,
    start_tasks=None,
    return_tasks=None,
    clock=None,
    recorder=None,
    resume=None,
) -> FlowState:
    """Run a graph flow (see `Flow.run` for the keywords) and return its FlowState.

    `recorder` receives the run's history (default: the settings' store); `resume` is
    the ResumePlan of `Flow.resume`."""
    from headrace.engine.limits import in_force
    from headrace.executors import LocalExecutor
    from headrace.executors.base import check_executor

    values = check_parameters(flow, parameters)
    throttle = Throttle(throttle, in_force())
    start_tasks = _task_list(start_tasks, "start_tasks")
    return_tasks = _task_list(return_tasks, "return_tasks")
    check_executor(executor, f"flow {flow.name!r}.run()")
    for given, state in (task_states or {}).items():
        if not isinstance(state, State):
            raise TypeError(
                f"task_states maps {given!r} to {state!r}, which is not a State; pass the "
                "states of an earlier run (flow_state[task]) or headrace.states ones."
            )
    for what, tasks in (("start_tasks", start_tasks), ("return_tasks", return_tasks)):
        for t in tasks:
            if t not in flow:
                raise ValueError(
                    f"{what} names {t!r}, which is not a task of flow {flow.name!r}; "
                    "use the tasks returned by calls inside `with Flow(...)`."
                )
    executor = executor or LocalExecutor()
    executor.validate(flow)
    recorder = recorder or default_recorder()
    graph_run = GraphRun(
        flow,
        values,
        executor,
        throttle,
        dict(task_states or {}),
        start_tasks,
        return_tasks,
        clock or SYSTEM_CLOCK,
        recorder,
        resume,
    )
    logs.configure()
    ctx = graph_run.flow_ctx
    owned = not executor.started
    if owned:  # before the run is recorded: an executor that cannot start runs nothing
        executor.start()
    flow_run_started(
        recorder, ctx.flow_run_id, ctx.flow_run_name, flow.name, "graph", values, None, executor,
        resumed_from=resume.run.id if resume is not None else None,
        entry_point=entry_point(flow, flow.module),
    )  # fmt: skip
    logs.ENGINE.info(
        "Created flow run %r for flow %r",
        ctx.flow_run_name,
        flow.name,
        extra={"flow_run_id": ctx.flow_run_id},
    )

    def end(state: State) -> State:
        state.flow_run_id = ctx.flow_run_id
        # The last line first: whoever follows the log stops reading at the run's end.
        logs.flow_logger(ctx.flow_run_name, ctx.flow_run_id).log(
            40 if state.is_failed() else 20, "Finished in state %s", logs.state_label(state)
        )
        flow_run_ended(recorder, ctx.flow_run_id, state)
        return state

    state = ended = None
    try:
        state = graph_run.run()
        executor.localize(graph_run.kept_states())
    except KeyboardInterrupt:
        # Ctrl-C: nothing more starts (callbacks would), the end is recorded, and only then
        # is the executor cancelled: a second Ctrl-C may cut that short.
        graph_run.core.post((graph_run.core.stop, None))
        state = Cancelled(INTERRUPTED)
        ended = end(state)
        if owned:  # (not again in `finally`)
            owned = False
            executor.cancel()
        raise
    except BaseException as exc:
        state = Crashed(f"The flow run stopped before it finished: {exc!r}", exception=exc)
        raise
    finally:
        if graph_run.core.progress is not None:
            graph_run.core.progress.close()
        if owned:
            executor.shutdown()
        throttle.close()
        ended = ended or end(state)
        recorder.flush()
    return ended


def _task_list(tasks, what: str) -> list:
    """`start_tasks` / `return_tasks`: a list (or other collection) of tasks."""
    if tasks is None:
        return []
    if not isinstance(tasks, list | tuple | set | frozenset):
        raise TypeError(
            f"{what} must be a list of tasks, got {tasks!r}; write {what}=[{tasks!r}] for one task."
        )
    return list(tasks)


__all__ = ["run_flow", "check_parameters", "GraphRun"]
