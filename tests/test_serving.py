"""Serving flows on schedules (src/headrace/serving.py, store/schedules.py, cli/serve.py).

1. Overlap, on a manual clock with runs that last 90 s of it: on a 60 s
   schedule, `skip` never has two runs at once, `queue` runs them back to
   back, `cancel-running` cancels the previous one at each tick. A server
   started again after six hours down runs the missed ticks its catch-up
   policy says, then goes on.
2. A tick is taken once, and a schedule registered once, on SQLite and on
   PostgreSQL; three server processes on one store over 10,000 ticks start
   each tick exactly once.
3. `headrace serve` killed by SIGKILL and started again: every tick from the
   first to the last ran once (none twice, none lost), each its own recorded
   flow run; `headrace schedules ls` and `runs` show them.
4. What cannot be served is refused, saying what to do.
5. The web UI's Schedules page and /api/schedules show them, hostile text escaped.

The store is a real SQLite file per test; servers and flow runs in 2 and 3
are real processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest

from cli_helpers import home_fixture, invoke  # noqa: F401
from headrace import Flow, flow, task
from headrace.engine.clock import ManualClock
from headrace.schedules import Schedule, ScheduleError
from headrace.serving import Server
from headrace.store import open_reader, open_ticks
from headrace.store.schedules import ServedSchedule

BACKSTOP = 60.0
SHOTS = os.environ.get("HEADRACE_UI_SCREENSHOTS")  # `make screenshots` sets it to docs/images
T0 = datetime(2026, 6, 1, tzinfo=UTC)


@task
def hello(name):
    return f"hello {name}"


with Flow("greet") as greet:
    hello("world")


class ClockRun:
    """A run that lasts `seconds` on `clock`; cancelling it ends it there and then."""

    def __init__(self, clock: ManualClock, seconds: float, log: list):
        self.clock, self.start = clock, clock.now()
        self.end = self.start + timedelta(seconds=seconds)
        self.cancelled = False
        log.append(self)

    def running(self) -> bool:
        return self.clock.now() < self.end

    def cancel(self) -> None:
        self.cancelled, self.end = True, self.clock.now()

    def crashed(self) -> bool:
        return False


def served(home, overlap: str) -> tuple[list[ClockRun], dict[float, str]]:
    """An hour of a 60 s schedule whose runs take 90 s: the runs, and each tick's state."""
    clock, runs = ManualClock(T0), []
    store = open_ticks()
    server = Server(
        greet, [Schedule(interval=timedelta(seconds=60), anchor=T0, overlap=overlap)],
        store=store, clock=clock, launch=lambda sid, tick, params: ClockRun(clock, 90, runs),
    )  # fmt: skip
    server.serve(until=T0 + timedelta(hours=1))
    ticks = {
        r.scheduled_time - T0.timestamp(): r.state_name for r in store.scheduled_runs(limit=999)
    }
    return runs, ticks


# -- 1. overlap -----------------------------------------------------------------------------------


def test_a_90_s_job_on_a_60_s_schedule_under_skip_never_runs_twice_at_once(home):
    runs, ticks = served(home, "skip")
    starts = [(r.start - T0).total_seconds() for r in runs]
    assert starts == list(range(60, 3601, 120))  # every other tick, from the first
    assert all(a.end <= b.start for a, b in zip(runs, runs[1:]))
    assert sorted(t for t, state in ticks.items() if state == "Skipped") == list(
        range(120, 3601, 120)
    )


def test_queue_runs_each_tick_after_the_one_before(home):
    runs, ticks = served(home, "queue")
    assert all(a.end <= b.start for a, b in zip(runs, runs[1:]))
    assert "Skipped" not in ticks.values() and len(runs) >= 30  # none dropped: they wait


def test_cancel_running_cancels_the_previous_run_at_each_tick(home):
    runs, _ = served(home, "cancel-running")
    assert [(r.start - T0).total_seconds() for r in runs] == list(range(60, 3601, 60))
    assert [r.cancelled for r in runs] == [True] * (len(runs) - 1) + [False]


