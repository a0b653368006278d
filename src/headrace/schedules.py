"""When a scheduled flow runs: ticks, daylight-saving time, catch-up and overlap.

A `Schedule` is a cron expression in a time zone, or a fixed interval. It
answers two questions, both pure functions of the times it is given (the
server that acts on them brings the clock):
- `ticks(after, until)`: the instants it fires in `(after, until]`, in UTC;
- `due(last, now)`: which of the ticks missed since `last` run now, by its
  `catchup` policy.

The rules, each stated once:
- **Cron** (five fields: minute hour day-of-month month day-of-week, or a
  macro such as `@daily`; parsed by croniter) is read in the wall-clock
  time of `timezone` (an IANA name, through `zoneinfo`).
- **Daylight-saving time.** A cron whose hour field is `*` ("every hour")
  counts elapsed time: it fires whenever the wall clock shows a matching
  time, so both times a repeated hour is shown, and never in an hour that
  is skipped (an hourly cron fires 23 times on the day clocks go forward
  and 25 times on the day they go back). Any other cron names times of
  day, and fires once for each: a time shown twice fires the first time;
  a time that is skipped fires at the end of the gap (`30 2 * * *` fires
  exactly once on both transition days, whatever the zone).
- **Interval** schedules count elapsed time from `anchor` (midnight UTC,
  2000-01-01, unless given); the time zone does not change them. For a time
  of day, use cron.
- **Catch-up** (`catchup`): a tick seen within `late` seconds of its time
  is on time and runs. Of the older ones, missed while nothing served the
  schedule, `skip` runs none, `latest` (the default) the most recent one,
  `all` each of them, the most recent `max_catchup` (10 by default) if there
  were more.
- **Overlap** (`overlap`): a tick that comes while the schedule's previous
  run still runs is skipped (`skip`, the default), waits for it (`queue`),
  or cancels it and starts (`cancel-running`); see `on_overlap`. Caught-up
  ticks are ticks like any other: with `catchup="all"`, `overlap="queue"`
  runs each of them in turn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from headrace.errors import HeadraceError

ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
CATCHUP = ("skip", "latest", "all")
OVERLAP = ("skip", "queue", "cancel-running")
MAX_CATCHUP = 10
SEARCH_DAYS = 3 * 366 + 365 + 7  # a cron that matches no day in this many never fires
_DAY = timedelta(days=1)


class ScheduleError(HeadraceError, ValueError):
    """A schedule that cannot be used as given; the message says what to give instead."""


class Schedule:
    """A cron expression in a time zone, or an interval; see the module docstring."""

    def __init__(
        self,
        cron: str | None = None,
        *,
        interval: timedelta | None = None,
        timezone: str = "UTC",
        anchor: datetime | None = None,
        catchup: str = "latest",
        max_catchup: int = MAX_CATCHUP,
        overlap: str = "skip",
    ):
        if (cron is None) == (interval is None):
            raise ScheduleError(
                "A schedule needs exactly one of cron='0 2 * * *' or interval=timedelta(...)."
            )
        self.cron, self.interval, self.timezone = cron, interval, timezone
        self.zone = _zone(timezone)
        if interval is not None:
            if not isinstance(interval, timedelta) or interval <= timedelta(0):
                raise ScheduleError(
                    f"interval={interval!r} is not a positive timedelta: give, say, "
                    "interval=timedelta(minutes=15)."
                )
            self.anchor = _aware(anchor, "anchor") if anchor is not None else ANCHOR
        else:
            self._fields, self._every_hour = _parse(cron)
        self.catchup = _choice("catchup", catchup, CATCHUP)
        if not isinstance(max_catchup, int) or max_catchup < 1:
            raise ScheduleError(f"max_catchup={max_catchup!r} is not a whole number of at least 1.")
        self.max_catchup = max_catchup
        self.overlap = _choice("overlap", overlap, OVERLAP)

    def __repr__(self) -> str:
        what = f"cron={self.cron!r}" if self.cron is not None else f"interval={self.interval!r}"
        return f"Schedule({what}, timezone={self.timezone!r}, catchup={self.catchup!r})"

    # -- ticks ------------------------------------------------------------------------------
    def ticks(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """The instants (UTC, ascending) the schedule fires in `(after, until]`."""
        yield from self._after(_aware(after, "after"), _aware(until, "until"))

    def next_after(self, moment: datetime) -> datetime:
        """The first tick after `moment`."""
        tick = next(self._after(_aware(moment, "moment"), None), None)
        if tick is None:
            raise ScheduleError(f"cron={self.cron!r} never fires: no day matches it.")
        return tick

    def due(self, last: datetime, now: datetime, late: float = 60.0) -> list[datetime]:
        """The ticks in `(last, now]` to run now: those at most `late` seconds old (on
        time), after what the catch-up policy keeps of the older ones (missed)."""
        on_time: list[datetime] = []
        missed: deque = deque(maxlen=self.max_catchup)
        for tick in self.ticks(last, now):
            (on_time if (now - tick).total_seconds() <= late else missed).append(tick)
        if self.catchup == "skip":
            missed.clear()
        elif self.catchup == "latest":
            missed = list(missed)[-1:]
        return [*missed, *on_time]

    @classmethod
    def from_spec(cls, spec: dict) -> Schedule:
        """The schedule `spec()` describes."""
        given = dict(spec)
        if "interval" in given:
            given["interval"] = timedelta(seconds=given["interval"])
            given["anchor"] = datetime.fromtimestamp(given["anchor"], UTC)
        return cls(given.pop("cron", None), **given)

    def describe(self) -> str:
        """When it runs, in a few words: its cron, or "every N s"."""
        return self.cron if self.cron is not None else f"every {self.interval.total_seconds():g} s"

    def spec(self) -> dict:
        """The schedule's settings, as JSON takes them (what identifies it in the store)."""
        when = {"cron": self.cron} if self.cron is not None else {
            "interval": self.interval.total_seconds(), "anchor": self.anchor.timestamp()}  # fmt: skip
        return {**when, "timezone": self.timezone, "catchup": self.catchup,
                "max_catchup": self.max_catchup, "overlap": self.overlap}  # fmt: skip

    def on_overlap(self, previous_running: bool) -> str:
        """What a tick does: "start", or with the previous run still running, "skip",
        "queue" (start when it ends) or "cancel-running" (cancel it, then start)."""
        return self.overlap if previous_running else "start"

    def _after(self, after: datetime, until: datetime | None) -> Iterator[datetime]:
        """The ticks in `(after, until]` (`until` None: every one after `after`)."""
        if self.interval is not None:
            steps = (after - self.anchor) // self.interval + 1  # the first tick after `after`
            instant = self.anchor + steps * self.interval
            while until is None or instant <= until:
                yield instant
                instant += self.interval
            return
        for instant in self._cron_ticks(after.astimezone(self.zone).date() - _DAY):
            if until is not None and instant > until:
                return
            if instant > after:
                yield instant

    def _cron_ticks(self, day: date) -> Iterator[datetime]:
        """Every tick from local day `day` on, ascending, by the daylight-saving rules; it
        ends after SEARCH_DAYS days in which none matched."""
        from croniter import croniter

        minutes, hours = self._fields
        times = [(h, m) for h in hours for m in minutes]
        idle = 0
        while idle < SEARCH_DAYS:
            idle += 1
            if croniter.match(self.cron, datetime(day.year, day.month, day.day, *times[0])):
                idle = 0
                instants = set()  # a day's instants are its own: days never interleave
                for h, m in times:
                    wall = datetime(day.year, day.month, day.day, h, m)
                    instants.update(_instants(wall, self.zone, self._every_hour))
                yield from sorted(instants)
            day += _DAY


