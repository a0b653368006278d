"""Serving a flow on its schedules: `flow.serve(cron=...)` and `headrace serve`.

A `Server` registers each of its schedules in the store (`store.schedules`),
under an id made from the flow's entry point, the schedule and the
parameters, so a server that restarts finds its schedules and their last
tick again. Then it loops: it waits on its clock until the earliest next
tick of its schedules, or until one of its runs ends (no polling), and for
each tick that came:
1. It claims the tick in the store. The key (schedule, scheduled time) lets
   exactly one of the servers sharing a store take it; the others go on.
2. It starts the run, or not, by the schedule's overlap policy: `skip`
   (recorded Skipped), `queue` (started when the previous run ends) or
   `cancel-running` (the previous run is interrupted as Ctrl-C would, then
   this one starts).
Which ticks come is the schedule's business (`schedules.Schedule.due`): a
tick is on time when the server sees it within LATE_SECONDS of its time;
older ones were missed (the server was down) and are run by the catch-up
policy. A schedule new to the store starts from the server's start.

Each run is a child process (`python -m headrace.serving`) that loads the
flow from its entry point, marks its tick Running with the id its flow run
will have (reserved before the run starts), runs it with the schedule's
parameters and marks the tick with the final state. So a run that crashes or hangs never takes the server with it,
and a server killed by `kill -9` leaves its runs to finish: the next server
finds their ticks taken. A child that dies before it marks its tick is
marked Crashed by its server.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

from headrace._pid import HOST
from headrace.schedules import MAX_CATCHUP, Schedule, ScheduleError

LATE_SECONDS = 60.0
CANCEL_SECONDS = 30.0  # how long a cancelled run has to end before it is killed


class ProcessRun:
    """A scheduled run in a child process, seen from its server."""

    def __init__(self, entry: str, schedule_id: str, tick: datetime, parameters: dict,
                 ended: queue.SimpleQueue):  # fmt: skip
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "headrace.serving",
                entry,
                schedule_id,
                str(tick.timestamp()),
                json.dumps(parameters),
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
        )
        self.cancelled = False
        waiter = threading.Thread(target=self._wait, args=(ended,), daemon=True)
        waiter.start()

    def _wait(self, ended: queue.SimpleQueue) -> None:
        self.proc.wait()
        ended.put(self)

    def running(self) -> bool:
        return self.proc.poll() is None

    def cancel(self) -> None:
        """Interrupt it as Ctrl-C does; kill it if it has not ended in CANCEL_SECONDS."""
        self.cancelled = True
        if self.running():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(CANCEL_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def crashed(self) -> bool:
        """Whether it ended without saying how (killed, or it could not start)."""
        return not self.running() and self.proc.returncode not in (0, 1)


def schedule_id(entry: str | None, flow_name: str, schedule: Schedule, parameters: dict) -> str:
    """The id a schedule keeps across restarts: made from what it serves."""
    text = json.dumps([entry or flow_name, schedule.spec(), parameters], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Server:
    """Serves `flow` on `schedules` until `stop` is set (see the module docstring).

    `clock` (now() and wait(), `engine.clock`) and `launch(schedule_id, tick,
    parameters)` (a run's handle: running(), cancel(), crashed(); a child process
    by default) are what tests replace."""

    def __init__(self, flow, schedules: list[Schedule], parameters: dict | None = None, *,
                 store=None, clock=None, launch=None, name: str | None = None):  # fmt: skip
        from headrace.engine.clock import SYSTEM_CLOCK
        from headrace.engine.entry import entry_point
        from headrace.flows import Flow

        if not schedules:
            raise ScheduleError("Serving needs a schedule: give cron='...' or interval=....")
        self.flow, self.parameters = flow, dict(parameters or {})
        module = flow.module if isinstance(flow, Flow) else flow.fn.__module__
        self.entry = entry_point(flow, module)
        if self.entry is None and launch is None:
            raise ScheduleError(
                f"Flow {flow.name!r} cannot be served from here: its runs load it again from "
                "the file or module that defines it, and it has none (a notebook or a "
                "REPL). Define it in a file and serve it with `headrace serve FILE.py:FLOW` "
                "or flow.serve(...) in that file."
            )
        self.clock = clock or SYSTEM_CLOCK
        if store is None:
            from headrace.store import open_ticks

            store = open_ticks()
        self.store = store
        self.name = name or f"{HOST}:{os.getpid()}"
        self.ended: queue.SimpleQueue = queue.SimpleQueue()
        self._launch = launch or (lambda sid, tick, params: ProcessRun(
            self.entry, sid, tick, params, self.ended))  # fmt: skip
        self.schedules = {schedule_id(self.entry, flow.name, s, self.parameters): s
                          for s in schedules}  # fmt: skip
        self._last: dict[str, datetime] = {}
        self._runs: dict[str, list] = {sid: [] for sid in self.schedules}  # (handle, tick)
        self._queued: dict[str, list[datetime]] = {sid: [] for sid in self.schedules}

    # -- the loop ---------------------------------------------------------------------------
    def start(self) -> None:
        """Register the schedules; each resumes from its last tick in the store."""
        from headrace.store.schedules import ServedSchedule

        now = self.clock.now()
        for sid, schedule in self.schedules.items():
            self.store.register(ServedSchedule(sid, self.flow.name, self.entry, schedule.spec(),
                                               self.parameters, now.timestamp()))  # fmt: skip
            last = self.store.last_tick(sid)
            self._last[sid] = datetime.fromtimestamp(last, UTC) if last is not None else now

    def serve(self, stop: threading.Event | None = None, until: datetime | None = None) -> None:
        """Serve until `stop` is set (or the clock passes `until`)."""
        stop = stop or threading.Event()
        self.start()
        while not stop.is_set():
            now = self.clock.now()
            if until is not None and now > until:
                return
            self.turn(now)
            wake = min(s.next_after(now) for s in self.schedules.values())
            ended = self.clock.wait(self.ended, (wake - now).total_seconds(), False)
            if ended is not None:
                self._ended(ended)

    def turn(self, now: datetime) -> None:
        """Take and start (or skip) every tick due at `now`."""
        for sid, schedule in self.schedules.items():
            for tick in schedule.due(self._last[sid], now, LATE_SECONDS):
                if self.store.claim(sid, tick.timestamp(), self.name, now.timestamp()):
                    self._on_tick(sid, schedule, tick)
            self._last[sid] = now
            self._start_queued(sid)

    def _on_tick(self, sid: str, schedule: Schedule, tick: datetime) -> None:
        running = [(h, t) for h, t in self._runs[sid] if h.running()]
        action = schedule.on_overlap(bool(running))
        if action == "skip":
            self.store.mark(sid, tick.timestamp(), "Skipped")
            return
        if action == "queue":
            self._queued[sid].append(tick)
            return
        if action == "cancel-running":
            for handle, _ in running:
                handle.cancel()
        self._run(sid, tick)

    def _run(self, sid: str, tick: datetime) -> None:
        handle = self._launch(sid, tick, self.parameters)
        self._runs[sid] = [(h, t) for h, t in self._runs[sid] if h.running()] + [(handle, tick)]

    def _start_queued(self, sid: str) -> None:
        if self._queued[sid] and not any(h.running() for h, _ in self._runs[sid]):
            self._run(sid, self._queued[sid].pop(0))

    def _ended(self, handle) -> None:
        for sid, runs in self._runs.items():
            for h, tick in runs:
                if h is handle and handle.crashed():
                    state = "Cancelled" if handle.cancelled else "Crashed"
                    self.store.mark(sid, tick.timestamp(), state)


def serve(flow, *, cron: str | None = None, interval: timedelta | None = None,
          timezone: str = "UTC", catchup: str = "latest", max_catchup: int = MAX_CATCHUP,
          overlap: str = "skip", schedules: list[Schedule] | None = None,
          parameters: dict | None = None) -> None:  # fmt: skip
    """Serve `flow` on one schedule (cron or interval, and its policies) or on several
    (`schedules=[Schedule(...), ...]`) until Ctrl-C; see `Server`."""
    given = list(schedules or [])
    if cron is not None or interval is not None:
        given.append(Schedule(cron, interval=interval, timezone=timezone, catchup=catchup,
                              max_catchup=max_catchup, overlap=overlap))  # fmt: skip
    server = Server(flow, given, parameters)
    try:
        server.serve()
    except KeyboardInterrupt:
        return


# -- a run's child process ------------------------------------------------------------------


def _run_one(entry: str, sid: str, scheduled: float, parameters: dict) -> int:
    """Load the flow at `entry`, run it, and mark tick (`sid`, `scheduled`) as it goes."""
    from headrace.cli.resume import _load
    from headrace.engine.names import reserve_run_id
    from headrace.flows import Flow
    from headrace.store import open_ticks

    store = open_ticks()
    flow = _load(entry)
    store.mark(sid, scheduled, "Running", reserve_run_id())  # linked while it runs
    try:
        if isinstance(flow, Flow):
            state = flow.run(parameters=parameters)
        else:
            state = flow(return_state=True, **parameters)
            if flow.is_async:
                import asyncio

                state = asyncio.run(state)
    except KeyboardInterrupt:
        store.mark(sid, scheduled, "Cancelled")
        return 130
    store.mark(sid, scheduled, state.name, state.flow_run_id)
    return 0 if state.is_successful() else 1


if __name__ == "__main__":
    sys.exit(_run_one(sys.argv[1], sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])))
