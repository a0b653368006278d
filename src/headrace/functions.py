"""Function flows: `@flow` makes a function a flow that runs when called.

    @flow
    def my_flow(n: int):
        total = add_one(n)                 # a task call runs the task and returns its value
        state = add_one(n, return_state=True)
        futures = add_one.map([1, 2, 3])   # futures; .result() for all
        return total

    my_flow(1)                             # runs now, returns 2 (raises if the flow failed)
    my_flow(1, return_state=True)          # the final State; never raises for what the
                                           # flow does (bad parameters give a Failed state
                                           # whose result() raises the ParameterError)

Options: `name` (default: the function's name with `_` as `-`),
`flow_run_name` (a template like "run-{n}", or a callable of no
arguments that may read `context.parameters`), `retries`, `retry_delay`,
`timeout` (seconds), `executor` (for `.submit`/`.map`; default a
ThreadExecutor), `throttle` ({tag: n}), `log_prints` (unset: a subflow
takes its parent's), `validate_parameters` (coerce arguments by their
annotations with pydantic), `description` (default: the docstring).

The run itself is the engine's (`engine.function_flow`); this module only
describes the flow.
"""

from __future__ import annotations

import copy
import datetime
import functools
import inspect
from collections.abc import Callable

from headrace.errors import ParameterError, ReservedArgumentError
from headrace.tasks import _normalize_retry_delay, bind_explained, check_retries_and_timeout

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class FunctionFlow:
    """A flow made from a function. Call it to run it."""

    def __init__(
        self,
        fn: Callable,
        *,
        name: str | None = None,
        flow_run_name: str | Callable[[], str] | None = None,
        retries: int = 0,
        retry_delay: Any = 0,
        timeout: float | datetime.timedelta | None = None,
        executor=None,
        throttle: dict[str, int] | None = None,
        log_prints: bool | None = None,
        validate_parameters: bool = True,
        description: str | None = None,
        clock=None,
        persist_result: bool | None = None,
    ):
        if not callable(fn):
            raise TypeError(f"@flow needs a function, got {fn!r}")
        self.persist_result = persist_result  # its tasks' default; None: as its parent
        self.fn = fn
        self.name = name or fn.__name__.replace("_", "-")
        self.flow_run_name = flow_run_name
        self.retries, self.timeout = check_retries_and_timeout(retries, timeout)
        self.retry_delay = retry_delay
        self.retry_delay_seconds = _normalize_retry_delay(retry_delay)
        if executor is not None:
            from headrace.executors.base import check_executor

            check_executor(executor, f"@flow {self.name!r}")
        self.executor = executor
        self.throttle = dict(throttle or {})
        self.log_prints = log_prints
        self.validate_parameters = validate_parameters
        self.description = description or inspect.getdoc(fn)
        self.clock = clock
        self.signature = inspect.signature(fn)
        reserved = sorted({"return_state", "wait_for"} & self.signature.parameters.keys())
        if reserved:
            raise ReservedArgumentError(
                f"Flow {self.name!r} has a parameter named {reserved[0]!r}, which is reserved: "
                "every flow call takes return_state= and wait_for= as its own options. "
                "Rename the parameter."
            )
        self.is_async = inspect.iscoroutinefunction(fn)
        self.last_run = None  # the FunctionRun of the latest call, for inspection
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args, return_state: bool = False, wait_for=None, **kwargs):
        from headrace.engine import function_flow

        if self.is_async:
            run = function_flow.run_function_flow_async(self, args, kwargs, return_state, wait_for)
            return function_flow.awaited_in_sync_parent(run)
        return function_flow.run_function_flow(self, args, kwargs, return_state, wait_for)

    def serve(self, **options) -> None:
        """Call the flow on a schedule until Ctrl-C; the options are `Flow.serve`'s."""
        from headrace.serving import serve

        serve(self, **options)

    def resume(self, run_id: str, *, parameters: dict[str, Any] | None = None,
               return_state: bool = False):  # fmt: skip
        """Call the flow again as a resume of the run `run_id` names (an id, a prefix or
        a name): with its recorded parameters, reusing as Cached every task run its chain
        completed with a result that reads (see `headrace.engine.resume`). `parameters`
        replace recorded values. An async flow gives a coroutine to await."""
        from headrace.engine.resume import plan_resume, resuming
        from headrace.store import open_reader

        with open_reader() as reader:
            plan = plan_resume(reader, run_id, self.name, parameters)

        def call():
            token = resuming.set(plan)
            try:
                return self(return_state=return_state, **plan.parameters)
            finally:
                resuming.reset(token)

        if not self.is_async:
            return call()

        async def resumed():
            token = resuming.set(plan)
            try:
                return await self(return_state=return_state, **plan.parameters)
            finally:
                resuming.reset(token)

        return resumed()

    def with_options(self, **options) -> FunctionFlow:
        """A copy of this flow with some options changed."""
        new = copy.copy(self)
        fresh = FunctionFlow(self.fn, **{**self._options(), **options})
        new.__dict__.update(fresh.__dict__)
        return new

    def _options(self) -> dict:
        return {
            "name": self.name,
            "flow_run_name": self.flow_run_name,
            "retries": self.retries,
            "retry_delay": self.retry_delay,
            "timeout": self.timeout,
            "executor": self.executor,
            "throttle": self.throttle,
            "log_prints": self.log_prints,
            "validate_parameters": self.validate_parameters,
            "description": self.description,
            "clock": self.clock,
            "persist_result": self.persist_result,
        }

    # -- used by the engine --------------------------------------------------------------
    def bind_parameters(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        """The call's arguments by name (defaults applied), coerced by annotation."""
        bound = bind_explained(
            self.signature.bind, args, kwargs, ParameterError,
            f"Flow {self.name!r} cannot be called that way", f"{self.fn.__name__}{self.signature}",
        )  # fmt: skip
        bound.apply_defaults()
        parameters = dict(bound.arguments)
        if self.validate_parameters:
            parameters = self._coerce(parameters)
        return parameters

    def _coerce(self, parameters: dict[str, Any]) -> dict[str, Any]:
        annotated = {
            n: p.annotation
            for n, p in self.signature.parameters.items()
            if p.annotation is not p.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and n in parameters
        }
        if not annotated:
            return parameters
        import pydantic  # only flows with annotated parameters pay for the import

        out = dict(parameters)
        problems = []
        for pname, annotation in annotated.items():
            if isinstance(annotation, str):  # `from __future__ import annotations`
                annotation = _evaluate(annotation, self.fn)
                if annotation is None:
                    continue
            try:
                out[pname] = _adapter(pydantic, annotation).validate_python(parameters[pname])
            except pydantic.ValidationError as exc:
                detail = "; ".join(e["msg"] for e in exc.errors())
                problems.append(f"{pname}={parameters[pname]!r}: {detail}")
            except (pydantic.PydanticSchemaGenerationError, TypeError):
                continue  # a type pydantic cannot check is passed as given
        if problems:
            raise ParameterError(
                f"Flow {self.name!r} got invalid parameters: {'; '.join(problems)}. "
                "Pass values of the annotated types, or set validate_parameters=False."
            )
        return out

    def call_body(self, parameters: dict[str, Any], timeout: bool = True) -> Any:
        """Call the function with its parameters (an async one returns its coroutine)."""
        bound = inspect.BoundArguments(self.signature, parameters)
        if self.timeout is None or not timeout:
            return self.fn(*bound.args, **bound.kwargs)
        from headrace.engine.task_run import call_with_deadline

        return call_with_deadline(
            lambda: self.fn(*bound.args, **bound.kwargs), self.timeout, f"Flow {self.name!r}"
        )

    def run_name(self, parameters: dict[str, Any]) -> str:
        if self.flow_run_name is None:
            from headrace.engine.names import slug

            return slug()
        if callable(self.flow_run_name):
            name = self.flow_run_name()
            if not isinstance(name, str):
                raise TypeError(
                    f"flow_run_name {_callable_name(self.flow_run_name)} of flow {self.name!r} returned "
                    f"{name!r}, a {type(name).__name__}; it must return a str."
                )
            return name
        try:
            return self.flow_run_name.format(**parameters)
        except (KeyError, IndexError) as exc:
            raise ParameterError(
                f"flow_run_name {self.flow_run_name!r} of flow {self.name!r} names {exc} "
                f"which is not a parameter; its parameters are: {', '.join(parameters)}."
            ) from None

    def __repr__(self) -> str:
        return f"<Flow (function) {self.name!r}>"


def _adapter(pydantic, annotation):
    """A pydantic TypeAdapter for the annotation; models and dataclasses bring their own
    config, other types pydantic does not know are checked with isinstance."""
    try:
        return pydantic.TypeAdapter(annotation)
    except pydantic.PydanticSchemaGenerationError:
        return pydantic.TypeAdapter(annotation, config={"arbitrary_types_allowed": True})


def _evaluate(annotation: str, fn: Callable) -> Any:
    try:
        return eval(annotation, fn.__globals__)  # noqa: S307 - the user's own annotation
    except Exception:
        return None


def flow(
    fn: Callable | None = None, **options
) -> FunctionFlow | Callable[[Callable], FunctionFlow]:
    """Make a function a flow: `@flow` or `@flow(name=..., retries=..., ...)`."""
    if fn is None:
        return lambda f: FunctionFlow(f, **options)
    return FunctionFlow(fn, **options)


def _callable_name(fn: Callable) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
