"""headrace: workflow orchestration for Python.

Graph flows (`with Flow(...)`, `Parameter`, `task.map`) and function
flows (`@flow`, `@task` called as plain Python) run on one event-driven
engine. `import headrace` stays light: executors beyond the
local one, Graphviz and the engine load when first used.
"""

from headrace import triggers
from headrace.branches import case, ifelse, merge, switch
from headrace.edges import flatten, unmapped
from headrace.engine.context import context
from headrace.engine.logs import get_run_logger
from headrace.flows import Flow
from headrace.functions import flow
from headrace.parameters import Parameter
from headrace.tasks import Task, tags, task

__version__ = "0.1.0"

__all__ = [
    "Flow",
    "Parameter",
    "Task",
    "case",
    "context",
    "flatten",
    "flow",
    "get_run_logger",
    "ifelse",
    "merge",
    "switch",
    "tags",
    "task",
    "triggers",
    "unmapped",
]
