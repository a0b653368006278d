"""A task run's target, in the worker: look it up before running, write it after.

look_up   render the template; if the file exists and reads, the run is
          Cached with its value and does not run. A file that does not
          read (truncated, another format) is a miss, with a warning.
write     after a successful run, serialise the value and write it
          atomically. A value or storage that fails warns, and the
          state's message says the target was not written; the run
          still succeeded.
"""

from __future__ import annotations

from headrace.results import LocalStorage
from headrace.results.persist import PICKLE, ResultRef
from headrace.results.storage import StorageUnreachableError, check_reachable
from headrace.states import Cached, Completed, Failed, State

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

_TARGETS = LocalStorage()  # $HEADRACE_HOME/results, synced: a target is the user's file


class TargetPlan:
    """The key, serializer and storage of one task run's target."""

    __slots__ = ("key", "serializer", "storage", "where")

    def __init__(self, spec, arguments: dict[str, Any], flow_ctx, map_index: int | None):
        self.key = spec.target.render(arguments, flow_ctx, map_index, spec.name)
        self.serializer = spec.serializer or PICKLE
        self.storage = spec.storage or _TARGETS
        self.where = self.storage.locate(self.key)

    def look_up(self, logger) -> State | None:
        try:
            if not self.storage.exists(self.key):
                return None
            value = self.serializer.loads(self.storage.read(self.key))
        except Exception as exc:
            logger.warning(
                "Target %s does not read (%s: %s); running the task to write it again.",
                self.where, type(exc).__name__, exc,
            )  # fmt: skip
            return None
        cached = Cached(f"Read from its target {self.where}.", value)
        cached.ref = self.ref()
        return cached

    def ref(self) -> ResultRef:
        return ResultRef(self.serializer, None, self.storage, self.key)

    def write(self, state: State, logger, client_host: str | None = None) -> State:
        try:
            check_reachable(self.storage, client_host)
            self.storage.write(self.key, self.serializer.dumps(state._value))
        except StorageUnreachableError as exc:
            return Failed(str(exc), exception=exc)
        except Exception as exc:
            logger.warning(
                "Target %s was not written (%s: %s); the run's result is kept in memory only.",
                self.where, type(exc).__name__, exc,
            )  # fmt: skip
            return Completed(
                f"{state.message} Its target {self.where} was not written: {exc}",
                state._value,
            )
        state.ref = self.ref()  # the target is where the result is read again
        return state
