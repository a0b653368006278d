"""Tag limits shared across processes: the store's rule, the engine's use of it, real processes.

The rule (store.limits): a waiting ticket is granted when, for each of its
limited tags, fewer than `slots` tickets hold the tag or wait ahead of it.
The processes here are real: `limit_worker.py` runs a flow whose task bodies
count themselves under an flock, so a 4th holder would be seen by the bodies
themselves. Timings (hand-off p95, tasks/s) are measured in benchmarks/limits.py;
here only the 1 s in which a dead holder's slot must go on is asserted.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli_helpers import home_fixture  # noqa: F401
from headrace import Flow, flow, task
from headrace.engine.clock import ManualClock
from headrace.executors import ThreadExecutor
from headrace.store import open_limits, open_reader
from headrace.store.limits import Asked, Waiting
from limit_worker import kill_uncounted

WORKER = Path(__file__).with_name("limit_worker.py")
SHOTS = os.environ.get("HEADRACE_UI_SCREENSHOTS")  # `make screenshots` sets it to docs/images


def claims(store) -> list[tuple[str, int, int]]:
    """(tag, holding, waiting) of every limit, as the store has them now."""
    return [(lim.tag, len(lim.holders), lim.waiting) for lim in store.read()]


# -- the rule ----------------------------------------------------------------------------------


def test_slots_go_first_come_first_served_and_all_or_nothing(url):
    mine, theirs = open_limits(), open_limits()  # two stores: two processes, as the store sees
    my_queue, their_queue = Waiting(), Waiting()  # what each has waiting, kept by `exchange`
    mine.set("web", 2)
    mine.set("db", 1)
    (t1, t2, t3), granted = mine.exchange(
        [Asked(["web"]), Asked(["db", "web"]), Asked(["web"])], [], my_queue
    )
    assert granted == [t1, t2] and set(my_queue.tags_of) == {t3}  # t3 waits: web is full
    (t4, t5), granted = theirs.exchange([Asked(["db"]), Asked(["web"])], [], their_queue)
    assert granted == [] and claims(mine) == [("db", 1, 1), ("web", 2, 2)]

    _, granted = mine.exchange([], [t1], my_queue)  # web frees: t3 was first
    assert granted == [t3] and not my_queue
    assert not theirs.grantable(their_queue)
    mine.exchange([], [t2], my_queue)  # db and web free: t4 takes db, t5 web
    assert theirs.grantable(their_queue)
    assert theirs.exchange([], [], their_queue) == ([], [t4, t5]) and not their_queue
    assert claims(mine) == [("db", 1, 0), ("web", 2, 0)]


def test_a_waiter_keeps_its_place_and_holds_nothing_while_it_waits(url):
    holder, waiter = open_limits(), open_limits()
    held, waits = Waiting(), Waiting()
    holder.set("web", 1)
    holder.set("db", 1)
    (db_holder,), _ = holder.exchange([Asked(["db"])], [], held)
    (both,), granted = waiter.exchange([Asked(["db", "web"])], [], waits)
    assert granted == [] and claims(holder) == [("db", 1, 1), ("web", 0, 1)]  # web not taken
    (web_only,), granted = holder.exchange([Asked(["web"])], [], held)
    assert granted == []  # web is free, but `both` asked for it first
    _, granted = holder.exchange([], [db_holder], held)
    assert granted == [] and set(held.tags_of) == {web_only}
    assert waiter.exchange([], [], waits) == ([], [both])  # both at once
    assert claims(holder) == [("db", 1, 0), ("web", 1, 1)]


def test_a_removed_limit_lets_its_waiters_go_and_a_raised_one_lets_more(url):
    store, queue = open_limits(), Waiting()
    store.set("web", 1)
    (first, second, third), granted = store.exchange([Asked(["web"])] * 3, [], queue)
    assert granted == [first]
    store.set("web", 2)
    assert store.exchange([], [], queue)[1] == [second]
    assert store.remove("web") and not store.remove("web")
    assert store.exchange([], [], queue)[1] == [third] and not queue
    assert store.limits() == {}


@pytest.mark.parametrize("slots", [0, -1, 1.5, True, "3"])
def test_a_limit_must_be_a_whole_number_of_one_or_more(home, slots):
    with pytest.raises(ValueError, match=r"must be a whole number >= 1.*limits rm"):
        open_limits().set("web", slots)


HOLD = """
import sys, time
from headrace.store import open_limits
from headrace.store.limits import Asked, Waiting
store = open_limits()
print(store.exchange([Asked(["web"], "run-1", "tr-1", "held")], [], Waiting())[1], flush=True)
time.sleep(600)
"""


def up_for_the_restart_grace(url: str) -> None:
    """Wait until a PostgreSQL server has been up for RESTART_GRACE_SECONDS: until then no
    process is taken for dead (a restart drops the locks of the live ones too)."""
    if url.startswith("postgresql"):
        import psycopg

        from headrace.store.limits import RESTART_GRACE_SECONDS

        with psycopg.connect(url) as conn:
            (up,) = conn.execute(
                "SELECT extract(epoch FROM now() - pg_postmaster_start_time())"
            ).fetchone()
        time.sleep(max(0.0, RESTART_GRACE_SECONDS - float(up)))


def test_the_claims_of_a_killed_process_are_swept_at_once(url):
    up_for_the_restart_grace(url)
    store = open_limits()
    store.set("web", 1)
    child = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "[1]"  # it holds the only slot
        assert claims(store) == [("web", 1, 0)]  # alive: a sweep leaves it
        queue = Waiting()
        (mine,), granted = store.exchange([Asked(["web"])], [], queue)
        assert granted == []
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 1.0
    while claims(store) != [("web", 0, 1)]:  # `read` sweeps the dead first
        assert time.monotonic() < deadline, claims(store)
        time.sleep(0.01)
    assert store.exchange([], [], queue)[1] == [mine]


def test_a_lost_answer_of_the_store_leaves_no_stray_claim_and_no_grant_unheard(home):
    """The connection drops after the store committed (the client cannot know it did): the
    client asks again, and its next sweep deletes the rows it never learnt of and takes a
    grant it never heard of."""
    from headrace.engine.limits import SWEEP_SECONDS, LimitClient
    from headrace.store.limits import LimitStore

    class AnswerLost(LimitStore):
        losing = 1

        def exchange(self, *args):
            answer = super().exchange(*args)
            if self.losing:
                self.losing -= 1
                raise sqlite3.OperationalError("the connection dropped after the commit")
            return answer

    base = open_limits()
    base.set("web", 1)
    client = LimitClient(AnswerLost(base.dialect, base._connect, base.where, base.liveness))
    grants = []
    request = client.request(Asked(["web"]), lambda: grants.append("granted"))
    deadline = time.monotonic() + 10
    while not grants or len(client.store.ours()) > 1:
        assert time.monotonic() < deadline, (grants, client.store.ours())
        time.sleep(SWEEP_SECONDS / 5)
    assert grants == ["granted"] and client.store.ours() == {request.ticket: False}
    assert claims(base) == [("web", 1, 0)]  # one holder: the stray went
    client.release(request)
    assert client.flush() and claims(base) == [("web", 0, 0)]
    client.close()


# -- the engine ------------------------------------------------------------------------------


class Counter:
    """How many bodies run at once, at most (bodies in this process)."""

    def __init__(self):
        self.lock, self.now, self.peak, self.order = threading.Lock(), 0, 0, []

    def enter(self, name):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.order.append(name)

    def leave(self):
        with self.lock:
            self.now -= 1


@pytest.mark.parametrize("style", ["graph", "function"])
def test_a_store_limit_and_a_run_throttle_hold_together(home, style):
    open_limits().set("web", 2)
    counted = Counter()

    @task(tags=["web", "fast"])
    def fetch(i):
        counted.enter(i)
        time.sleep(0.02)
        counted.leave()
        return i

    if style == "graph":
        with Flow("limited") as graph:
            fetch.map(list(range(12)))
        state = graph.run(executor=ThreadExecutor(6), throttle={"fast": 3})
    else:

        @flow(executor=ThreadExecutor(6), throttle={"fast": 3})
        def limited():
            return fetch.map(range(12)).result()

        state = limited(return_state=True)
    assert state.is_successful() and counted.peak == 2 and len(counted.order) == 12
    assert claims(open_limits()) == [("web", 0, 0)]  # everything given back


def test_an_async_flow_s_awaited_calls_wait_for_their_slots(home):
    import asyncio

    open_limits().set("web", 2)
    counted = Counter()

    @task(tags=["web"])
    async def fetch(i):
        counted.enter(i)
        await asyncio.sleep(0.02)
        counted.leave()
        return i

    @flow
    async def crawl():
        return await asyncio.gather(*(fetch(i) for i in range(6)))

    assert asyncio.run(crawl()) == list(range(6))
    assert counted.peak == 2 and sorted(counted.order) == list(range(6))
    assert claims(open_limits()) == [("web", 0, 0)]


@pytest.mark.parametrize("style", ["graph", "function"])
def test_a_retry_gives_its_slot_back_while_it_waits(home, style):
    """Under a limit of 1, a task that fails waits for its retry without its slot: the other
    task runs in the gap. The manual clock moves only when nothing runs or waits for a slot."""
    open_limits().set("one", 1)
    counted, attempts = Counter(), []

    @task(tags=["one"], retries=1, retry_delay=30)
    def flaky():
        attempts.append(1)
        counted.enter(f"flaky-{len(attempts)}")
        counted.leave()
        if len(attempts) == 1:
            raise ConnectionError("once")
        return "flaky"

    @task(tags=["one"])
    def steady():
        counted.enter("steady")
        counted.leave()
        return "steady"

    clock = ManualClock()
    if style == "graph":
        with Flow("retrying") as graph:  # the newest ready task starts first: flaky
            steady()
            flaky()
        state = graph.run(executor=ThreadExecutor(2), clock=clock)
    else:

        @flow(executor=ThreadExecutor(2), clock=clock)
        def retrying():
            a, b = flaky.submit(), steady.submit()
            return a.result(), b.result()

        state = retrying(return_state=True)
    assert state.is_successful()
    assert counted.order == ["flaky-1", "steady", "flaky-2"] and clock.sleeps == [30.0]
    assert claims(open_limits()) == [("one", 0, 0)]


def test_a_failed_or_timed_out_task_gives_its_slot_back(home):
    from headrace.executors import ProcessExecutor

    open_limits().set("web", 1)

    @task(tags=["web"], timeout=0.5)
    def stuck(i):
        if i == 0:
            time.sleep(60)  # killed at its timeout
        if i == 1:
            raise ValueError("no")
        return i

    with Flow("faulty") as graph:
        mapped = stuck.map([0, 1, 2])
    with ProcessExecutor(2) as executor:
        state = graph.run(executor=executor)
    assert [s.name for s in state[mapped].map_states] == ["TimedOut", "Failed", "Completed"]
    assert claims(open_limits()) == [("web", 0, 0)]


# -- real processes ------------------------------------------------------------------------------


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test():
    yield
    while STARTED:
        worker = STARTED.pop()
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def start(folder: Path, count: int, seconds: float, style: str = "graph", threads: int = 4):
    STARTED.append(subprocess.Popen(
        [sys.executable, str(WORKER), str(folder), str(count), str(seconds), style, str(threads)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HEADRACE_PROGRESS": "off"},
    ))  # fmt: skip
    return STARTED[-1]


def events(folder: Path) -> list[tuple[str, float, int]]:
    lines = (folder / "events").read_text().splitlines() if (folder / "events").exists() else []
    return [(kind, float(at), int(pid)) for kind, at, pid in (line.split() for line in lines)]


def test_8_processes_of_200_tasks_on_a_limit_of_3_never_run_a_4th(url, tmp_path):
    open_limits().set("web", 3)
    workers = [start(tmp_path, 200, 0.002, ["graph", "function"][i % 2]) for i in range(8)]
    for worker in workers:
        assert worker.wait(timeout=240) == 0, worker.stderr.read()
    assert (tmp_path / "peak").read_text() == "3"  # counted by the bodies themselves
    started = [e for e in events(tmp_path) if e[0] == "start"]
    assert len(started) == 1600 and len({pid for _, _, pid in started}) == 8
    assert claims(open_limits()) == [("web", 0, 0)]


def test_a_big_map_asks_64_at_a_time_so_a_later_run_gets_its_turn(home, tmp_path):
    """A run keeps at most ASK_AHEAD requests waiting in the store: a 400-item map never
    has more rows waiting, and a run that asks after it starts long before it ends."""
    from headrace.engine.throttle import ASK_AHEAD

    open_limits().set("web", 1)
    big = start(tmp_path, 400, 0.005)
    deadline, most = time.monotonic() + 120, 0
    while len(events(tmp_path)) < 20:
        assert time.monotonic() < deadline and big.poll() is None, big.stderr.read()
        time.sleep(0.01)
    later = start(tmp_path, 1, 0.005, "calls")
    while big.poll() is None:
        with open_reader() as reader:
            [web] = reader.limits()
        most = max(most, web.waiting)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert big.wait() == 0 and later.wait(timeout=60) == 0, later.stderr.read()
    assert 0 < most <= ASK_AHEAD + 1  # the map's, and the later run's one
    starts = [(at, pid) for kind, at, pid in events(tmp_path) if kind == "start"]
    [turn] = [i for i, (_, pid) in enumerate(sorted(starts)) if pid == later.pid]
    assert turn < len(starts) - 200  # it did not wait for the map to end


def test_a_killed_holder_hands_its_slots_on_within_a_second(url, tmp_path):
    up_for_the_restart_grace(url)
    open_limits().set("web", 3)
    holder = start(tmp_path, 3, 600)  # takes all three slots and keeps them
    deadline = time.monotonic() + 60
    while len(events(tmp_path)) < 3:
        assert time.monotonic() < deadline and holder.poll() is None, holder.stderr.read()
        time.sleep(0.01)
    waiter = start(tmp_path, 3, 0.01, "calls")
    while claims(open_limits()) != [("web", 3, 1)]:
        assert time.monotonic() < deadline and waiter.poll() is None, waiter.stderr.read()
        time.sleep(0.01)
    killed = kill_uncounted(tmp_path, holder)
    assert waiter.wait(timeout=60) == 0, waiter.stderr.read()
    first = min(at for kind, at, pid in events(tmp_path) if kind == "start" and pid == waiter.pid)
    assert first - killed < 1.0
    assert (tmp_path / "peak").read_text() == "3"


def test_ctrl_c_withdraws_the_waiters_and_the_bodies_give_back_their_slots_as_they_end(
    home, tmp_path
):  # fmt: skip
    open_limits().set("web", 2)
    worker = start(tmp_path, 6, 3)
    deadline = time.monotonic() + 60
    while len(events(tmp_path)) < 2:
        assert time.monotonic() < deadline and worker.poll() is None, worker.stderr.read()
        time.sleep(0.01)
    worker.send_signal(signal.SIGINT)
    while claims(open_limits()) != [("web", 2, 0)]:  # the run ended; no waiter is left
        assert time.monotonic() < deadline, claims(open_limits())
        time.sleep(0.01)
    assert worker.poll() is None  # its two bodies still run on their threads, holding
    assert worker.wait(timeout=60) != 0
    with open_reader() as reader:  # as recorded: no sweep freed them, the process did
        [web] = reader.limits()
    assert (web.holders, web.waiting) == ([], 0)
    assert [kind for kind, _, _ in events(tmp_path)] == ["start", "start", "end", "end"]


# -- the page, the commands and the UI ------------------------------------------------------------


def test_the_examples_of_docs_limits_md_run(home):
    """The page's python blocks, in order, in one namespace (each asserts what it shows)."""
    from markdown_blocks import python_blocks

    page = Path(__file__).resolve().parents[1] / "docs" / "limits.md"
    blocks = python_blocks(page.read_text())
    assert blocks and all("assert" in code for _, _, code in blocks)
    namespace: dict = {}
    for _, line, code in blocks:
        exec(compile(code, f"{page}:{line}", "exec"), namespace)


