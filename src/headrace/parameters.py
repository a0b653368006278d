"""Parameters: named inputs of a graph flow, given to `flow.run(parameters={...})`."""

from __future__ import annotations

from headrace import _build
from headrace.tasks import Task

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

_NO_DEFAULT = object()


class Parameter(Task):
    """A flow input. `required` defaults to True unless a `default` is given.

    Created inside `with Flow(...)` it joins that flow at once; elsewhere it
    joins the first flow that uses it.
    """

    def __init__(self, name: str, default: Any = _NO_DEFAULT, required: bool | None = None, **kw):
        if not isinstance(name, str) or not name:
            raise ValueError("a Parameter needs a name, e.g. Parameter('url')")
        self.default = None if default is _NO_DEFAULT else default
        self.required = (default is _NO_DEFAULT) if required is None else required
        super().__init__(name=name, **kw)
        flow = _build.current().flow
        if flow is not None:
            flow.add_task(self)

    def run(self):  # the engine supplies the value; running it alone gives the default
        return self.default

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Parameter {self.name!r} is not called: pass it as an argument to a task, and "
            "give its value with flow.run(parameters={...})."
        )

    map = __call__

    def __repr__(self) -> str:
        return f"<Parameter: {self.name}>"
