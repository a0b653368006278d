"""Served schedules and the ticks servers took, kept in the store beside the run history.

`schedules` holds what a server serves (the flow's name and entry point,
the schedule's settings, the parameters), under an id made from them, so a
server that restarts finds its schedule again. `scheduled_runs` holds one
row per (schedule, scheduled time): `claim` inserts it, and the key makes
sure only one server ever does, however many share the store. The row then
follows the run: Scheduled, Running, its final state (or Skipped, when the
overlap policy skipped it), with the flow run's id once known.

Like the cache's side, this one reads and writes at once (`OneConnection`).
It must not know what a flow or a schedule is: settings arrive as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from headrace.store.sql import OneConnection

SCHEDULED = "Scheduled"
TICK_COLUMNS = ["schedule_id", "scheduled_time", "state_name", "flow_run_id", "server", "claimed"]


@dataclass(slots=True)
class ScheduledRun:
    schedule_id: str
    scheduled_time: float
    state_name: str
    flow_run_id: str | None
    server: str | None
    claimed: float


@dataclass(slots=True)
class ServedSchedule:
    id: str
    flow_name: str
    entry_point: str | None
    spec: dict
    parameters: dict
    created: float


def read_schedules(rows) -> list[ServedSchedule]:
    """Every registered schedule, through `rows(sql, params)` (a Reader's or ours)."""
    found = rows(
        "SELECT id, flow_name, entry_point, spec, parameters, created FROM schedules "
        "ORDER BY created, id",
        (),
    )
    return [
        ServedSchedule(i, f, e, json.loads(s), json.loads(p or "{}"), c)
        for i, f, e, s, p, c in found
    ]


def read_scheduled_runs(rows, schedule_id: str | None, limit: int) -> list[ScheduledRun]:
    """Ticks taken (of one schedule), the latest first, through `rows(sql, params)`."""
    where, params = ("WHERE schedule_id = ? ", (schedule_id,)) if schedule_id else ("", ())
    found = rows(
        f"SELECT {', '.join(TICK_COLUMNS)} FROM scheduled_runs {where}"
        f"ORDER BY scheduled_time DESC LIMIT {int(limit)}",
        params,
    )
    return [ScheduledRun(*row) for row in found]


class TickStore(OneConnection):
    """Schedules and their ticks in one database; safe to share between threads."""

    def register(self, schedule: ServedSchedule) -> None:
        """Keep `schedule` (the same id again changes nothing)."""
        self._execute(
            "INSERT INTO schedules (id, flow_name, entry_point, spec, parameters, created) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (
                schedule.id,
                schedule.flow_name,
                schedule.entry_point,
                json.dumps(schedule.spec),
                json.dumps(schedule.parameters),
                schedule.created,
            ),  # fmt: skip
            fetch=False,
            commit=True,
        )

    def schedules(self) -> list[ServedSchedule]:
        return read_schedules(self._execute)

    def last_tick(self, schedule_id: str) -> float | None:
        """The latest scheduled time any server took for this schedule."""
        rows = self._execute(
            "SELECT max(scheduled_time) FROM scheduled_runs WHERE schedule_id = ?", (schedule_id,)
        )
        return rows[0][0]

    def claim(self, schedule_id: str, scheduled_time: float, server: str, now: float) -> bool:
        """Take the tick for `server`; False when another server took it first."""
        taken = self._execute(
            f"INSERT INTO scheduled_runs ({', '.join(TICK_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (schedule_id, scheduled_time) DO NOTHING",
            (schedule_id, scheduled_time, SCHEDULED, None, server, now),
            fetch=False,
            commit=True,
        )
        return taken == 1

    def mark(self, schedule_id: str, scheduled_time: float, state_name: str,
             flow_run_id: str | None = None) -> None:  # fmt: skip
        """The tick's run is now in `state_name` (its flow run's id once known)."""
        self._execute(
            "UPDATE scheduled_runs SET state_name = ?, "
            "flow_run_id = COALESCE(?, flow_run_id) WHERE schedule_id = ? AND scheduled_time = ?",
            (state_name, flow_run_id, schedule_id, scheduled_time),
            fetch=False,
            commit=True,
        )

    def scheduled_runs(self, schedule_id: str | None = None, limit: int = 50) -> list[ScheduledRun]:
        """Ticks taken, the latest first."""
        return read_scheduled_runs(self._execute, schedule_id, limit)