def registered(reader, runs: int = 10) -> list[dict]:
    """Each schedule servers registered, as the CLI, the API and the page show it: its
    settings, when it runs in words, its next tick (epoch seconds), and its latest `runs`
    scheduled runs, the latest first."""
    from dataclasses import asdict

    now, shown = datetime.now(UTC), []
    for served in reader.schedules():
        schedule = Schedule.from_spec(served.spec)
        shown.append({
            "id": served.id, "flow_name": served.flow_name, "entry_point": served.entry_point,
            "when": schedule.describe(), **served.spec, "parameters": served.parameters,
            "next": schedule.next_after(now).timestamp(),
            "runs": [asdict(r) for r in reader.scheduled_runs(served.id, runs)],
        })  # fmt: skip
    return shown


def _instants(wall: datetime, zone, every_hour: bool) -> list[datetime]:
    """The instants at which the wall clock of `zone` shows `wall`, by the DST rules."""
    early = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    late = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if early.astimezone(zone).replace(tzinfo=None) != wall:  # skipped: in a gap
        return [] if every_hour else [_gap_end(wall, zone, late, early)]
    if early == late or not every_hour:
        return [early]
    return [early, late]  # shown twice, and every hour counts


def _gap_end(wall: datetime, zone, before: datetime, after: datetime) -> datetime:
    """The first instant whose wall time in `zone` is past the skipped time `wall`."""
    lo, hi = int(before.timestamp()), int(after.timestamp())  # transitions fall on seconds
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) < wall:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def _parse(cron: str) -> tuple[tuple[list[int], list[int]], bool]:
    """((minutes, hours), whether the hour field is `*`), or ScheduleError."""
    from croniter import croniter

    text = cron.strip() if isinstance(cron, str) else cron
    if not isinstance(text, str) or (not text.startswith("@") and len(text.split()) != 5):
        raise ScheduleError(
            f"cron={cron!r} is not a cron expression of five fields (minute hour "
            "day-of-month month day-of-week), e.g. cron='0 2 * * *', or a macro such as "
            "'@daily'."
        )
    try:
        fields, _ = croniter.expand(text)
    except (ValueError, KeyError) as exc:
        raise ScheduleError(
            f"cron={cron!r} is not a cron expression ({exc}); give five fields (minute "
            "hour day-of-month month day-of-week), e.g. cron='30 2 * * *'."
        ) from None
    minutes, hours = (list(range(n)) if f == ["*"] else f for f, n in zip(fields, (60, 24)))
    return (minutes, hours), fields[1] == ["*"]


def _zone(name: str):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(
            f"timezone={name!r} is not a time zone name: give an IANA name such as "
            "'Europe/London', 'America/New_York' or 'UTC'."
        ) from None


def _aware(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ScheduleError(
            f"{what}={moment!r} is not a datetime with a time zone: give, say, "
            "datetime.now(timezone.utc)."
        )
    return moment


def _choice(what: str, given: str, choices: tuple[str, ...]) -> str:
    if given not in choices:
        raise ScheduleError(f"{what}={given!r} is not one of {', '.join(choices)}.")
    return given


__all__ = ["Schedule", "ScheduleError", "CATCHUP", "OVERLAP", "registered"]
