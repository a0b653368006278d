"""The run-history store as two small interfaces: a `Recorder` to write, a `Reader` to read.

The engine holds a `Recorder` and hands it records (`store.records`);
it never builds SQL rows or waits for a database. `NullRecorder` is the
recorder when history is off. The faces (the CLI, later the UI) hold a
`Reader`: read-only, paged queries.

Contracts:
- A Recorder's methods never wait on the database (they queue), except
  `flush`, which waits until everything recorded so far is written.
- Opening a Recorder is where the schema is created or migrated, runs left
  Running by dead processes are marked Crashed, and old runs are pruned.
- Opening a Reader changes nothing: no thread, no migration, no Crashed
  marking, no pruning, no file created. A run whose process is gone is
  *shown* Crashed (with no end time) until a Recorder marks it.

This module must not import a database driver.
"""

from __future__ import annotations

import abc

from headrace.errors import HeadraceError
from headrace.store.records import (
    ChildRuns,
    FlowRun,
    LogRecord,
    MapGroup,
    StateRecord,
    TaskRun,
)

CRASHED_MESSAGE = "The process running this flow run stopped before it finished."


class StoreError(HeadraceError):
    """The history database cannot be used as it is; the message says what to do."""


class StoreUnavailable(StoreError):
    """The history database cannot be reached now (its server is down or unreachable)."""


class StoreMissing(StoreError):
    """There is no history yet where the settings point (no file, or no headrace tables)."""


def no_such_run(ref: str) -> StoreError:
    return StoreError(f"No flow run has the id, id prefix or name {ref!r}.")


class Recorder(abc.ABC):
    """The write side. `where` names the database for messages (never a password)."""

    where: str = ""

    @property
    @abc.abstractmethod
    def recording(self) -> bool:
        """False when nothing is being written (history off, or a write failed)."""

    @abc.abstractmethod
    def flow_run_started(self, run: FlowRun) -> None:
        """A flow run began (its host and pid are this process's)."""

    @abc.abstractmethod
    def flow_run_ended(
        self, flow_run_id: str, state_type: str, state_name: str, message: str | None,
        end_time: float,
    ) -> None:  # fmt: skip
        """A flow run reached its final state."""

    @abc.abstractmethod
    def task_run(self, run: TaskRun) -> None:
        """One finished task run: Running at its start, its final state at its end."""

    def task_runs(self, runs: ChildRuns) -> None:
        """Finished children of a map, recorded alike (`ChildRuns`); by default one
        `task_run` each, and a recorder that keeps rows in batches takes them whole."""
        for run in runs.runs():
            self.task_run(run)

    @abc.abstractmethod
    def task_state(self, state: StateRecord) -> None:
        """An intermediate transition of a task run (Retrying), as it happens."""

    @abc.abstractmethod
    def log(self, record: LogRecord) -> None:
        """One log line of a run."""

    @abc.abstractmethod
    def flush(self, timeout: float | None = 60.0) -> None:
        """Wait until everything recorded so far is written (or `timeout` seconds)."""


class NullRecorder(Recorder):
    """History off: accepts every record and drops it."""

    where = "nowhere (history is off)"

    @property
    def recording(self) -> bool:
        return False

    def flow_run_started(self, run: FlowRun) -> None:
        pass

    def flow_run_ended(self, flow_run_id, state_type, state_name, message, end_time) -> None:
        pass

    def task_run(self, run: TaskRun) -> None:
        pass

    def task_runs(self, runs: ChildRuns) -> None:
        pass

    def task_state(self, state: StateRecord) -> None:
        pass

    def log(self, record: LogRecord) -> None:
        pass

    def flush(self, timeout: float | None = 60.0) -> None:
        pass


