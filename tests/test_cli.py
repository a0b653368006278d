"""The `headrace` command (src/headrace/cli/: one module per command group).

Most tests drive the click group in-process with CliRunner (the helpers are in
cli_helpers.py); the subprocess tests run `python -m headrace.cli` as a user
would (the same code as the `headrace` script). Every test has its own
HEADRACE_HOME under tmp_path, so nothing touches ~/.headrace. That recorded
strings cannot drive the terminal is tested in faults/test_text.py.

Runs come from real flows run through `headrace run`, except where a test
needs ids, names or end times it chooses (prefix lookups, prune): those
runs are written through the store's own Recorder API.

`runs logs --follow` is tested against a flow in another process that
blocks on a FIFO until the test writes to it, so "still running", "new
lines while it runs" and "stops by itself when it ends" are each observed,
not timed. Reads of a subprocess's output go through a queue with a
backstop, so a broken command fails a test instead of hanging it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli_helpers import home_fixture, invoke, json_runs, record, run_ok  # noqa: F401  (a fixture)
from headrace import Flow, cli, task
from headrace.store import get_store, open_reader, open_recorder
from headrace.store import sql as store_sql
from headrace.store.records import LogRecord, TaskRun

BACKSTOP = 60.0  # seconds before a wait on a subprocess gives up and fails the test
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (DEBUG|INFO|WARNING|ERROR|CRITICAL) *\| .+ - ")

# A seed-004-style file: tasks, a flow with a subflow and a map, a failing flow, a graph
# flow whose map fails for some children, and a flow that reports the types it was given.
FLOWS = """
from headrace import Flow, Parameter, flow, get_run_logger, task


@task
def add_one(x):
    return x + 1


@flow
def subflow(x):
    return add_one(x)


@flow(flow_run_name="parent-{n}")
def my_flow(n: int = 1):
    a = add_one(n)
    add_one.map([1, 2, 3]).result()
    get_run_logger().info("calling the subflow with %s", a)
    return subflow(a)


@task
def fail():
    raise ValueError("boom")


@flow(flow_run_name="failing-run")
def failing_flow():
    fail()


@flow(validate_parameters=False)
def types(**kwargs):
    return {k: type(v).__name__ for k, v in sorted(kwargs.items())}


@task
def make(n):
    return list(range(n))


@task
def check(x):
    if x % 3 == 0:
        raise ValueError(f"bad {x}")
    return x


with Flow("scrape") as graph:
    n = Parameter("n", default=5)
    check.map(make(n))

not_a_flow = 42
"""

# A flow that logs, says READY on stdout, then blocks until someone writes to a FIFO.
HELD = """
from headrace import flow, get_run_logger, task
from headrace.store import get_store


@task
def wait_for_release(fifo):
    logger = get_run_logger()
    logger.info("waiting for release")
    get_store().flush()  # the lines so far are in the history before READY is printed
    print("READY", flush=True)
    with open(fifo) as f:
        f.read()
    logger.info("released")
    return 1


@flow(flow_run_name="held-run")
def held(fifo: str):
    return wait_for_release(fifo)
"""


# -- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture
def flows_file(tmp_path) -> Path:
    path = tmp_path / "seedflows.py"
    path.write_text(FLOWS)
    return path


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    env.update(HEADRACE_HOME=str(home), HEADRACE_PROGRESS="off")
    return env


def headrace(home: Path, *args: str) -> subprocess.CompletedProcess:
    """The command as a user runs it, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "headrace.cli", *args],
        capture_output=True,
        text=True,
        env=env_for(home),
        timeout=BACKSTOP,
    )


