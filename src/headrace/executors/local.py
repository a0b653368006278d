"""LocalExecutor: every task run inline, in the calling thread, one at a time.

The default. Debuggers, breakpoints and tracebacks see plain calls.
"""

from __future__ import annotations

from concurrent.futures import Future

from headrace.executors.base import Executor


class LocalExecutor(Executor):
    inline = True

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future
