"""Caches: `cache_policy`, `cache_key_fn`, `cache_expiration`, `refresh_cache`.

Every test runs on SQLite and on a real PostgreSQL (the `url` fixture). Task bodies
count their runs (in a list, or in a file across processes); the tests assert those
counts, the states, the entries in the store and the log line of each miss.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cli_helpers import home_fixture, invoke  # noqa: F401  (a fixture)
from headrace import Flow, Parameter, flow, task
from headrace.cache import FLOW_PARAMETERS, INPUTS, NO_CACHE, TASK_SOURCE
from headrace.engine.caching import cache_store
from headrace.executors import ProcessExecutor, ThreadExecutor
from headrace.store import open_reader
from log_helpers import log_fixture  # noqa: F401  (a fixture)

BIG = "x" * 5000  # serialised past INLINE_BYTES: kept in a file


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def misses(log) -> list[str]:
    return [r.getMessage() for r in log.records if r.getMessage().startswith("Cache miss")]


def test_a_second_run_is_cached_and_a_changed_input_runs(url, log):
    calls = []

    @task(cache_policy=INPUTS + TASK_SOURCE)
    def double(x, label):
        calls.append(x)
        return x * 2

    @flow
    def doubles(n):
        return [double(i, "same") for i in range(n)]

    assert doubles(2) == [0, 2]
    assert misses(log)[0] == "Cache miss (no entry): running the task."
    del log.records[:]
    state = doubles(3, return_state=True)
    assert state.result() == [0, 2, 4] and calls == [0, 1, 2]
    assert misses(log) == ["Cache miss (inputs changed: x): running the task."]
    with open_reader(url) as reader:
        runs = reader.task_runs(reader.flow_runs(limit=1)[0].id)
    assert [r.state_name for r in runs] == ["Cached", "Cached", "Completed"]
    assert all(r.cache_key and len(r.cache_key) == 64 for r in runs)
    assert len({r.cache_key for r in runs}) == 3
    assert cache_store(url).count() == 3


def test_graph_flow_map_children_are_cached_one_by_one(url):
    calls = []

    @task(cache_policy=INPUTS)
    def square(x):
        calls.append(x)
        return x * x

    @task
    def total(xs):
        return sum(xs)

    with Flow("squares") as f:
        items = Parameter("items")
        squares = square.map(items)
        result = total(squares)

    assert f.run(parameters={"items": [1, 2, 3]})[result].result() == 14
    state = f.run(parameters={"items": [2, 3, 4]}, executor=ThreadExecutor(2))
    assert state[result].result() == 29
    assert sorted(calls) == [1, 2, 3, 4]
    children = state[squares].map_states
    assert [c.name for c in children] == ["Cached", "Cached", "Completed"]


def test_the_cache_holds_across_processes_and_in_process_workers(url, tmp_path):
    script = tmp_path / "cached.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        from headrace import flow, task
        from headrace.cache import INPUTS
        from headrace.executors import ProcessExecutor

        @task(cache_policy=INPUTS)
        def slow(x):
            with open({str(tmp_path / "calls")!r}, "a") as f:
                f.write(f"{{x}}\\n")
            return x + 1

        @flow(executor=ProcessExecutor(2))
        def run_all():
            return [f.wait().name for f in slow.map(range(4))]

        print(run_all())
        """)
    )
    first = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "['Completed', 'Completed', 'Completed', 'Completed']" in first.stdout
    assert "['Cached', 'Cached', 'Cached', 'Cached']" in second.stdout
    assert sorted((tmp_path / "calls").read_text().split()) == ["0", "1", "2", "3"]