def spawn(home: Path, *args: str) -> tuple[subprocess.Popen, queue.Queue]:
    """Start the command in the background; its stdout lines arrive on the queue."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "headrace.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env_for(home),
    )
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)  # end of output

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def read_until(lines: queue.Queue, needle: str) -> list[str]:
    """Lines up to and including the first that contains `needle`; fails at end of output."""
    seen = []
    while True:
        line = lines.get(timeout=BACKSTOP)
        assert line is not None, f"output ended before {needle!r}: {seen}"
        seen.append(line)
        if needle in line:
            return seen


def drain(lines: queue.Queue) -> list[str]:
    rest = []
    while (line := lines.get(timeout=BACKSTOP)) is not None:
        rest.append(line)
    return rest


# -- help and exit codes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, expected",
    [
        ((), ["version", "run", "runs", "db"]),
        (("version",), ["Show versions"]),
        (("run",), ["FILE.py[:FLOW]", "--param"]),
        (("runs",), ["ls", "show", "logs"]),
        (("runs", "ls"), ["--flow", "--state", "--limit", "--json"]),
        (("runs", "show"), ["RUN", "--json"]),
        (("runs", "logs"), ["RUN", "--follow"]),
        (("db",), ["prune", "reset", "upgrade"]),
        (("db", "prune"), ["--older-than"]),
        (("db", "reset"), ["--yes"]),
        (("db", "upgrade"), ["schema"]),
    ],
)
def test_every_command_has_help(home, command, expected):
    result = run_ok(*command, "--help")
    assert result.output.startswith(f"Usage: headrace {' '.join(command)}".rstrip() + " ")
    for word in expected:
        assert word in result.output


def test_unknown_command_and_option_are_usage_errors(home):
    assert invoke("frobnicate").exit_code == 2
    assert invoke("runs", "ls", "--colour").exit_code == 2
    assert invoke("runs", "ls", "--limit", "-1").exit_code == 2
    assert invoke("runs", "show").exit_code == 2  # RUN is required


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("runs", "ls", "--limit", "99999999999999999999999"), "is not in the range"),
        (("runs", "ls", "--limit", "ten"), "'ten' is not a valid integer"),
        (("runs", "ls", "--state", ""), "'--state': is empty"),
        (("runs", "ls", "--flow", " "), "'--flow': is empty"),
        (("runs", "ls", "--state", "bogus"), "'bogus' is not a state type (scheduled, "),
        (("runs", "ls", "--state", "bogus", "--json"), "nor one of headrace's state names"),
        (("runs", "show", ""), "Invalid value for RUN: is empty"),
        (("runs", "logs", " "), "Invalid value for RUN: is empty"),
        (("db", "prune", "--older-than", "30"), "'30' is not an age"),
        (("db", "prune", "--older-than", "-1d"), "'-1d' is not an age"),
        (("run", "FLOWS", "--param", "n"), "'n' is not key=value"),
    ],
)
def test_every_bad_option_value_is_a_usage_error(home, flows_file, args, says):
    run_ok("run", f"{flows_file}:my_flow")  # a recorded run: an empty RUN would match it
    result = invoke(*(f"{flows_file}:my_flow" if a == "FLOWS" else a for a in args))
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output


def test_a_state_of_headraces_or_one_recorded_is_a_filter_not_an_error(home, flows_file):
    run_ok("run", f"{flows_file}:my_flow")
    for state in ("TimedOut", "crashed", "Completed"):
        result = run_ok("runs", "ls", "--state", state)
        assert result.output.startswith(("No flow runs match", "ID ")), result.output


def test_an_age_older_than_1970_prunes_nothing(home, flows_file):
    run_ok("run", f"{flows_file}:my_flow")
    result = run_ok("db", "prune", "--older-than", "99999999999999999999d")
    assert result.output.startswith("Deleted 0 flow runs that ended before 1970-01-01")


# -- version --------------------------------------------------------------------------------------


def _pairs(output: str) -> dict[str, str]:
    """`Key:  value` lines as a dict; also checks that every value starts in one column."""
    columns, pairs = set(), {}
    for line in output.splitlines():
        match = re.match(r"^(\s*[^:]+:)(\s+)(.*)$", line)
        assert match, line
        columns.add(len(match.group(1)) + len(match.group(2)))
        pairs[match.group(1).strip().rstrip(":")] = match.group(3)
    assert len(columns) == 1, f"values are not aligned: {output}"
    return pairs


def test_dash_dash_version_prints_the_version_as_every_cli_does(home):
    import headrace

    assert run_ok("--version").output == f"headrace {headrace.__version__}\n"
    command = Path(sys.executable).parent / "headrace"
    done = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, f"headrace {headrace.__version__}\n")


def test_version_reports_versions_platform_and_sqlite_database(home):
    import headrace

    pairs = _pairs(run_ok("version").output)
    assert pairs["Version"] == headrace.__version__
    assert pairs["Schema version"] == str(store_sql.SCHEMA_VERSION)
    assert pairs["Python version"] == platform.python_version()
    assert pairs["OS/Arch"] == f"{platform.system().lower()}/{platform.machine()}"
    assert pairs["Database"] == "sqlite"
    assert pairs["Path"] == str(home / "headrace.db")
    assert pairs["SQLite version"] == sqlite3.sqlite_version
    package = Path(headrace.__file__).parent
    git = shutil.which("git") and subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=package, capture_output=True, text=True
    )
    expected = git.stdout.strip() if git and git.returncode == 0 else "unknown"
    assert pairs["Git commit"] == expected
    assert not (home / "headrace.db").exists(), "version must not create the database"


def test_version_names_the_postgresql_host_without_the_password(home, monkeypatch):
    monkeypatch.setenv("HEADRACE_DATABASE_URL", "postgresql://bob:s3cret@db.example:5433/hist")
    result = run_ok("version")
    pairs = _pairs(result.output)
    assert (pairs["Database"], pairs["Host"], pairs["Name"]) == (
        "postgresql",
        "db.example:5433",
        "hist",
    )
    assert "s3cret" not in result.output


def test_version_says_when_history_is_off(home, monkeypatch):
    monkeypatch.setenv("HEADRACE_HISTORY", "off")
    assert _pairs(run_ok("version").output)["History"] == "off (HEADRACE_HISTORY)"


def test_git_commit_is_unknown_outside_a_checkout(tmp_path):
    assert cli.version._git_commit(tmp_path) == "unknown"  # tmp_path is in no repository
    installed = tmp_path / "lib" / "site-packages" / "headrace"
    installed.mkdir(parents=True)
    assert cli.version._git_commit(installed) == "unknown"  # never asks git about an installed copy


def test_version_in_a_subprocess(home):
    done = headrace(home, "version")
    assert done.returncode == 0, done.stderr
    pairs = _pairs(done.stdout)
    assert pairs["Database"] == "sqlite"
    assert pairs["Path"] == str(home / "headrace.db")
    assert re.fullmatch(r"[0-9a-f]{7,}|unknown", pairs["Git commit"])


# -- run ------------------------------------------------------------------------------------------


def test_seed_004_flows_via_subprocess_then_ls_json_links_and_marks_them(home, flows_file):
    done = headrace(home, "run", f"{flows_file}:my_flow", "--param", "n=5")
    assert done.returncode == 0, done.stderr
    assert re.match(
        r"^Flow run 'parent-5' \([0-9a-f]{8}\) finished in state Completed\(", done.stdout
    )
    assert "Result: 7" in done.stdout
    assert "Created subflow run" in done.stderr  # the engine's console lines go to stderr

    failed = headrace(home, "run", f"{flows_file}:failing_flow")
    assert failed.returncode == 1
    assert "finished in state Failed('Flow run encountered an exception ValueError: boom')" in (
        failed.stdout
    )

    listed = headrace(home, "runs", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert len(runs) == 3
    for run in runs:
        assert list(run) == list(cli.shared.FLOW_RUN_FIELDS)
        assert ISO_UTC.match(run["start_time"]) and ISO_UTC.match(run["end_time"])
    by_flow = {r["flow_name"]: r for r in runs}
    parent, child, bad = by_flow["my-flow"], by_flow["subflow"], by_flow["failing-flow"]
    assert parent["name"] == "parent-5" and parent["parameters"] == {"n": 5}
    assert parent["parent_id"] is None and bad["parent_id"] is None
    assert child["parent_id"] == parent["id"] and child["parameters"] == {"x": 6}
    assert (parent["state_type"], child["state_type"]) == ("COMPLETED", "COMPLETED")
    assert (bad["state_type"], bad["state_name"], bad["name"]) == (
        "FAILED",
        "Failed",
        "failing-run",
    )
    assert [r["flow_name"] for r in runs] == ["failing-flow", "subflow", "my-flow"]  # newest first
    start = datetime.datetime.fromisoformat(parent["start_time"])
    assert abs(start.timestamp() - time.time()) < BACKSTOP


def test_run_graph_flow_by_variable_or_flow_name(home, flows_file):
    empty = run_ok("run", f"{flows_file}:graph", "--param", "n=0")  # an empty map completes
    assert re.match(r"^Flow run '[a-z]+-[a-z]+' \([0-9a-f]{8}\) finished in state Completed\(",
                    empty.stdout)  # fmt: skip
    assert "Result:" not in empty.stdout  # a graph flow's result is its task states
    failed = invoke("run", f"{flows_file}:scrape", "--param", "n=2")  # check(0) fails
    assert failed.exit_code == 1
    assert (
        "finished in state Failed(\"1 task run failed: 'check[0]' (ValueError: bad 0).\")"
        in failed.stdout
    )
    runs = json_runs()
    assert [(r["flow_name"], r["state_name"], r["parameters"]) for r in runs] == [
        ("scrape", "Failed", {"n": 2}), ("scrape", "Completed", {"n": 0}),
    ]  # fmt: skip
    assert failed.stdout.startswith(f"Flow run '{runs[0]['name']}' ({runs[0]['id'][:8]})")


def test_run_parses_params_as_json_else_string(home, flows_file):
    result = run_ok(
        "run", f"{flows_file}:types",
        "--param", "i=3", "-p", "f=2.5", "-p", "b=true", "-p", "l=[1, 2]", "-p", 'd={"a": 1}',
        "-p", "s=alice", "-p", 'q="7"', "-p", "z=null", "-p", "e=", "-p", "eq=a=b",
    )  # fmt: skip
    shown = re.search(r"^Result: (.*)$", result.stdout, re.M).group(1)
    assert eval(shown) == {  # noqa: S307 - the repr of a dict of str printed by the command
        "b": "bool", "d": "dict", "e": "str", "eq": "str", "f": "float", "i": "int",
        "l": "list", "q": "str", "s": "str", "z": "NoneType",
    }  # fmt: skip
    (run,) = json_runs()
    assert run["parameters"]["kwargs"] == {  # a **kwargs flow records them under its name
        "b": True, "d": {"a": 1}, "e": "", "eq": "a=b", "f": 2.5, "i": 3, "l": [1, 2],
        "q": "7", "s": "alice", "z": None,
    }  # fmt: skip


def test_run_a_file_with_one_flow_needs_no_flow_name(home, tmp_path):
    single = tmp_path / "single.py"
    single.write_text("from headrace import flow\n\n@flow\ndef only():\n    return 'hi'\n")
    result = run_ok("run", str(single))
    assert "finished in state Completed(" in result.stdout and "Result: 'hi'" in result.stdout


def test_run_an_async_flow(home, tmp_path):
    source = tmp_path / "async_flows.py"
    source.write_text(
        "import asyncio\nfrom headrace import flow, task\n\n@task\nasync def double(x):\n"
        "    await asyncio.sleep(0)\n    return 2 * x\n\n@flow\nasync def doubled(x: int):\n"
        "    return await double(x)\n"
    )
    result = run_ok("run", f"{source}:doubled", "--param", "x=21")
    assert "finished in state Completed(" in result.stdout and "Result: 42" in result.stdout


def test_run_with_history_off_still_prints_the_state(home, flows_file, monkeypatch):
    monkeypatch.setenv("HEADRACE_HISTORY", "off")
    result = invoke("run", f"{flows_file}:graph", "--param", "n=1")
    assert result.exit_code == 1
    assert result.stdout.startswith("The flow run finished in state Failed(")
    assert json_runs() == []  # nothing was recorded, and reading still works


def test_run_errors(home, flows_file, tmp_path):
    missing = invoke("run", str(tmp_path / "nope.py") + ":f")
    assert missing.exit_code == 2 and "No such file" in missing.output

    no_flow = invoke("run", f"{flows_file}:nope")
    assert no_flow.exit_code == 2
    assert "has no flow named 'nope'" in no_flow.output
    for listed in ("my_flow (@flow function 'my-flow')", "graph (graph flow 'scrape')",
                   "failing_flow", "subflow", "types"):  # fmt: skip
        assert listed in no_flow.output
    assert "add_one" not in no_flow.output.split("Its flows:")[1]  # a task is not a flow

    not_flow = invoke("run", f"{flows_file}:not_a_flow")
    assert not_flow.exit_code == 2
    assert "'not_a_flow' in" in not_flow.output and "is not a flow (it is of type int)" in (
        not_flow.output
    )

    several = invoke("run", str(flows_file))
    assert several.exit_code == 2 and "has 5 flows; name one as" in several.output

    for params in (["n"], ["=3"], ["n=1", "n=2"]):
        result = invoke("run", f"{flows_file}:my_flow", *[x for p in params for x in ("-p", p)])
        assert result.exit_code == 2, params
        assert "Invalid value for --param" in result.output
    assert "'n' is given twice" in result.output

    unknown = invoke("run", f"{flows_file}:graph", "--param", "m=1")
    assert unknown.exit_code == 2 and "unknown parameter(s) 'm'" in unknown.output
    typed = invoke("run", f"{flows_file}:my_flow", "--param", "n=abc")
    assert typed.exit_code == 2 and "n='abc'" in typed.output
    assert json_runs() == []  # none of these started a run

    broken = tmp_path / "broken.py"
    broken.write_text("import headrace\nraise RuntimeError('cannot import me')\n")
    failed_import = invoke("run", f"{broken}:f")
    assert failed_import.exit_code == 1
    assert "Importing" in failed_import.output and "RuntimeError: cannot import me" in (
        failed_import.output
    )


# -- runs ls ---------------------------------------------------------------------------------------


def test_runs_ls_table_and_filters(home, flows_file):
    assert run_ok("runs", "ls").output.startswith("No flow runs are recorded in ")
    assert json_runs() == []
    run_ok("run", f"{flows_file}:my_flow", "--param", "n=2")
    assert invoke("run", f"{flows_file}:failing_flow").exit_code == 1
    assert invoke("run", f"{flows_file}:graph", "--param", "n=4").exit_code == 1

    lines = run_ok("runs", "ls").output.splitlines()
    assert lines[0].split() == ["ID", "NAME", "FLOW", "STATE", "START", "DURATION"]
    rows = [line.split() for line in lines[1:]]
    assert [r[2:4] for r in rows] == [
        ["scrape", "Failed"], ["failing-flow", "Failed"], ["subflow", "Completed"],
        ["my-flow", "Completed"],
    ]  # fmt: skip
    ids = {r["name"]: r["id"] for r in json_runs()}
    for row in rows:
        assert row[0] == ids[row[1]][:8]
        datetime.datetime.strptime(f"{row[4]} {row[5]}", "%Y-%m-%d %H:%M:%S")
        assert re.fullmatch(r"\d+\.\d\ds", row[6])
    header = lines[0]
    assert all(line[header.index("STATE") - 2 : header.index("STATE")] == "  " for line in lines)

    assert [r["name"] for r in json_runs("--flow", "my-flow")] == ["parent-2"]
    assert {r["flow_name"] for r in json_runs("--state", "failed")} == {"scrape", "failing-flow"}
    assert {r["flow_name"] for r in json_runs("--state", "COMPLETED")} == {"subflow", "my-flow"}
    assert json_runs("--flow", "my-flow", "--state", "failed") == []
    assert len(json_runs("--limit", "2")) == 2
    assert len(json_runs("--limit", "0")) == 4
    assert run_ok("runs", "ls", "--flow", "nope").output.startswith("No flow runs match")


def test_runs_ls_limit_defaults_to_20(home):
    store = get_store()
    now = time.time()
    for i in range(25):
        record(store, f"{i:032x}", f"run-{i}", start=now - 100 + i, end=now - 99 + i)
    store.flush()
    runs = json_runs()
    assert len(runs) == 20
    assert runs[0]["name"] == "run-24" and runs[-1]["name"] == "run-5"
    assert len(run_ok("runs", "ls").output.splitlines()) == 21


# -- runs show -------------------------------------------------------------------------------------


def test_runs_show_function_flow_with_subflow_and_map(home, flows_file):
    run_ok("run", f"{flows_file}:my_flow", "--param", "n=5")
    out = run_ok("runs", "show", "parent-5").output
    head = _pairs(out.split("\n\n")[0])
    assert head["Flow run"].startswith("parent-5 (")
    assert head["Flow"] == "my-flow (function)"
    assert head["State"] == "Completed: All states completed."
    assert head["Parameters"] == '{"n": 5}'
    assert head["Parent"] == "-"
    sub = next(r for r in json_runs() if r["flow_name"] == "subflow")
    assert re.search(rf"^{sub['id'][:8]}\s+{sub['name']}\s+subflow\s+Completed\s", out, re.M)
    assert re.search(r"^add_one-0\s+Completed\s+\S+\s*$", out, re.M)
    assert re.search(r"^add_one\s+Mapped\s+\S+\s+3 children: 3 Completed$", out, re.M)
    assert "add_one[0]" not in out  # children are summarised, not listed

    child = run_ok("runs", "show", sub["name"]).output
    assert _pairs(child.split("\n\n")[0])["Parent"] == f"parent-5 ({head['Flow run'][10:18]})"


def test_runs_show_graph_map_summarised_by_state(home, flows_file):
    assert invoke("run", f"{flows_file}:graph", "--param", "n=5").exit_code == 1
    (run,) = json_runs()
    out = run_ok("runs", "show", run["id"]).output
    assert _pairs(out.split("\n\n")[0])["State"] == (
        "Failed: 2 task runs failed: 'check[0]' (ValueError: bad 0), "
        "'check[3]' (ValueError: bad 3)."
    )
    assert re.search(r"^make\s+Completed\s", out, re.M)
    assert re.search(
        r"^check\s+Mapped\s+\S+\s+5 children: 3 Completed, 2 Failed \(failed: check\[0\], "
        r"check\[3\]\)$",
        out,
        re.M,
    )
    # make comes before the map that consumes it
    assert out.index("\nmake ") < out.index("\ncheck ")


def test_runs_show_json(home, flows_file):
    assert invoke("run", f"{flows_file}:graph", "--param", "n=3").exit_code == 1
    (listed,) = json_runs()
    shown = json.loads(run_ok("runs", "show", listed["name"], "--json").output)
    assert {k: shown[k] for k in cli.shared.FLOW_RUN_FIELDS} == listed
    assert shown["style"] == "graph" and shown["pid"] and shown["host"]
    tasks = shown["task_runs"]
    whole = next(t for t in tasks if t["name"] == "check")
    children = [t for t in tasks if t["parent_task_run_id"] == whole["id"]]
    assert sorted(t["map_index"] for t in children) == [0, 1, 2]
    assert sorted((t["name"], t["state_name"]) for t in children) == [
        ("check[0]", "Failed"), ("check[1]", "Completed"), ("check[2]", "Completed"),
    ]  # fmt: skip
    assert whole["state_name"] == "Mapped"
    for t in children:
        assert ISO_UTC.match(t["start_time"]) and ISO_UTC.match(t["end_time"])


def test_both_flow_styles_give_run_ids_of_one_format_that_runs_show_accepts(home, flows_file):
    assert invoke("run", f"{flows_file}:graph", "--param", "n=3").exit_code == 1
    run_ok("run", f"{flows_file}:my_flow")
    shown = [json.loads(run_ok("runs", "show", r["id"], "--json").output) for r in json_runs()]
    runs = {r["style"]: r["id"] for r in shown if r["parent_id"] is None}
    assert set(runs) == {"graph", "function"}
    dashed_uuid4 = re.compile(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    )
    for style, run_id in runs.items():
        assert dashed_uuid4.fullmatch(run_id), (style, run_id)
        for ref in (run_id, run_id[:8], run_id[:13]):
            assert f"({run_id})" in run_ok("runs", "show", ref).output, (style, ref)


def test_run_refs_by_id_prefix_name_ambiguous_and_unknown(home):
    store = get_store()
    now = time.time()
    record(store, "abcd0001" + "0" * 24, "first-run", start=now - 2, end=now - 1)
    record(store, "abcd0002" + "0" * 24, "second-run", start=now - 1, end=now)
    store.flush()
    for ref in ("abcd0001" + "0" * 24, "abcd0001", "abcd00010", "first-run"):
        out = run_ok("runs", "show", ref).output
        assert out.startswith("Flow run:") and "first-run (abcd0001" in out, ref
    assert "second-run (abcd0002" in run_ok("runs", "show", "abcd0002").output

    for command in (("runs", "show"), ("runs", "logs")):
        ambiguous = invoke(*command, "abcd")
        assert ambiguous.exit_code == 1
        assert "'abcd' matches 2 flow runs" in ambiguous.output
        assert "first-run (abcd0001)" in ambiguous.output and "Use a longer id" in ambiguous.output
        unknown = invoke(*command, "nothing-like-it")
        assert unknown.exit_code == 1
        assert "No flow run has the id, id prefix or name 'nothing-like-it'" in unknown.output


# -- runs logs -------------------------------------------------------------------------------------


def test_runs_logs_prints_lines_like_the_console(home, flows_file):
    assert invoke("run", f"{flows_file}:failing_flow").exit_code == 1
    lines = run_ok("runs", "logs", "failing-run").output.splitlines()
    starts = [line for line in lines if LOG_LINE.match(line)]
    assert starts[0].endswith(
        "| INFO    | headrace.engine - Created flow run 'failing-run' for flow 'failing-flow'"
    )
    assert any("| ERROR   | Task run 'fail-0' - Encountered exception" in s for s in starts)
    assert "ValueError: boom" in lines  # the traceback comes with its line
    assert starts[-1].endswith(
        "| ERROR   | Flow run 'failing-run' - Finished in state "
        "Failed('Flow run encountered an exception ValueError: boom')"
    )


def test_runs_logs_follow_on_a_finished_run_does_not_wait(home, flows_file, monkeypatch):
    run_ok("run", f"{flows_file}:my_flow", "--param", "n=1")

    def no_sleep(seconds):
        raise AssertionError("a finished run needs no polling")

    monkeypatch.setattr(cli.runs, "_sleep", no_sleep)
    out = run_ok("runs", "logs", "--follow", "parent-1").output
    assert "calling the subflow with 2" in out
    assert out.rstrip().endswith("Finished in state Completed('All states completed.')")


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")


@needs_fifo
def test_runs_logs_follow_prints_new_lines_until_the_run_ends(home, tmp_path):
    held = tmp_path / "held.py"
    held.write_text(HELD)
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    flow_proc, flow_out = spawn(home, "run", f"{held}:held", "--param", f"fifo={fifo}")
    follow = None
    try:
        read_until(flow_out, "READY")
        follow, follow_out = spawn(home, "runs", "logs", "--follow", "held-run")
        before = read_until(follow_out, "waiting for release")
        assert all("released" not in line for line in before)
        assert follow.poll() is None  # the run is still Running: it keeps following
        with open(fifo, "w") as release:
            release.write("go")
        assert follow.wait(timeout=BACKSTOP) == 0  # ended by itself when the run ended
        after = drain(follow_out)
    finally:
        for proc in (flow_proc, follow):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert flow_proc.wait(timeout=BACKSTOP) == 0
    assert any("Task run 'wait_for_release-0' - released" in line for line in after)
    assert after[-1].endswith(
        "Flow run 'held-run' - Finished in state Completed('All states completed.')"
    )
    assert all(LOG_LINE.match(line) for line in before + after)


@needs_fifo
def test_runs_logs_follow_stops_when_the_runs_process_dies(home, tmp_path, monkeypatch):
    held = tmp_path / "held.py"
    held.write_text(HELD)
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    flow_proc, flow_out = spawn(home, "run", f"{held}:held", "--param", f"fifo={fifo}")
    try:
        read_until(flow_out, "READY")
        assert open_reader().flow_run("held-run").state_name == "Running"  # its process lives
    finally:
        flow_proc.send_signal(signal.SIGKILL)
        flow_proc.wait(timeout=BACKSTOP)
    monkeypatch.setattr(cli.runs, "_sleep", lambda seconds: None)
    result = invoke("runs", "logs", "--follow", "held-run")
    assert result.exit_code == 1
    assert "waiting for release" in result.output
    assert f"(pid {flow_proc.pid}) has stopped without ending the run" in result.output
    # The history shows it Crashed (a Reader writes nothing: the next recorder marks it).
    assert [(r["name"], r["state_name"]) for r in json_runs()] == [("held-run", "Crashed")]


def test_runs_logs_follow_reads_lines_written_after_the_end(home, monkeypatch):
    """The last lines of a run can land in the batch after its end: one more read gets them."""
    store = get_store()
    run_id = "f0110e" + "0" * 26
    record(store, run_id, "racing", start=time.time(), end=None)
    store.log(LogRecord(run_id, None, logging.INFO, time.time(), "Flow run 'racing'", "first"))
    store.flush()
    polls = []

    def poll(seconds):
        polls.append(seconds)
        if len(polls) == 1:  # the run ends, and its last line is written after the end
            store.flow_run_ended(run_id, "COMPLETED", "Completed", None, time.time())
            store.flush()
            store.log(LogRecord(run_id, None, logging.INFO, time.time(), "Flow run 'racing'",
                                "last"))  # fmt: skip
            store.flush()

    monkeypatch.setattr(cli.runs, "_sleep", poll)
    out = run_ok("runs", "logs", "-f", "racing").output.splitlines()
    assert [line.rsplit(" - ", 1)[1] for line in out] == ["first", "last"]
    assert polls == [cli.runs.POLL_SECONDS, cli.runs.POLL_SECONDS]


# -- db prune / reset / upgrade -------------------------------------------------------------------


def test_db_prune_removes_only_old_finished_runs(home):
    store = get_store()
    now = time.time()
    day = 86400
    old, recent, running = "01d" + "0" * 29, "0ece" + "0" * 28, "0a11" + "0" * 28
    record(store, old, "old-run", start=now - 40 * day, end=now - 40 * day + 5)
    record(store, recent, "recent-run", start=now - day, end=now - day + 5)
    record(store, running, "old-but-running", start=now - 40 * day, end=None)
    for run_id in (old, recent):
        store.log(LogRecord(run_id, None, logging.INFO, now, "Flow run", "a line"))
        store.task_run(TaskRun(f"{run_id}-1", run_id, "t", "t-0", state_type="COMPLETED",
                               state_name="Completed", start_time=now, end_time=now))  # fmt: skip
    store.flush()

    result = run_ok("db", "prune", "--older-than", "30d")
    assert result.output.startswith("Deleted 1 flow run that ended before ")
    assert result.output.rstrip().endswith("(30d).")
    assert {r["name"] for r in json_runs()} == {"recent-run", "old-but-running"}
    reader = open_reader()
    assert reader.logs(old) == [] and reader.task_runs(old) == []
    assert len(reader.logs(recent)) == 1 and len(reader.task_runs(recent)) == 1

    assert run_ok("db", "prune", "--older-than", "2d").output.startswith("Deleted 0 flow runs")
    assert run_ok("db", "prune", "--older-than", "23h").output.startswith("Deleted 1 flow run ")
    assert {r["name"] for r in json_runs()} == {"old-but-running"}


def test_db_prune_and_reset_delete_the_persisted_results_of_the_runs_they_delete(home):
    @task
    def big(i):
        return list(range(i, i + 1000))  # persisted as a file

    @task
    def count(xs):
        return len(xs)

    runs = []
    for _ in range(2):
        with Flow("results") as flow:
            count(big(1))
        runs.append(flow.run().flow_run_id)
    get_store().flush()
    results = home / "results"
    assert sorted(p.name for p in results.iterdir()) == sorted(runs)
    now = time.time()
    record(get_store(), "0ld" + "0" * 29, "old", start=now - 40 * 86400, end=now - 40 * 86400)
    (results / ("0ld" + "0" * 29)).mkdir()  # the old run's results
    get_store().flush()

    pruned = run_ok("db", "prune", "--older-than", "30d").output
    assert "Deleted the persisted results of 1 flow run." in pruned
    assert sorted(p.name for p in results.iterdir()) == sorted(runs)  # the recent ones stay
    reset = run_ok("db", "reset", "--yes").output
    assert "Deleted the persisted results of 2 flow runs." in reset
    assert list(results.iterdir()) == []


@pytest.mark.parametrize(
    "age, seconds", [("45s", 45), ("90m", 5400), ("12h", 43200), ("30d", 2592000), ("1.5h", 5400)]
)
def test_db_prune_ages(age, seconds):
    assert cli.shared.parse_age(age) == seconds


@pytest.mark.parametrize("age", ["30", "d", "30w", "-1d", "thirty days", ""])
def test_db_prune_rejects_bad_ages(home, age):
    result = invoke("db", "prune", "--older-than", age)
    assert result.exit_code == 2
    assert "is not an age" in result.output


def test_db_prune_needs_older_than(home):
    result = invoke("db", "prune")
    assert result.exit_code == 2 and "--older-than" in result.output


def _three_runs():
    store = get_store()
    now = time.time()
    for i in range(3):
        record(store, f"{i + 1:032x}", f"run-{i}", start=now - 10 + i, end=now - 9 + i)
    store.flush()


def test_db_reset_without_a_terminal_needs_yes(home):
    _three_runs()
    refused = invoke("db", "reset")  # CliRunner's stdin is not a terminal
    assert refused.exit_code == 2
    assert "Refusing to delete 3 flow runs" in refused.output and "--yes" in refused.output
    assert len(json_runs()) == 3
    done = run_ok("db", "reset", "--yes")
    assert done.output.startswith("Deleted 3 flow runs from ")
    assert json_runs() == []


def test_db_reset_asks_on_a_terminal(home, monkeypatch):
    _three_runs()
    monkeypatch.setattr(cli.db, "_interactive", lambda: True)
    declined = invoke("db", "reset", input="n\n")
    assert declined.exit_code == 1
    assert "Delete 3 flow runs and their task runs and logs in" in declined.output
    assert "Nothing was deleted." in declined.output
    assert len(json_runs()) == 3
    accepted = invoke("db", "reset", input="y\n")
    assert accepted.exit_code == 0 and "Deleted 3 flow runs" in accepted.output
    assert json_runs() == []


def test_db_reset_in_a_subprocess_refuses_then_resets(home, flows_file):
    assert headrace(home, "run", f"{flows_file}:failing_flow").returncode == 1
    refused = subprocess.run(
        [sys.executable, "-m", "headrace.cli", "db", "reset"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env_for(home),
        timeout=BACKSTOP,
    )  # fmt: skip
    assert refused.returncode == 2 and "Pass --yes" in refused.stderr
    done = headrace(home, "db", "reset", "--yes")
    assert done.returncode == 0 and done.stdout.startswith("Deleted 1 flow run from ")
    assert json.loads(headrace(home, "runs", "ls", "--json").stdout) == []


def test_db_upgrade_creates_then_reports_current(home):
    out = run_ok("db", "upgrade").output
    pairs = _pairs("\n".join(out.splitlines()[:3]))
    assert pairs["Database"] == str(home / "headrace.db")
    assert pairs["Schema before"] == "none (new database)"
    assert pairs["Schema after"] == str(store_sql.SCHEMA_VERSION)
    assert out.rstrip().endswith("Upgraded.")
    again = run_ok("db", "upgrade").output
    pairs = _pairs("\n".join(again.splitlines()[:3]))
    assert pairs["Schema before"] == pairs["Schema after"] == str(store_sql.SCHEMA_VERSION)
    assert again.rstrip().endswith("Already up to date.")


def test_db_upgrade_runs_the_migrations_after_the_current_version(home, monkeypatch):
    open_recorder()  # a database at this headrace's schema version
    version = store_sql.SCHEMA_VERSION
    monkeypatch.setattr(store_sql, "SCHEMA_VERSION", version + 1)
    monkeypatch.setitem(
        store_sql.MIGRATIONS, version + 1, lambda d: ["CREATE TABLE extra (x TEXT)"]
    )
    out = run_ok("db", "upgrade").output
    pairs = _pairs("\n".join(out.splitlines()[:3]))
    assert (pairs["Schema before"], pairs["Schema after"]) == (str(version), str(version + 1))
    conn = sqlite3.connect(home / "headrace.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert "extra" in tables


def test_db_upgrade_refuses_newer_and_foreign_databases(home, tmp_path, monkeypatch):
    open_recorder()
    conn = sqlite3.connect(home / "headrace.db")
    conn.execute("UPDATE headrace_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    newer = invoke("db", "upgrade")
    assert newer.exit_code == 1
    assert "schema version 99, made by a newer headrace" in newer.output
    assert "Nothing was changed" in newer.output

    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    monkeypatch.setenv("HEADRACE_DATABASE_URL", f"sqlite:///{foreign}")
    refused = invoke("db", "upgrade")
    assert refused.exit_code == 1 and "is not a headrace database" in refused.output
    listed = invoke("runs", "ls")
    assert listed.exit_code == 1 and "is not a headrace database" in listed.output
    conn = sqlite3.connect(foreign)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["customers"]
    conn.close()


def test_an_unusable_home_is_an_error_not_a_traceback(home, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("HEADRACE_HOME", str(blocker / "home"))
    result = invoke("runs", "ls")
    assert result.exit_code == 1
    assert "Cannot open the run history at" in result.output and "HEADRACE_HOME" in result.output


# -- PostgreSQL -----------------------------------------------------------------------------------


def test_postgresql_history_through_the_command(home, cluster, flows_file, monkeypatch):  # noqa: F811
    name = cluster.create_database()
    monkeypatch.setenv("HEADRACE_DATABASE_URL", cluster.url(name))
    pairs = _pairs(run_ok("version").output)
    assert (pairs["Database"], pairs["Host"], pairs["Name"]) == (
        "postgresql", f"127.0.0.1:{cluster.port}", name,
    )  # fmt: skip

    out = run_ok("db", "upgrade").output
    pairs = _pairs("\n".join(out.splitlines()[:3]))
    assert pairs["Database"] == f"postgresql://headrace@127.0.0.1:{cluster.port}/{name}"
    assert pairs["Schema before"] == "none (new database)"
    assert pairs["Schema after"] == str(store_sql.SCHEMA_VERSION)

    run_ok("run", f"{flows_file}:my_flow", "--param", "n=3")
    runs = {r["flow_name"]: r for r in json_runs()}
    assert runs["subflow"]["parent_id"] == runs["my-flow"]["id"]
    assert re.search(
        r"^add_one\s+Mapped\s+\S+\s+3 children: 3 Completed$",
        run_ok("runs", "show", "parent-3").output,
        re.M,
    )
    assert "calling the subflow with 4" in run_ok("runs", "logs", "parent-3").output

    again = run_ok("db", "upgrade").output
    assert again.rstrip().endswith("Already up to date.")
    assert run_ok("db", "reset", "--yes").output.startswith(
        "Deleted 2 flow runs from postgresql://"
    )
    assert json_runs() == []


# -- docs/cli.md ------------------------------------------------------------------------------------


def test_docs_page_names_only_real_commands_and_options():
    """Every `headrace ...` line of docs/cli.md is a command that exists, with its options."""
    import click

    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    lines = re.findall(r"^(?:\$ )?headrace ([a-z].*)$", text, re.M)
    assert len(lines) >= 15
    seen = set()
    for line in lines:
        command, path = cli.main, []
        for word in line.split():
            if not isinstance(command, click.Group) or word not in command.commands:
                break
            command = command.commands[word]
            path.append(word)
        assert path and not isinstance(command, click.Group), line
        seen.add(" ".join(path))
        options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for option in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", line):
            assert option in options, f"{line}: {option}"
    assert seen == {
        "version", "run", "runs ls", "runs show", "runs logs", "runs resume", "cache ls",
        "cache clear", "server", "db prune", "db reset", "db upgrade", "serve",
        "schedules ls", "schedules runs", "limits set", "limits ls", "limits rm",
    }  # fmt: skip


# -- the order of a run's last rows (what `--follow` relies on) ---------------------------------


def _puts(monkeypatch) -> list[str]:
    """The kinds of the records given to this process's recorder, in order."""
    store = get_store()
    kinds: list[str] = []

    def noting(kind, call):
        def recording(*args):
            kinds.append(kind)
            call(*args)

        return recording

    monkeypatch.setattr(store, "log", noting("log", store.log))
    monkeypatch.setattr(store, "flow_run_ended", noting("flow_run_end", store.flow_run_ended))
    return kinds