@pytest.mark.parametrize("catchup, missed", [("skip", 0), ("latest", 1), ("all", 5)])
def test_a_server_started_again_after_downtime_runs_what_its_catch_up_policy_says(
    home, catchup, missed
):
    """Served hourly until 03:00, down until 09:00:30 (ticks 04:00-08:00 missed), served
    again: the missed ticks by the policy, then 09:00 on time, then on as before."""
    schedule = lambda: Schedule("0 * * * *", catchup=catchup, max_catchup=5)  # noqa: E731
    starts: dict[str, list[float]] = {"first": [], "second": []}

    def serve_from(who: str, start: datetime, until: datetime) -> None:
        clock = ManualClock(start)

        def launch(sid, tick, params):
            starts[who].append((tick - T0).total_seconds() / 3600)
            return ClockRun(clock, 0, [])  # over at once: no overlap among the caught-up

        Server(greet, [schedule()], store=open_ticks(), clock=clock, launch=launch).serve(
            until=until
        )

    serve_from("first", T0, T0 + timedelta(hours=3))
    serve_from("second", T0 + timedelta(hours=9, seconds=30), T0 + timedelta(hours=11))
    assert starts["first"] == [1, 2, 3]
    assert starts["second"] == [4, 5, 6, 7, 8][5 - missed :] + [9, 10, 11]
    ticks = sorted(r.scheduled_time for r in open_ticks().scheduled_runs(limit=99))
    assert len(ticks) == len(set(ticks)) == 6 + missed


# -- 2. several servers ------------------------------------------------------------------------


def test_a_tick_is_taken_once_and_a_schedule_registered_once_on_either_store(url):
    first, second = open_ticks(url), open_ticks(url)  # two servers' connections
    served = ServedSchedule("s1", "greet", "nightly.py:greet", {"cron": "@daily"}, {"n": 1}, 1.0)
    first.register(served)
    second.register(served)
    assert first.claim("s1", 1000.0, "server-a", 1.5)
    assert not second.claim("s1", 1000.0, "server-b", 1.6)
    assert second.claim("s1", 1060.0, "server-b", 1.7)
    first.mark("s1", 1000.0, "Running")
    first.mark("s1", 1000.0, "Completed", "run-1")
    assert [(r.scheduled_time, r.state_name, r.flow_run_id, r.server)
            for r in second.scheduled_runs("s1")] == [
        (1060.0, "Scheduled", None, "server-b"), (1000.0, "Completed", "run-1", "server-a"),
    ]  # fmt: skip
    assert second.schedules() == [served] and second.last_tick("s1") == 1060.0


RACER = """
import sys
from datetime import UTC, datetime, timedelta
from headrace import Flow, task
from headrace.engine.clock import ManualClock
from headrace.schedules import Schedule
from headrace.serving import Server
from headrace.store import open_ticks

class Nothing:
    cancelled = False
    def running(self): return False
    def crashed(self): return False

def launch(sid, tick, params):
    launched.append(tick.timestamp())
    return Nothing()

with Flow("raced") as raced:
    task(lambda: 1)()
start, launched = datetime(2026, 6, 1, tzinfo=UTC), []
server = Server(raced, [Schedule(interval=timedelta(seconds=1), anchor=start)],
                store=open_ticks(), clock=ManualClock(start - timedelta(seconds=1)),
                launch=launch, name=sys.argv[1])
print("READY", flush=True)
sys.stdin.readline()
server.serve(until=start + timedelta(seconds=9_999))
print(" ".join(map(repr, launched)))
"""


def test_three_servers_on_one_store_take_each_of_10000_ticks_once(home):
    open_ticks()  # the schema, made before the racers start
    env = {**os.environ, "HEADRACE_HOME": str(home)}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(RACER), f"server-{i}"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(3)
    ]
    for racer in racers:
        assert racer.stdout.readline().strip() == "READY", racer.stderr.read()
    for racer in racers:  # all at once
        racer.stdin.write("\n")
        racer.stdin.flush()
    launched = []  # every tick each server started a run for
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err
        launched.append([float(t) for t in out.split()])
    every = sorted(t for ticks in launched for t in ticks)
    assert every == [T0.timestamp() + s for s in range(10_000)]  # each once, by one server
    taken = open_ticks().scheduled_runs(limit=20_000)
    assert sorted(r.scheduled_time for r in taken) == every
    print("ticks per server:", [len(ticks) for ticks in launched])


