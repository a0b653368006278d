"""What a run loads: a first run in a fresh interpreter imports only what it uses.

The whole process (`import headrace` + a two-task flow) is measured in
`benchmarks/` against a bare thread pool's; these tests keep the modules a
plain run does not need out of it. Each case runs in a new interpreter with
history on, in a new HEADRACE_HOME, and checks the run was recorded.
"""

from __future__ import annotations

import ast
import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest

# Loaded only by what needs them: annotations (typing), JSON parameters, tags and
# serializers (json), result files (pathlib, the storage module), timeouts in killable
# children (select, signal); the records and edges are plain classes (dataclasses).
NOT_LOADED = (
    "typing",
    "dataclasses",
    "json",
    "pathlib",
    "urllib.parse",
    "select",
    "signal",
    "headrace.results.storage",
    "cloudpickle",
)

GRAPH = """
    from headrace import Flow, task

    @task
    def one():
        return 1

    @task
    def plus_one(x):
        return x + 1

    with Flow("two") as flow:
        b = plus_one(one())
    assert flow.run()[b].result() == 2
"""

FUNCTION = """
    from headrace import flow, task

    @task
    def one():
        return 1

    @flow
    def two():
        return one() + 1

    assert two() == 2
"""


def loaded_by(code: str, home) -> list[str]:
    script = textwrap.dedent(code) + (
        f"\nimport sys\nprint([m for m in {NOT_LOADED!r} if m in sys.modules])\n"
    )
    env = {"HEADRACE_HOME": str(home), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return ast.literal_eval(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("code", [GRAPH, FUNCTION], ids=["graph", "function"])
def test_a_first_run_loads_none_of_what_it_does_not_use(code, tmp_path):
    assert loaded_by(code, tmp_path) == []
    with sqlite3.connect(tmp_path / "headrace.db") as conn:
        states = conn.execute("SELECT state_name FROM flow_runs").fetchall()
        names = {row[0] for row in conn.execute("SELECT task_name FROM task_runs")}
    assert states == [("Completed",)]
    assert names == ({"one", "plus_one"} if code is GRAPH else {"one"})


def test_what_a_run_needs_is_loaded_when_it_is_used(tmp_path):
    """Parameters, tags and a result too large to keep inline load json, pathlib and the
    storage module: the same run, only later, and recorded alike."""
    code = """
        from headrace import Flow, Parameter, task

        @task(tags=["io"])
        def big(n):
            return "x" * n

        with Flow("big") as flow:
            out = big(Parameter("n"))
        assert flow.run(parameters={"n": 5000})[out].result() == "x" * 5000
    """
    loaded = loaded_by(code, tmp_path)
    assert {"json", "pathlib", "headrace.results.storage"} <= set(loaded)
    with sqlite3.connect(tmp_path / "headrace.db") as conn:
        parameters, tags, ref = conn.execute(
            "SELECT f.parameters, t.tags, t.result_ref FROM flow_runs f "
            "JOIN task_runs t ON t.flow_run_id = f.id"
        ).fetchone()
    assert json.loads(parameters) == {"n": 5000} and json.loads(tags) == ["io"]
    assert ref.startswith("file:pickle:" + str(tmp_path / "results"))
