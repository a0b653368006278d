"""Schedules (src/headrace/schedules.py): ticks, daylight-saving time, catch-up, overlap.

1. Two years of ticks in New York, London and Lord Howe (a 30-minute shift):
   `30 2 * * *` fires exactly once on every local day, transition days too,
   and at the end of the gap on the day it is skipped; an hourly cron fires
   23 times on the day clocks go forward and 25 on the day they go back.
2. Ticks come ascending, once each, within (after, until].
3. Catch-up after 6 hours of downtime on an hourly schedule: 0 / 1 / 6 runs
   under skip / latest / all, and `max_catchup` keeps the most recent.
4. Intervals count elapsed time from their anchor; overlap policies.
5. What cannot be used is refused, naming what to give instead.

Every test passes the times in: nothing here reads a clock.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from headrace.schedules import Schedule, ScheduleError

ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe"]
DAYS = [date(2025, 1, 1) + timedelta(days=i) for i in range(730)]  # two whole years


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def per_local_day(schedule: Schedule) -> Counter:
    """How often `schedule` fires on each local day of DAYS."""
    zone = ZoneInfo(schedule.timezone)
    after = local_midnight(DAYS[0], zone) - timedelta(microseconds=1)
    until = local_midnight(DAYS[-1] + timedelta(days=1), zone) - timedelta(microseconds=1)
    return Counter(t.astimezone(zone).date() for t in schedule.ticks(after, until))


def transitions(zone_name: str) -> tuple[list[date], list[date]]:
    """(the days clocks go forward, the days they go back) in DAYS."""
    zone = ZoneInfo(zone_name)
    forward, back = [], []
    for day in DAYS:
        before = local_midnight(day, zone).utcoffset()
        after = local_midnight(day + timedelta(days=1), zone).utcoffset()
        if after > before:
            forward.append(day)
        elif after < before:
            back.append(day)
    return forward, back


# -- 1. daylight-saving time ---------------------------------------------------------------------


@pytest.mark.parametrize("zone", ZONES)
def test_a_time_of_day_fires_once_every_day_transition_days_too(zone):
    forward, back = transitions(zone)
    assert len(forward) == len(back) == 2  # two years: two of each
    fired = per_local_day(Schedule("30 2 * * *", timezone=zone))
    assert set(fired) == set(DAYS) and set(fired.values()) == {1}


@pytest.mark.parametrize(
    "zone, day, fires_at",
    [  # the gap's end, as the zone's clock shows it
        ("America/New_York", date(2025, 3, 9), "2025-03-09 03:00-04:00"),
        ("Europe/London", date(2026, 3, 29), "2026-03-29 02:00+01:00"),
        ("Australia/Lord_Howe", date(2025, 10, 5), "2025-10-05 02:30+11:00"),
    ],
)
def test_a_skipped_time_fires_at_the_end_of_the_gap(zone, day, fires_at):
    """London skips 01:00-02:00 and Lord Howe 02:00-02:30: `30 1` and `15 2` fall in them."""
    cron = {"America/New_York": "30 2 * * *", "Europe/London": "30 1 * * *"}.get(zone, "15 2 * * *")
    schedule = Schedule(cron, timezone=zone)
    start = local_midnight(day, ZoneInfo(zone))
    [tick] = schedule.ticks(start, start + timedelta(hours=23))
    assert tick.astimezone(ZoneInfo(zone)).isoformat(" ", "minutes") == fires_at


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London"])
def test_an_hourly_cron_fires_23_and_25_times_on_the_transition_days(zone):
    forward, back = transitions(zone)
    fired = per_local_day(Schedule("0 * * * *", timezone=zone))
    assert [fired[d] for d in forward] == [23, 23]
    assert [fired[d] for d in back] == [25, 25]
    assert {fired[d] for d in DAYS if d not in forward + back} == {24}


def test_lord_howes_half_hour_shift_skips_or_repeats_only_the_times_it_shows():
    """Lord Howe skips 02:00-02:29 and repeats 01:30-01:59: :00 every hour loses one
    tick on the day it goes forward and repeats none; :30 is the other way round."""
    forward, back = transitions("Australia/Lord_Howe")
    on_the_hour = per_local_day(Schedule("0 * * * *", timezone="Australia/Lord_Howe"))
    half_past = per_local_day(Schedule("30 * * * *", timezone="Australia/Lord_Howe"))
    assert [on_the_hour[d] for d in forward + back] == [23, 23, 24, 24]
    assert [half_past[d] for d in forward + back] == [24, 24, 25, 25]


def test_a_repeated_time_of_day_fires_at_its_first_showing():
    """New York shows 01:30 twice on 2025-11-02: first in EDT (-04:00)."""
    schedule = Schedule("30 1 * * *", timezone="America/New_York")
    start = datetime(2025, 11, 2, tzinfo=ZoneInfo("America/New_York"))
    [tick] = schedule.ticks(start, start + timedelta(hours=24))
    assert tick == datetime(2025, 11, 2, 5, 30, tzinfo=UTC)


# -- 2. ticks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cron", ["*/20 * * * *", "0 9-17 * * MON-FRI", "@daily", "0 0 L * *"])
def test_ticks_come_ascending_once_each_within_the_window(cron):
    schedule = Schedule(cron, timezone="Europe/London")
    after = datetime(2025, 10, 20, 12, 0, tzinfo=UTC)
    until = after + timedelta(days=40)
    ticks = list(schedule.ticks(after, until))
    assert ticks and ticks == sorted(set(ticks))
    assert after < ticks[0] and ticks[-1] <= until
    assert ticks[0] == schedule.next_after(after)
    assert all(t.tzinfo is UTC for t in ticks)


def test_a_tick_at_the_window_edges_belongs_to_the_later_window():
    schedule = Schedule("0 * * * *")
    noon = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert list(schedule.ticks(noon, noon + timedelta(hours=1))) == [noon + timedelta(hours=1)]


# -- 3. catch-up --------------------------------------------------------------------------------


@pytest.mark.parametrize("catchup, runs", [("skip", 0), ("latest", 1), ("all", 6)])
def test_six_hours_of_downtime_on_an_hourly_schedule(catchup, runs):
    last = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)  # London goes forward in the downtime
    now = last + timedelta(hours=6, minutes=30)
    due = Schedule("0 * * * *", timezone="Europe/London", catchup=catchup).due(last, now)
    missed = [last + timedelta(hours=h) for h in range(1, 7)]
    assert due == missed[len(missed) - runs :]


def test_max_catchup_keeps_the_most_recent_missed_ticks():
    last = datetime(2026, 1, 1, tzinfo=UTC)
    now = last + timedelta(days=3, minutes=30)
    due = Schedule("0 * * * *", catchup="all", max_catchup=4).due(last, now)
    assert due == [last + timedelta(hours=h) for h in (69, 70, 71, 72)]


@pytest.mark.parametrize("catchup, missed", [("skip", []), ("latest", [5]), ("all", [4, 5])])
def test_a_tick_seen_on_time_runs_whatever_the_catch_up_policy(catchup, missed):
    last = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)  # then down until 06:00:20
    now = last + timedelta(hours=3, seconds=20)
    due = Schedule("0 * * * *", catchup=catchup).due(last, now, late=60)
    assert due == [last.replace(hour=h) for h in missed] + [last.replace(hour=6)]


# -- 4. intervals and overlap -------------------------------------------------------------------


def test_an_interval_counts_elapsed_time_from_its_anchor_whatever_the_zone():
    anchor = datetime(2026, 3, 28, 0, 10, tzinfo=UTC)
    every = [Schedule(interval=timedelta(minutes=90), anchor=anchor, timezone=z) for z in ZONES]
    after = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    expected = [anchor + timedelta(minutes=90 * k) for k in range(16, 20)]
    for schedule in every:
        assert list(schedule.ticks(after, after + timedelta(hours=6))) == expected
        assert schedule.next_after(expected[0]) == expected[1]


def test_overlap_decides_what_a_tick_does_while_the_previous_run_runs():
    assert Schedule("* * * * *").on_overlap(previous_running=False) == "start"
    for policy in ("skip", "queue", "cancel-running"):
        assert Schedule("* * * * *", overlap=policy).on_overlap(previous_running=True) == policy


# -- 5. refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "A schedule needs exactly one of cron='0 2 * * *' or interval=timedelta(...)."),
        (
            {"cron": "0 2 * * *", "interval": timedelta(hours=1)},
            "A schedule needs exactly one of cron='0 2 * * *' or interval=timedelta(...).",
        ),
        (
            {"cron": "61 * * * *"},
            "cron='61 * * * *' is not a cron expression ([61 * * * *] is not acceptable, out "
            "of range); give five fields (minute hour day-of-month month day-of-week), e.g. "
            "cron='30 2 * * *'.",
        ),
        (
            {"cron": "0 0 2 * * *"},
            "cron='0 0 2 * * *' is not a cron expression of five fields (minute hour "
            "day-of-month month day-of-week), e.g. cron='0 2 * * *', or a macro such as "
            "'@daily'.",
        ),
        (
            {"cron": "0 2 * * *", "timezone": "Europe/Londn"},
            "timezone='Europe/Londn' is not a time zone name: give an IANA name such as "
            "'Europe/London', 'America/New_York' or 'UTC'.",
        ),
        (
            {"interval": timedelta(0)},
            "interval=datetime.timedelta(0) is not a positive timedelta: give, say, "
            "interval=timedelta(minutes=15).",
        ),
        ({"cron": "@daily", "catchup": "some"}, "catchup='some' is not one of skip, latest, all."),
        (
            {"cron": "@daily", "overlap": "cancel"},
            "overlap='cancel' is not one of skip, queue, cancel-running.",
        ),
        (
            {"cron": "@daily", "max_catchup": 0},
            "max_catchup=0 is not a whole number of at least 1.",
        ),
    ],
)
def test_a_schedule_that_cannot_be_used_is_refused_saying_what_to_give(kwargs, message):
    with pytest.raises(ScheduleError) as refused:
        Schedule(**kwargs)
    assert str(refused.value) == message


def test_times_without_a_zone_and_crons_that_never_fire_are_refused():
    with pytest.raises(ScheduleError, match=r"^after=datetime.datetime\(2026, 1, 1, 0, 0\) is not"):
        list(Schedule("@daily").ticks(datetime(2026, 1, 1), datetime(2026, 2, 1, tzinfo=UTC)))
    with pytest.raises(ScheduleError, match=r"^cron='0 0 30 2 \*' never fires: no day matches"):
        Schedule("0 0 30 2 *").next_after(datetime(2026, 1, 1, tzinfo=UTC))


def test_the_examples_of_docs_schedules_md_run():
    """The page's python blocks, in order, in one namespace (each asserts what it shows)."""
    from pathlib import Path

    from markdown_blocks import python_blocks

    page = Path(__file__).resolve().parents[1] / "docs" / "schedules.md"
    blocks = python_blocks(page.read_text())
    assert len(blocks) == 2 and all("assert" in code for _, _, code in blocks)
    namespace: dict = {}
    for _, line, code in blocks:
        exec(compile(code, f"{page}:{line}", "exec"), namespace)
