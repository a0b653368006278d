"""Resume: `flow.resume(run_id)` and `headrace runs resume RUN [--dry-run]`, both styles.

Task bodies count their runs (in a list, or in a file across processes). The
fault test kills a real `headrace run` process with SIGKILL at a random point of a
1,000-child map, three times in a chain, and checks that what the history recorded
as completed never runs again, and that the reduce still receives every input.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cli_helpers import home_fixture, invoke  # noqa: F401  (a fixture)
from headrace import Flow, Parameter, flow, task
from headrace.engine.resume import ResumeError
from headrace.store import open_reader
from log_helpers import log_fixture  # noqa: F401  (a fixture)

BIG = "y" * 5000  # kept in a file, not inline


def latest(n: int = 1):
    with open_reader() as reader:
        runs = reader.flow_runs(limit=n)
        return runs[0] if n == 1 else runs


def graph_flow(calls: list, failing: set):
    @task
    def numbers(n):
        return list(range(n))

    @task
    def work(x):
        calls.append(x)
        if x in failing:
            raise ValueError(f"item {x} failed")
        return x * 10

    @task
    def total(xs):
        return sum(xs)

    with Flow("resumable") as f:
        n = Parameter("n")
        result = total(work.map(numbers(n)))
    return f, result


def test_graph_flow_resume_reuses_completed_children(home):
    calls, failing = [], {2, 3}
    f, result = graph_flow(calls, failing)
    first = f.run(parameters={"n": 6})
    assert first.is_failed() and sorted(calls) == [0, 1, 2, 3, 4, 5]
    original = latest()
    assert original.entry_point is None  # defined in a test function: nothing can load it
    failing.clear()
    calls.clear()
    again = f.resume(original.id[:8])
    assert again.is_successful() and again[result].result() == 150
    assert sorted(calls) == [2, 3]
    resumed = latest()
    assert resumed.resumed_from == original.id and resumed.parameters == {"n": 6}
    with open_reader() as reader:
        children = [t for t in reader.task_runs(resumed.id) if t.map_index is not None]
    states = {t.map_index: t.state_name for t in children}
    assert states == {0: "Cached", 1: "Cached", 2: "Completed", 3: "Completed", 4: "Cached",
                      5: "Cached"}  # fmt: skip


def test_function_flow_resume_and_a_chain(home):
    calls, failing = [], {1, 4}

    @task
    def work(x):
        calls.append(x)
        if x in failing:
            raise ValueError("no")
        return BIG if x == 0 else x

    @task
    def count(xs):
        return len(xs)

    @flow
    def chain(n: int):
        return count(work.map(range(n)))

    assert chain(5, return_state=True).is_failed()
    first = latest()
    failing.discard(1)
    calls.clear()
    assert chain.resume(first.id, return_state=True).is_failed()  # 4 fails again
    assert sorted(calls) == [1, 4]
    second = latest()
    failing.clear()
    calls.clear()
    assert chain.resume(second.id) == 5
    assert calls == [4]  # 0, 2, 3 from the first run, 1 from the second
    third = latest()
    assert [third.resumed_from, second.resumed_from] == [second.id, first.id]


def test_an_unreadable_result_runs_again_and_so_does_its_downstream(home, log):
    calls = []

    @task
    def source():
        calls.append("source")
        return BIG

    @task
    def size(text):
        calls.append("size")
        return len(text)

    attempts = []

    @task
    def fail_once(n):
        calls.append("fail")
        attempts.append(n)
        if len(attempts) == 1:
            raise ValueError("first time")
        return n

    @flow
    def pipeline():
        return fail_once(size(source()))

    assert pipeline(return_state=True).is_failed()
    run = latest()
    with open_reader() as reader:
        [ref] = [t.result_ref for t in reader.task_runs(run.id) if t.task_name == "source"]
    Path(ref.split(":", 2)[2]).unlink()  # the source's persisted result went
    calls.clear()
    assert pipeline.resume(run.id) == 5000
    assert calls == ["source", "size", "fail"]
    [warning] = log.messages(logging.WARNING)
    assert warning.startswith("Task run 'source-0' is not reused: The persisted result at ")
    assert warning.endswith("it was deleted or damaged. It runs again.")


def test_resume_refuses_what_it_cannot_resume(home):
    @task
    def echo(x):
        return x

    @flow
    def takes(value):
        return echo(value)

    @flow
    def other():
        return takes(1)

    takes(list(range(2000)))  # too large for the history to keep the parameter
    big = latest()
    with pytest.raises(ResumeError, match=r"parameter\(s\) 'value' too large or not JSON"):
        takes.resume(big.id)
    assert takes.resume(big.id, parameters={"value": [1, 2]}) == [1, 2]
    with pytest.raises(ResumeError, match="is a run of flow 'takes', not of 'other'"):
        other.resume(big.id)
    other()
    [child] = [r for r in latest(3) if r.parent_id]
    with pytest.raises(ResumeError, match="is a subflow run; resume its parent"):
        takes.resume(child.id)


def test_a_run_still_running_is_not_resumed(home):
    import sqlite3

    @flow
    def busy():
        return 1

    busy()
    run = latest()
    conn = sqlite3.connect(home / "headrace.db")
    conn.execute("UPDATE flow_runs SET state_type = 'RUNNING', pid = ? WHERE id = ?",
                 (os.getpid(), run.id))  # fmt: skip
    conn.commit()
    conn.close()
    with pytest.raises(ResumeError, match=f"is still running \\(pid {os.getpid()}"):
        busy.resume(run.id)


# -- the CLI, and SIGKILL -----------------------------------------------------------------------

MAP_SCRIPT = """
    import os, sys, time
    from headrace import flow, task
    from headrace.executors import ThreadExecutor

    COUNTS = {counts!r}

    @task
    def child(i):
        with open(COUNTS, "a") as f:
            f.write(f"{{os.getpid()}} {{i}}\\n")
        time.sleep(0.004)
        return i

    @task
    def reduce(values):
        assert sorted(values) == list(range(1000)), "the reduce lost inputs"
        return len(values), sum(values)

    @flow(executor=ThreadExecutor(4))
    def thousand():
        return reduce(child.map(range(1000)))
    """


def counted(counts: Path) -> list[tuple[int, int]]:
    if not counts.exists():
        return []
    return [tuple(map(int, line.split())) for line in counts.read_text().splitlines() if line]


def start_and_kill(command: list[str], counts: Path, rng: random.Random, env) -> None:
    """Start `command`, SIGKILL it once its map has run a random share of what is left."""
    before = len(counted(counts))
    target = before + rng.randint(50, max(51, (1000 - before) // 2))
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while len(counted(counts)) < target and process.poll() is None:
        assert time.monotonic() < deadline, "the map did not get going"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def completed_in(run_id: str) -> set[int]:
    with open_reader() as reader:
        return {t.map_index for t in reader.task_runs(run_id)
                if t.map_index is not None and t.state_name in ("Completed", "Cached")}  # fmt: skip


def test_sigkill_then_a_chain_of_three_resumes_runs_nothing_twice(home, tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    counts = tmp_path / "counts"
    script = tmp_path / "thousand.py"
    script.write_text(textwrap.dedent(MAP_SCRIPT.format(counts=str(counts))))
    env = {**os.environ, "HEADRACE_HOME": str(home), "HEADRACE_PROGRESS": "off"}
    cli = [sys.executable, "-m", "headrace.cli"]
    start_and_kill([*cli, "run", f"{script}:thousand"], counts, rng, env)
    runs = [latest()]
    assert runs[0].entry_point == f"{script}:thousand", seed
    done = completed_in(runs[0].id)
    assert done, f"seed {seed}: the history recorded no finished child before the kill"
    for _ in range(2):  # two resumes killed too
        mark = len(counted(counts))
        start_and_kill([*cli, "runs", "resume", runs[-1].id], counts, rng, env)
        runs.append(latest())
        assert runs[-1].resumed_from == runs[-2].id, seed
        again = {i for _, i in counted(counts)[mark:]} & done
        assert not again, f"seed {seed}: completed children ran again: {sorted(again)[:10]}"
        done |= completed_in(runs[-1].id)
    plan = invoke("runs", "resume", runs[-1].id, "--dry-run")
    assert plan.exit_code == 0, plan.output
    assert "a chain of 3 runs would reuse:\nTASK" in plan.output, plan.output
    reused = int(plan.output.split("child-1")[1].split()[0])
    assert reused == len(done), seed
    mark = len(counted(counts))
    finished = subprocess.run([*cli, "runs", "resume", runs[-1].id], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert "Result: (1000, 499500)" in finished.stdout, seed
    last = [i for _, i in counted(counts)[mark:]]
    assert not set(last) & done, f"seed {seed}"
    assert sorted(last) == sorted(set(range(1000)) - done), f"seed {seed}"
    assert latest().resumed_from == runs[-1].id


def test_runs_resume_from_the_cli_and_what_a_notebook_run_says(home, tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text(
        textwrap.dedent(f"""
        import os
        from headrace import Flow, Parameter, task

        @task
        def step(x):
            with open({str(calls)!r}, "a") as f:
                f.write(f"{{x}}\\n")
            if x == 1 and os.environ.get("FAIL_ONE"):
                raise ValueError("one")
            return x

        @task
        def add(xs):
            return sum(xs)

        with Flow("jobs") as jobs:
            n = Parameter("n", default=3)
            added = add(step.map(list(range(3))))
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FAIL_ONE", "1")
    from pkg.jobs import jobs

    assert jobs.run().is_failed()
    run = latest()
    assert run.entry_point == "pkg.jobs:jobs"
    plan = invoke("runs", "resume", run.name, "--dry-run")
    assert plan.output.splitlines()[1:] == [
        "TASK    REUSED      RUNS AGAIN",
        "step-1  2 children  1 recorded, and those never reached",
        "add-1   no          yes",
        "Tasks not listed, and map children not reused, run.",
    ], plan.output
    monkeypatch.delenv("FAIL_ONE")
    calls.write_text("")
    resumed = invoke("runs", "resume", run.id[:8])
    assert resumed.exit_code == 0, resumed.output
    assert "finished in state Completed" in resumed.output
    assert calls.read_text().split() == ["1"]

    @flow
    def interactive():
        return 1

    interactive()  # defined in a function: no entry point, as in a notebook
    said = invoke("runs", "resume", latest().id)
    assert said.exit_code == 1
    assert "started from __main__ of a notebook or an interactive session" in said.output
    assert f'interactive.resume("{latest().id}")' in said.output