HOSTILE = "\x1b]0;owned\x07<img src=x onerror=alert(1)>"


def test_the_commands_set_list_and_remove_limits_with_recorded_text_escaped(home):
    import json

    from cli_helpers import invoke, run_ok

    assert run_ok("limits", "ls").output == "No tag limits: `headrace limits set TAG N` sets one.\n"
    assert "Tag 'web': at most 3 running at once, on" in run_ok("limits", "set", "web", "3").output
    store = open_limits()
    (ticket,), _ = store.exchange([Asked(["web"], "run-1", "tr-1", HOSTILE)], [], Waiting())
    shown = run_ok("limits", "ls").output
    assert "\x1b" not in shown and "\\x1b]0;owned\\x07<img" in shown
    assert shown.splitlines()[:2] == ["TAG  LIMIT  HOLDING  WAITING", "web  3      1        0"]
    [row] = [line for line in shown.splitlines() if "run-1" in line]
    assert f":{os.getpid()}" in row
    [listed] = json.loads(run_ok("limits", "ls", "--json").output)
    assert (listed["tag"], listed["slots"], listed["waiting"]) == ("web", 3, 0)
    assert [(h["task_run_name"], h["flow_run_id"], h["pid"]) for h in listed["holders"]] == [
        (HOSTILE, "run-1", os.getpid())
    ]
    refused = invoke("limits", "set", "web", "0")
    assert refused.exit_code == 2 and "0 is not a limit: give a whole number >= 1" in refused.output
    missing = invoke("limits", "rm", "nope")
    assert missing.exit_code == 1 and "Tag 'nope' has no limit" in missing.output
    assert run_ok("limits", "rm", "web").output == "Tag 'web' is no longer limited.\n"
    assert store.limits() == {}