def test_two_processes_racing_on_one_key_run_it_once(url, tmp_path):
    script = tmp_path / "race.py"
    calls = tmp_path / "calls"
    script.write_text(
        textwrap.dedent(f"""
        import time
        from headrace import flow, task
        from headrace.cache import INPUTS

        @task(cache_policy=INPUTS)
        def slow(x):
            with open({str(calls)!r}, "a") as f:
                f.write("ran\\n")
            time.sleep(1.0)
            return x * 10

        @flow
        def race():
            state = slow(7, return_state=True)
            return state.name, state.result()

        print(*race())
        """)
    )
    runs = [
        subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = sorted(p.communicate(timeout=60)[0].strip() for p in runs)
    assert all(p.returncode == 0 for p in runs)
    assert calls.read_text() == "ran\n"
    assert outputs == ["Cached 70", "Cached 70", "Completed 70"]


def test_threads_racing_on_one_key_run_it_once(url):
    calls = []
    started = threading.Barrier(4)

    @task(cache_policy=INPUTS)
    def slow(x):
        calls.append(x)
        return x

    @task
    def gate(i):
        started.wait(timeout=10)
        return 5

    @flow(executor=ThreadExecutor(4))
    def race():
        return [f.result() for f in [slow.submit(gate.submit(i)) for i in range(4)]]

    assert race() == [5, 5, 5, 5]
    assert calls == [5]


def test_an_entry_expires_on_the_store_clock(url, log):
    clock = Clock()
    cache_store(url, clock=clock)
    calls = []

    @task(cache_policy=INPUTS, cache_expiration=60)
    def fetch(x):
        calls.append(x)
        return x

    @flow
    def fetches():
        return fetch(1, return_state=True).name

    fetches()
    clock.now += 59
    assert fetches() == "Cached"
    clock.now += 1
    del log.records[:]
    assert fetches() == "Completed"
    assert misses(log) == ["Cache miss (expired): running the task."]
    assert calls == [1, 1]
    assert fetches() == "Cached"  # the new entry's own 60 s


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_missing_or_damaged_result_is_recomputed_with_a_warning(url, log, damage):
    calls = []

    @task(cache_policy=INPUTS)
    def big(x):
        calls.append(x)
        return BIG + str(x)

    seen = []

    @flow
    def bigs():
        seen.append(big(1, return_state=True))

    bigs()
    first = seen[-1]
    path = Path(first.ref.storage.locate(first.ref.key))
    if damage == "delete":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:10])
    del log.records[:]
    bigs()
    again = seen[-1]
    assert again.name == "Completed" and again.result() == BIG + "1"
    assert calls == [1, 1]
    warnings = [r.getMessage() for r in log.records if r.levelno == logging.WARNING]
    assert any("is unusable" in w and "cannot be read" in w for w in warnings), warnings
    assert misses(log) == ["Cache miss (result unreadable): running the task."]
    bigs()
    assert seen[-1].name == "Cached"  # the entry was written again


def test_refresh_cache_runs_and_overwrites(url):
    calls = []

    def body(x):
        calls.append(x)
        return len(calls)

    cached = task(body, name="counted", cache_policy=INPUTS)
    refreshed = cached.with_options(refresh_cache=True)

    @flow
    def use(t):
        return t(3)

    assert use(cached) == 1
    assert use(cached) == 1
    assert use(refreshed) == 2
    assert use(cached) == 2  # the refreshed entry is the one read now


def test_task_source_changes_the_key_but_a_docstring_does_not(url):
    def make(source: str):
        namespace: dict = {}
        exec(textwrap.dedent(source), namespace)
        return task(namespace["f"], name="versioned", cache_policy=TASK_SOURCE)

    @flow
    def use(t):
        return t(return_state=True).name

    first = make("def f():\n    return 1\n")
    documented = make('def f():\n    "Now with a docstring."\n    # and a comment\n    return 1\n')
    changed = make("def f():\n    return 2\n")
    assert use(first) == "Completed"
    assert use(documented) == "Cached"
    assert use(changed) == "Completed"


def test_flow_parameters_and_cache_key_fn(url):
    calls = []

    @task(cache_policy=FLOW_PARAMETERS)
    def by_parameters():
        calls.append("p")
        return "p"

    @task(cache_key_fn=lambda context, arguments: f"{context.task_name}-{arguments['x'] % 2}")
    def by_parity(x):
        calls.append(x)
        return x

    @task(cache_key_fn=lambda context, arguments: None)
    def never(x):
        calls.append("never")
        return x

    @flow
    def keyed(day):
        return [by_parameters(), by_parity(1), by_parity(3), by_parity(4), never(1), never(1)]

    assert keyed("mon") == ["p", 1, 1, 4, 1, 1]
    assert keyed("mon") == ["p", 1, 1, 4, 1, 1]
    assert keyed("tue") == ["p", 1, 1, 4, 1, 1]
    assert calls == ["p", 1, 4, "never", "never", "never", "never", "p", "never", "never"]


def test_no_cache_and_an_input_without_a_key(url):
    @task(cache_policy=INPUTS)
    def take(x):
        return "ran"

    @task(cache_policy=NO_CACHE)
    def uncached(x):
        return "ran"

    seen = []

    @flow
    def inputs():
        seen.extend([take(threading.Lock(), return_state=True), uncached(1, return_state=True)])

    inputs(return_state=True)
    bad, plain = seen
    assert bad.is_failed()
    assert "Input 'x' cannot be part of a cache key" in bad.message
    assert "INPUTS - 'x'" in bad.message
    assert plain.name == "Completed" and plain.ref.cache_key is None


