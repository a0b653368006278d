"""Executors: where task runs execute. One contract, `submit(fn, *args) -> Future`."""

from headrace.executors.base import Executor
from headrace.executors.local import LocalExecutor
from headrace.executors.threads import ThreadExecutor

__all__ = ["Executor", "LocalExecutor", "ThreadExecutor"]