def test_a_function_runs_last_log_line_is_put_before_its_end(home, monkeypatch):
    from headrace import flow, task

    @task
    def one():
        return 1

    @flow
    def tiny():
        return one()

    kinds = _puts(monkeypatch)
    tiny()
    assert "flow_run_end" in kinds
    assert len(kinds) - 1 - kinds[::-1].index("log") < kinds.index("flow_run_end")


def test_a_graph_runs_last_log_line_is_put_before_its_end(home, monkeypatch):
    from headrace import Flow, task

    @task
    def one():
        return 1

    with Flow("tiny") as tiny:
        one()
    kinds = _puts(monkeypatch)
    tiny.run()
    assert "flow_run_end" in kinds
    assert len(kinds) - 1 - kinds[::-1].index("log") < kinds.index("flow_run_end")


# -- what was recorded is shown as recorded, and safely -------------------------------------------


def test_runs_show_groups_map_children_by_their_recorded_fields(home):
    """Two maps of one task whose children name no parent are two lines (their task keys
    differ); children naming a parent join its line; ids are never parsed."""
    store = get_store()
    run_id = "5a0e" + "0" * 28
    record(store, run_id, "grouped", start=100.0, end=200.0)
    for call, states in (("1", ["Completed", "Completed"]), ("2", ["Completed", "Failed"])):
        for i, state in enumerate(states):
            store.task_run(TaskRun(f"x{call}{i}", run_id, "add", f"add[{i}]",
                                   task_key=f"add-{call}", map_index=i, start_time=110.0 + int(call),
                                   end_time=111.0 + int(call), state_type=state.upper(),
                                   state_name=state))  # fmt: skip
    store.task_run(TaskRun("whole", run_id, "mul", "mul", task_key="mul-1", state_type="COMPLETED",
                           state_name="Mapped"))  # fmt: skip
    store.task_run(TaskRun("child-of-whole", run_id, "mul", "mul[0]", task_key="mul-1", map_index=0,
                           parent_task_run_id="whole", start_time=120.0, end_time=121.0,
                           state_type="COMPLETED", state_name="Completed"))  # fmt: skip
    store.flush()
    out = run_ok("runs", "show", "grouped").output
    rows = [line.split(None, 3) for line in out.split("Task runs\n")[1].splitlines()[1:]]
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("add", "Mapped", "2 children: 2 Completed"),
        ("add", "Mapped", "2 children: 1 Completed, 1 Failed (failed: add[1])"),
        ("mul", "Mapped", "1 child: 1 Completed"),
    ]


