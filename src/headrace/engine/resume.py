"""Resume: a new run of a flow that reuses what a run chain completed.

A chain is a flow run and the runs it resumed (`resumed_from`), newest
first. `plan_resume` reads it through a Reader and keeps, per task run
identity (task key, map index), the newest task run that

  - completed (Completed or Cached) with a persisted result that reads, and
  - whose recorded upstream task runs, in its own flow run, were kept too:
    an upstream that must run again makes its downstream run again, since
    its inputs may change. (A map as a whole is kept when all its children
    are.)

That is the chain's cache. The new run gets the original run's recorded
parameters and is linked to it; `ResumePlan.give(node)` hands each node
what it reuses (its whole state, or a map's kept children by index) as
`Cached`, and everything else runs. Subflow runs are not resumed: a
subflow called again runs again.
"""

from __future__ import annotations

import contextvars
import time

from headrace._pid import HOST
from headrace.engine import logs
from headrace.errors import HeadraceError, ResultUnreadableError
from headrace.results.persist import ResultRef
from headrace.states import Cached, MappedState, State, _Released

_DONE = ("Completed", "Cached")

# The plan a function flow's call resumes with (set by FunctionFlow.resume around the call).
resuming: contextvars.ContextVar[ResumePlan | None] = contextvars.ContextVar(
    "headrace_resuming", default=None
)


class ResumeError(HeadraceError):
    """A run that cannot be resumed (still running, another flow's, parameters lost)."""


class Kept:
    """What a task key reuses: its whole state, or its children by map index."""

    __slots__ = ("whole", "children", "runs_again")

    def __init__(self):
        self.whole: State | None = None
        self.children: dict[int, State] = {}
        self.runs_again = 0  # task runs recorded for this key that are not kept


class ResumePlan:
    def __init__(self, run, chain: list, kept: dict[str, Kept], parameters: dict):
        self.run = run  # the FlowRun resumed (the chain's newest)
        self.chain = chain  # its FlowRuns, newest first
        self.kept = kept  # by task key, in the order first recorded
        self.parameters = parameters

    def give(self, node, recorder, flow_run_id: str) -> None:
        """Give `node` what the plan keeps of its task key (nothing: it runs), and record
        each reused task run in the new run's history as Cached."""
        from headrace.engine.nodes import give_state
        from headrace.engine.recorder import task_run_done

        kept = self.kept.get(node.key)
        if kept is None:
            return
        if kept.whole is not None:
            give_state(node, kept.whole)
            children = dict(enumerate(kept.whole.map_states)) if kept.whole.is_mapped() else {}
        else:
            children = node.given_children = kept.children
        if not recorder.recording:
            return
        task = node.task
        for index, state in [*children.items(), *([(None, kept.whole)] if kept.whole else [])]:
            parent = node.run_id if index is not None else None
            task_run_done(
                recorder, node.unit_id(index), flow_run_id, task.name, node.unit_name(index),
                node.key, index, parent, [], task.tags, state, time.time(), 1,
            )  # fmt: skip


def plan_resume(reader, ref: str, flow_name: str | None = None,
                parameters: dict | None = None) -> ResumePlan:  # fmt: skip
    """The plan to resume the run `ref` names (an id, a prefix or a name); `parameters`
    replace recorded values (needed for those the history could not keep)."""
    from headrace.store.sql import looks_crashed

    run = reader.flow_run(ref)
    if flow_name is not None and run.flow_name != flow_name:
        raise ResumeError(
            f"Run {run.name!r} ({run.id[:8]}) is a run of flow {run.flow_name!r}, not of "
            f"{flow_name!r}; resume it with that flow."
        )
    if run.parent_id is not None:
        raise ResumeError(
            f"Run {run.name!r} ({run.id[:8]}) is a subflow run; resume its parent flow run "
            f"{run.parent_id[:8]}."
        )
    if run.is_running():
        import time

        if not looks_crashed(run.host, run.pid, None, HOST, time.time()):
            raise ResumeError(
                f"Run {run.name!r} ({run.id[:8]}) is still running (pid {run.pid} on "
                f"{run.host}). Wait for it to end, or stop it, then resume it."
            )
    values = {**run.parameters, **(parameters or {})}
    lost = [k for k, v in values.items() if isinstance(v, dict) and v.get("__truncated__")]
    if lost:
        raise ResumeError(
            f"Run {run.name!r} ({run.id[:8]}) had parameter(s) {', '.join(map(repr, lost))} "
            "too large or not JSON, so the history did not keep their values. Pass them: "
            "flow.resume(run_id, parameters={...})."
        )
    chain, seen = [run], {run.id}
    while chain[-1].resumed_from and chain[-1].resumed_from not in seen:
        seen.add(chain[-1].resumed_from)
        chain.append(reader.flow_run(chain[-1].resumed_from))
    kept: dict[str, Kept] = {}
    for past in reversed(chain):  # oldest first: a newer run's task runs win
        _keep(reader.task_runs(past.id), kept)
    return ResumePlan(run, chain, kept, values)


def _keep(records: list, kept: dict[str, Kept]) -> None:
    """Fold one flow run's task runs into `kept` (see the module docstring)."""
    by_id = {r.id: r for r in records}
    good: dict[str, State] = {}
    children: dict[str, list] = {}
    for r in sorted(records, key=lambda r: (r.end_time or 0.0, r.map_index is None)):
        if r.parent_task_run_id is not None:
            children.setdefault(r.parent_task_run_id, []).append(r)
        ups_ok = all(u in good or u not in by_id for u in r.upstream)
        state = _readable(r) if ups_ok and r.state_name in _DONE and r.result_ref else None
        if state is not None:
            good[r.id] = state
        elif r.map_index is None and r.state_name == "Mapped" and ups_ok:
            mine = sorted(children.get(r.id, ()), key=lambda c: c.map_index)
            if mine and all(c.id in good for c in mine) and _dense(mine):
                good[r.id] = MappedState([good[c.id] for c in mine])
        if r.task_key is None:
            continue
        entry = kept.setdefault(r.task_key, Kept())
        if r.id in good:
            if r.map_index is None:
                entry.whole, entry.children = good[r.id], {}
            else:
                entry.children[r.map_index] = good[r.id]
        elif r.state_name != "Mapped":
            entry.runs_again += 1


def _dense(children: list) -> bool:
    return [c.map_index for c in children] == list(range(len(children)))


def _readable(record) -> State | None:
    """The Cached state that reuses a task run's persisted result, or None when the result
    does not read (its file deleted or truncated: the task runs again)."""
    try:
        ref = ResultRef.parse(record.result_ref)
        value = ref.load()
    except (ResultUnreadableError, ValueError) as exc:
        logs.ENGINE.warning("Task run %r is not reused: %s It runs again.", record.name, exc)
        return None
    kept = value if ref.data is not None else _Released(record.name)  # files: read when needed
    state = Cached(f"Reused from task run {record.id} (resumed).", kept)
    state.ref = ref
    return state
