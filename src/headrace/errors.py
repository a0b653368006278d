"""Errors headrace raises to its users. Each message names what was wrong and what to do."""

from __future__ import annotations


class HeadraceError(Exception):
    """Base class of headrace's own errors."""


class FlowBuildError(HeadraceError, ValueError):
    """A flow cannot be built as written: a cycle, a bad argument, a foreign task."""


class CycleError(FlowBuildError):
    """Adding an edge would make the graph cyclic. `cycle` lists the tasks in it."""

    def __init__(self, cycle: list):
        self.cycle = cycle
        # Slugs ("ident-2") tell apart the calls of one task; names alone may not.
        path = " -> ".join(repr(getattr(t, "slug", None) or getattr(t, "name", t)) for t in cycle)
        super().__init__(
            f"This dependency would create a cycle: {path}. Remove one of these edges."
        )


class MappingError(HeadraceError, ValueError):
    """Inputs to `task.map` cannot be mapped: unequal lengths, or not iterable."""


class ParameterError(HeadraceError, ValueError):
    """Parameters given to a run do not match the flow's parameters."""


class ReservedArgumentError(HeadraceError, TypeError):
    """A task or flow defines a parameter whose name is one of the call's own options."""


class ResultReleasedError(HeadraceError, LookupError):
    """A result was released once no task needed it any more."""

    def __init__(self, task_name: str):
        self.task_name = task_name
        super().__init__(
            f"The result of {task_name!r} was released after its last consumer started, "
            "to keep memory flat, and it was not persisted (persist_result=False, "
            "HEADRACE_PERSIST_RESULTS=off, or a value its serializer could not write). To "
            "keep it, pass the task in `flow.run(return_tasks=[...])`, or persist it: "
            "`@task(persist_result=True)`, with a serializer that writes it."
        )


class ResultUnreadableError(ResultReleasedError):
    """A released result whose persisted copy cannot be read: its file went, or it is
    damaged."""

    def __init__(self, message: str):
        self.task_name = None
        LookupError.__init__(self, message)


class FlowRunFailed(HeadraceError):
    """Raised by `FlowState.result()` for a failed flow run; `state` is the flow's state."""

    def __init__(self, state):
        self.state = state
        failed = [getattr(t, "name", str(t)) for t, s in state.task_states.items() if s.is_failed()]
        shown = ", ".join(repr(n) for n in failed[:5]) + (" ..." if len(failed) > 5 else "")
        super().__init__(
            f"Flow run failed: {state.message} Failed tasks: {shown or 'none'}. "
            "Read `state[task]` for each task's state, or call `result(raise_on_failure=False)`."
        )


class ContextError(HeadraceError, AttributeError):
    """Run context was read outside a run."""


class MissingDependencyError(HeadraceError, ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra that installs it."""

    def __init__(self, module: str, extra: str, needed_by: str):
        self.extra = extra
        super().__init__(
            f"{needed_by} needs {module!r}, which is not installed. "
            f"Install headrace's {extra!r} extra: pip install 'headrace[{extra}]'",
            name=module,
        )


class StorageUnreachableError(HeadraceError):
    """A worker on another host than the flow run would write where the run cannot read."""