# -- 3. kill -9 and a restart ---------------------------------------------------------------------

NIGHTLY = """
from headrace import flow, task

@task
def hello(name):
    return f"hello {name}"

@flow
def nightly(name: str = "world"):
    return hello(name)
"""


def start_server(home, file):
    return subprocess.Popen(
        [sys.executable, "-m", "headrace.cli", "serve", f"{file}:nightly", "--interval", "1",
         "--catchup", "all", "--param", "name=ada"],
        env={**os.environ, "HEADRACE_HOME": str(home), "HEADRACE_LOGGING_LEVEL": "WARNING"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def until_runs(count: int) -> list:
    deadline = time.monotonic() + BACKSTOP
    while True:
        done = [r for r in open_ticks().scheduled_runs(limit=1000)
                if r.flow_run_id and r.state_name != "Running"]  # fmt: skip
        if len(done) >= count:
            return done
        assert time.monotonic() < deadline, f"fewer than {count} scheduled runs finished"
        time.sleep(0.1)


def test_a_server_killed_and_started_again_runs_each_tick_once(home, tmp_path):
    file = tmp_path / "nightly.py"
    file.write_text(NIGHTLY)
    open_ticks()
    first = start_server(home, file)
    try:
        before = len(until_runs(2))
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the server and any run it had going
        first.communicate(timeout=BACKSTOP)
    time.sleep(2.5)  # ticks go by with no server
    second = start_server(home, file)
    try:
        until_runs(before + 6)
    finally:
        os.killpg(second.pid, signal.SIGINT)
        out, err = second.communicate(timeout=BACKSTOP)
    assert "Serving flow 'nightly'" in out and "Stopped." in out, err
    taken = sorted(open_ticks().scheduled_runs(limit=1000), key=lambda r: r.scheduled_time)
    times = [r.scheduled_time for r in taken]
    assert times == [times[0] + i for i in range(len(times))]  # none lost, none twice
    finished = [r for r in taken if r.state_name == "Completed"]
    assert len(finished) >= before + 6
    with open_reader() as reader:
        runs = {r.id: r for r in reader.flow_runs(limit=1000)}
    assert all(runs[r.flow_run_id].parameters == {"name": "ada"} for r in finished)
    assert len({r.flow_run_id for r in finished}) == len(finished)

    listed = invoke("schedules", "ls")
    assert listed.exit_code == 0 and "nightly" in listed.output and "every 1 s" in listed.output
    ran = invoke("schedules", "runs", taken[0].schedule_id)
    assert ran.exit_code == 0 and finished[0].flow_run_id in ran.output


WATCHED = """
import json, sys
from headrace import context, flow, task
from headrace.store import open_ticks

@task
def look(out):
    [tick] = open_ticks().scheduled_runs()
    seen = {"state": tick.state_name, "tick_run": tick.flow_run_id, "run": context.flow_run_id}
    with open(out, "w") as f:
        json.dump(seen, f)

@flow
def watched(out: str):
    look(out)
"""


def test_a_running_scheduled_run_is_linked_to_its_flow_run_while_it_runs(home, tmp_path):
    """The run's process reserves its flow run's id and marks the tick Running with it
    before the run starts: the UI links a scheduled run while it runs, not only after."""
    import json

    file, out = tmp_path / "watched.py", tmp_path / "seen.json"
    file.write_text(WATCHED)
    tick = T0.timestamp()
    assert open_ticks().claim("s1", tick, "test", tick)
    child = subprocess.run(
        [sys.executable, "-m", "headrace.serving", f"{file}:watched", "s1", str(tick),
         json.dumps({"out": str(out)})],
        capture_output=True, text=True, timeout=BACKSTOP,
        env={**os.environ, "HEADRACE_HOME": str(home)},
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    seen = json.loads(out.read_text())
    assert seen["state"] == "Running" and seen["tick_run"] == seen["run"]
    [done] = open_ticks().scheduled_runs()
    assert (done.state_name, done.flow_run_id) == ("Completed", seen["run"])
    with open_reader() as reader:
        assert reader.flow_run(seen["run"]).flow_name == "watched"


# -- 4. refused -----------------------------------------------------------------------------------


def test_serving_without_a_schedule_or_with_a_bad_one_is_refused(home):
    @flow
    def local_only():
        return 1

    with pytest.raises(ScheduleError, match=r"^Serving needs a schedule"):
        greet.serve()
    with pytest.raises(ScheduleError, match=r"^A schedule needs exactly one of"):
        local_only.serve(cron="0 2 * * *", interval=timedelta(hours=1))
    bad = invoke("serve", "nowhere.py", "--cron", "0 2 * *")
    assert bad.exit_code == 2 and "is not a cron expression of five fields" in bad.output
    repl: dict = {"__name__": "a_notebook"}  # a module no one can import again
    exec("from headrace import Flow, task\nwith Flow('typed') as typed:\n    task(len)([])", repl)
    with pytest.raises(ScheduleError, match=r"^Flow 'typed' cannot be served from here"):
        repl["typed"].serve(cron="@daily")
    none = invoke("serve", "nowhere.py")
    assert none.exit_code == 2 and "Give --cron '0 2 * * *' or --interval SECONDS" in none.output
    assert invoke("schedules", "ls").output.startswith("No schedules:")


# -- 5. the UI ------------------------------------------------------------------------------------


def test_the_ui_shows_schedules_and_their_runs_with_hostile_text_escaped(home):
    from ui_helpers import fetched

    hostile = "<img src=x onerror=alert(1)>"
    store = open_ticks()
    store.register(ServedSchedule("s1", hostile, "f.py:f", Schedule("0 2 * * *").spec(),
                                  {"note": hostile}, T0.timestamp()))  # fmt: skip
    assert store.claim("s1", T0.timestamp(), hostile, T0.timestamp())
    store.mark("s1", T0.timestamp(), "Completed", "run-0123456789")
    page, listed = fetched(home, "/schedules", "/api/schedules")
    [shown] = listed["schedules"]
    assert hostile not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'href="/runs/run-0123456789"' in page and "Completed" in page
    assert (shown["flow_name"], shown["when"], shown["parameters"]) == (
        hostile, "0 2 * * *", {"note": hostile},
    )  # fmt: skip
    assert [(r["state_name"], r["flow_run_id"]) for r in shown["runs"]] == [
        ("Completed", "run-0123456789")
    ]


def test_the_schedules_page_in_chromium_shows_hostile_text_as_text(home):
    """Debian's Chromium through Playwright: the markup is shown, nothing of it runs."""
    from ui_helpers import chromium_page

    hostile = "<img src=x onerror=alert(1)>"
    store = open_ticks()
    for i, flow_name in enumerate(["nightly", hostile]):
        sid = f"s{i}"
        store.register(ServedSchedule(sid, flow_name, "f.py:f", Schedule("0 2 * * *").spec(),
                                      {}, T0.timestamp()))  # fmt: skip
        for hour in range(3):
            tick = (T0 + timedelta(hours=hour)).timestamp()
            assert store.claim(sid, tick, "vm:4242", tick)
            state = ("Completed", "Skipped", "Failed")[hour]
            store.mark(sid, tick, state, None if state == "Skipped" else f"run-{i}-{hour}")
    with chromium_page(home, "/schedules") as (page, dialogs):
        headings = page.locator("section.schedule h2").all_inner_texts()
        rows = page.locator("table.scheduled-runs tbody tr").count()
        if SHOTS:
            page.screenshot(path=f"{SHOTS}/ui-schedules.png", full_page=False)
    assert dialogs == [] and rows == 6
    assert [h.split(" 0 2")[0] for h in headings] == ["nightly", hostile]