def test_a_limit_too_large_for_the_database_is_a_usage_error(home):
    result = invoke("runs", "ls", "--limit", "99999999999999999999999")
    assert result.exit_code == 2 and "Invalid value for '--limit'" in result.output
    assert "Traceback" not in result.output


def test_db_reset_refuses_while_a_run_is_running_unless_forced(home):
    store = get_store()
    now = time.time()
    record(store, "0a11" + "0" * 28, "still-going", start=now, end=None)
    record(store, "0d0e" + "0" * 28, "done", start=now, end=now + 1)
    store.flush()
    refused = invoke("db", "reset", "--yes")
    assert refused.exit_code == 1
    assert "1 flow run still Running: still-going (0a110000" in refused.output
    assert "--force" in refused.output and len(json_runs()) == 2
    assert run_ok("db", "reset", "--yes", "--force").output.startswith("Deleted 2 flow runs")
    assert json_runs() == []


def test_db_prune_removes_rows_of_no_run(home):
    store = get_store()
    now = time.time()
    store.log(LogRecord("ghost", None, logging.INFO, now, "Flow run", "an orphan line"))
    store.task_run(TaskRun("ghost-1", "ghost", "t", "t-0", state_type="COMPLETED",
                           state_name="Completed", start_time=now, end_time=now))  # fmt: skip
    store.flush()
    reader = open_reader()
    assert len(reader.logs("ghost")) == 1 and len(reader.task_runs("ghost")) == 1
    run_ok("db", "prune", "--older-than", "30d")
    assert reader.logs("ghost") == [] and reader.task_runs("ghost") == []