def test_the_ui_shows_each_limit_and_its_holders_with_hostile_text_escaped(home):
    from ui_helpers import fetched

    store = open_limits()
    store.set(HOSTILE, 2)
    store.exchange([Asked([HOSTILE], "run-0123456789", "tr-1", HOSTILE)], [], Waiting())
    store.exchange([Asked([HOSTILE])] * 2, [], Waiting())
    page, listed = fetched(home, "/limits", "/api/limits")
    [shown] = listed["limits"]
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "2 of 2 held · 1 waiting" in page and 'href="/runs/run-0123456789"' in page
    assert (shown["tag"], shown["slots"], shown["waiting"], len(shown["holders"])) == (
        HOSTILE, 2, 1, 2,
    )  # fmt: skip


def test_the_limits_page_in_chromium_shows_live_holders_and_hostile_text_as_text(home, tmp_path):
    """Debian's Chromium through Playwright, over a real process holding two slots."""
    from headrace.text import safe
    from ui_helpers import chromium_page

    store = open_limits()
    store.set("web", 2)
    store.set(HOSTILE, 1)
    store.exchange([Asked([HOSTILE], None, "tr-x", HOSTILE)], [], Waiting())
    worker = start(tmp_path, 5, 600)
    try:
        deadline = time.monotonic() + 60
        while claims(store) != [(HOSTILE, 1, 0), ("web", 2, 3)]:
            assert time.monotonic() < deadline and worker.poll() is None, worker.stderr.read()
            time.sleep(0.01)
        with chromium_page(home, "/limits", height=520) as (page, dialogs):
            headings = page.locator("section.limit h2").all_inner_texts()
            holders = page.locator("table.limit-holders tbody tr").all_inner_texts()
            if SHOTS:
                page.screenshot(path=f"{SHOTS}/ui-limits.png", full_page=False)
    finally:
        worker.kill()
        worker.wait()
    shown = safe(HOSTILE)  # the markup as text, the controls made visible
    assert dialogs == [] and "\\x1b]0;owned\\x07<img src=x" in shown
    assert headings == [f"{shown} 1 of 1 held · 0 waiting", "web 2 of 2 held · 3 waiting"]
    assert holders[0].startswith(shown) and [h.split("\t")[0] for h in holders[1:]] == [
        "hit[0]",
        "hit[1]",
    ]
    assert all(f":{worker.pid}" in h for h in holders[1:])


def test_a_database_restart_gives_no_slot_twice_and_hangs_nothing(cluster, pg_url, monkeypatch,
                                                                   tmp_path):  # fmt: skip
    """PostgreSQL restarted while one process holds the only slot and another waits: the
    locks that name live processes are gone for a moment, and nobody is taken for dead
    until they are back; what was released meanwhile is released when the server is."""
    monkeypatch.setenv("HEADRACE_DATABASE_URL", pg_url)
    open_limits().set("web", 1)
    workers = [start(tmp_path, 6, 0.3, "calls") for _ in range(2)]
    deadline = time.monotonic() + 60
    while len(events(tmp_path)) < 2:
        assert time.monotonic() < deadline, [w.stderr.read() for w in workers if w.poll()]
        time.sleep(0.01)
    cluster.stop()
    time.sleep(1.0)  # the holder's body ends meanwhile: its release waits for the server
    cluster.start()
    for worker in workers:
        assert worker.wait(timeout=120) == 0, worker.stderr.read()
    assert (tmp_path / "peak").read_text() == "1"
    assert len([e for e in events(tmp_path) if e[0] == "start"]) == 12
    assert claims(open_limits()) == [("web", 0, 0)]