class Reader(abc.ABC):
    """The read side: every query is read-only; lists are paged and ordered."""

    where: str = ""

    @abc.abstractmethod
    def flow_runs(
        self, flow_name: str | None = None, state: str | None = None, limit: int | None = 50,
        before: float | None = None, parent_id: str | None = None,
        after_cursor: tuple[float, str] | None = None, text: str | None = None,
        since: float | None = None,
    ) -> list[FlowRun]:  # fmt: skip
        """Flow runs newest first: of one flow, in one state (a type or a name, any case),
        started before `before` (epoch seconds), children of `parent_id`; the page after
        `after_cursor` (the last run's `(start_time, id)`: keyset paging, never OFFSET);
        whose name or flow name contains `text`; started at or after `since`."""

    @abc.abstractmethod
    def flow_run(self, ref: str) -> FlowRun:
        """A flow run by id, unique id prefix or name; StoreError says why none matched."""

    @abc.abstractmethod
    def task_runs(
        self, flow_run_id: str, limit: int | None = None, offset: int = 0,
        children: bool | None = None,
    ) -> list[TaskRun]:  # fmt: skip
        """A flow run's task runs in start order (a mapped task's own run first).

        `children=False` leaves out map children, `True` gives only them.
        """

    @abc.abstractmethod
    def map_groups(self, flow_run_id: str) -> list[MapGroup]:
        """The map children of a flow run, one group per mapped task, by recorded fields."""

    @abc.abstractmethod
    def states(self, task_run_id: str) -> list[StateRecord]:
        """Every state of a task run in order: Running, the intermediate ones, the final one."""

    @abc.abstractmethod
    def logs(
        self, flow_run_id: str, after: int = 0, limit: int | None = None,
        level: int | None = None, task_run_id: str | None = None, text: str | None = None,
    ) -> list[tuple[int, LogRecord]]:  # fmt: skip
        """Log lines of a flow run (and its task runs) after log id `after`, oldest first:
        at `level` or above, of one task run, containing `text` (any case)."""

    def task_run(self, task_run_id: str) -> TaskRun | None:
        """One task run by id (None when there is none)."""
        return None

    def flow_summaries(self) -> list[dict]:
        """Per flow: its runs, how many completed, and the median duration of its newest
        1,000 finished runs (top-level runs; subflows are their parents' business)."""
        return []

    def activity(self, flow_run_id: str) -> tuple:
        """What changes while a run goes on (task runs recorded, the last log line's id):
        cheap to ask every half second."""
        return ()

    def map_children(
        self, flow_run_id: str, task_key: str, after_index: int = -1, limit: int = 100,
        state: str | None = None,
    ) -> list[TaskRun]:  # fmt: skip
        """Children of one mapped task (by task key) in map-index order, after
        `after_index` (keyset paging), in one state name when given."""
        return []

    def schedules(self) -> list:
        """The schedules servers registered (`store.schedules.ServedSchedule`)."""
        return []

    def scheduled_runs(self, schedule_id: str | None = None, limit: int = 50) -> list:
        """The ticks servers took (`store.schedules.ScheduledRun`), the latest first."""
        return []

    def limits(self) -> list:
        """The tag limits, each with the claims holding its slots as recorded
        (`store.limits.TagLimit`)."""
        return []

    @abc.abstractmethod
    def close(self) -> None:
        """Close the reader's connections."""

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EmptyReader(Reader):
    """A history with nothing in it: what a Reader shows where nothing was recorded yet."""

    def __init__(self, where: str):
        self.where = where

    def flow_runs(self, flow_name=None, state=None, limit=50, before=None, parent_id=None,
                  after_cursor=None, text=None, since=None):  # fmt: skip
        return []

    def flow_run(self, ref: str) -> FlowRun:
        raise no_such_run(ref)

    def task_runs(self, flow_run_id, limit=None, offset=0, children=None):
        return []

    def map_groups(self, flow_run_id: str) -> list[MapGroup]:
        return []

    def states(self, task_run_id: str) -> list[StateRecord]:
        return []

    def logs(self, flow_run_id, after=0, limit=None, level=None, task_run_id=None, text=None):
        return []

    def close(self) -> None:
        pass


__all__ = [
    "Recorder",
    "NullRecorder",
    "Reader",
    "EmptyReader",
    "StoreError",
    "StoreMissing",
    "CRASHED_MESSAGE",
]
