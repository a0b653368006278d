"""Signals: exceptions a task raises to choose its own state.

raise FAIL("bad row")          -> Failed
raise SUCCESS(result=x)        -> Completed with result x
raise SKIP("nothing to do")    -> Skipped (downstream skips too, by default)
raise RETRY("try again")       -> retried now; counts as one of the task's `retries`
raise LOOP(result=x)           -> the task runs again; the next iteration reads
                                  `context.task_loop_result` (x) and `context.task_loop_count`
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any


class Signal(Exception):
    """Base of the signals. `message` and `result` are both optional."""

    def __init__(self, message: str | None = None, result: Any = None):
        super().__init__(message)
        self.message = message
        self.result = result


class FAIL(Signal):
    """Fail the task with a message."""


class SUCCESS(Signal):
    """Finish the task as Completed, with `result`."""


class SKIP(Signal):
    """Finish the task as Skipped."""


class RETRY(Signal):
    """Retry the task now, as one of its `retries`."""


class LOOP(Signal):
    """Run the task again; `result` becomes `context.task_loop_result`."""


__all__ = ["Signal", "FAIL", "SUCCESS", "SKIP", "RETRY", "LOOP"]
