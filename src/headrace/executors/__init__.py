"""Executors: where task runs execute. One contract, `submit(fn, *args) -> Future`.

`ProcessExecutor` and `DaskExecutor` load on first use, so `import headrace`
stays light.
"""

from headrace.executors.base import Executor
from headrace.executors.local import LocalExecutor
from headrace.executors.threads import ThreadExecutor

__all__ = ["Executor", "LocalExecutor", "ThreadExecutor", "ProcessExecutor", "DaskExecutor"]


def __getattr__(name: str):
    if name == "ProcessExecutor":
        from headrace.executors.processes import ProcessExecutor

        return ProcessExecutor
    if name == "DaskExecutor":
        from headrace.executors.dask import DaskExecutor

        return DaskExecutor
    raise AttributeError(f"module 'headrace.executors' has no attribute {name!r}")