def test_cache_options_are_checked_when_the_task_is_made():
    def f(x):
        return x

    with pytest.raises(TypeError, match="cache_policy must be a policy from headrace.cache"):
        task(f, cache_policy="inputs")
    with pytest.raises(TypeError, match="not both"):
        task(f, cache_policy=INPUTS, cache_key_fn=lambda c, a: "k")
    with pytest.raises(TypeError, match="drop persist_result=False"):
        task(f, cache_policy=INPUTS, persist_result=False)
    with pytest.raises(ValueError, match="cache_expiration must be a timedelta or seconds"):
        task(f, cache_policy=INPUTS, cache_expiration=-1)
    with pytest.raises(TypeError, match="give target= or the cache options, not both"):
        task(f, cache_policy=INPUTS, target="out_{x}.json")
    with pytest.raises(TypeError, match="refresh_cache=True needs a cache_policy"):
        task(f, refresh_cache=True)
    with pytest.raises(TypeError, match="cache_policy must be"):
        task(f).with_options(cache_policy=42)


def test_a_cached_task_persists_even_when_its_flow_does_not(url):
    calls = []

    @task(cache_policy=INPUTS)
    def kept(x):
        calls.append(x)
        return x

    @flow(persist_result=False)
    def unpersisted():
        return kept(1, return_state=True).name

    assert [unpersisted(), unpersisted()] == ["Completed", "Cached"]
    assert calls == [1]


def test_process_executor_workers_use_the_same_cache(url):
    @task(cache_policy=INPUTS)
    def add_one(x):
        return x + 1

    @flow(executor=ProcessExecutor(2))
    def plus():
        return [f.wait().name for f in add_one.map(range(3))]

    assert plus() == ["Completed"] * 3
    assert plus() == ["Cached"] * 3


# -- the CLI -----------------------------------------------------------------------------------


def test_cache_ls_and_clear(home, tmp_path):
    @task(cache_policy=INPUTS)
    def kept(x):
        return BIG if x == 0 else x

    @task(cache_policy=INPUTS, name="other\x1b[31mred")
    def other(x):
        return x

    @flow
    def fill():
        return [kept(0), kept(1), other(2)]

    fill()
    listed = invoke("cache", "ls")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["KEY", "TASK", "WRITTEN", "EXPIRES", "BY", "TASK", "RUN", "RESULT"]
    assert len(lines) == 4 and "\x1b" not in listed.output and "other\\x1b[31mred" in listed.output
    [file_row] = [line for line in lines if "/results/cache/" in line]
    path = Path(file_row.split()[-1])
    assert path.is_file()
    only = invoke("cache", "ls", "--task", "kept", "--limit", "1")
    assert "(1 of 3 cache entries; --limit shows more)" in only.output
    assert invoke("cache", "clear", "--older-than", "1h").output == "Deleted 0 cache entries.\n"
    cleared = invoke("cache", "clear", "--task", "kept")
    assert cleared.output == "Deleted 2 cache entries.\n"
    assert not path.exists()  # its result file went with it
    assert invoke("cache", "ls", "--task", "kept").output == "No cache entries of task kept.\n"
    assert invoke("cache", "clear").output == "Deleted 1 cache entry.\n"
    bad = invoke("cache", "clear", "--older-than", "soon")
    assert bad.exit_code == 2 and "is not an age" in bad.output


def test_db_prune_keeps_cached_results_and_reset_drops_them(home):
    @task(cache_policy=INPUTS)
    def big(x):
        return BIG

    @flow
    def once():
        ref = big(1, return_state=True).ref
        return ref.storage.locate(ref.key)

    path = Path(once())
    assert invoke("db", "prune", "--older-than", "0s").exit_code == 0
    assert path.is_file()  # the run went; the entry and its result stay
    assert invoke("cache", "ls").output.count("\n") == 2
    assert invoke("db", "reset", "--yes").exit_code == 0
    assert not path.exists()
    assert invoke("cache", "ls").output == "No cache entries.\n"


def test_a_claim_dies_with_the_process_holding_it(url, tmp_path):
    held = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import pathlib, time
        from headrace.engine.caching import cache_store
        with cache_store({url!r}).claim("the-key"):
            pathlib.Path({str(held)!r}).write_text("yes")
            time.sleep(60)
        """)])  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not held.exists():
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.01)
        waiter = threading.Thread(target=lambda: cache_store(url).claim("the-key").__enter__())
        waiter.daemon = True
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # held by the other process
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        killed = time.monotonic()
        waiter.join(5)
        assert not waiter.is_alive()
        assert time.monotonic() - killed < 1.0
    finally:
        holder.kill()
