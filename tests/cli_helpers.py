"""Driving the `headrace` command in-process, for test_cli.py and faults/test_text.py.

`home` is a fresh HEADRACE_HOME per test: import `home_fixture` (with
`# noqa: F401`) and pytest finds the fixture by its name, `home`, so a test's
parameter `home` shadows no import. `invoke` and `run_ok` run the click group
through CliRunner; `record` writes a flow run through the store's Recorder API
with the id, name and times a test chooses; `json_runs` is `runs ls --json`,
parsed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from headrace import cli
from headrace.store.records import FlowRun


@pytest.fixture(name="home")
def home_fixture(tmp_path, monkeypatch) -> Path:
    """A fresh HEADRACE_HOME; sys.path is restored afterwards."""
    path = tmp_path / "home"
    monkeypatch.setenv("HEADRACE_HOME", str(path))
    for name in ("HEADRACE_DATABASE_URL", "HEADRACE_HISTORY", "HEADRACE_HISTORY_RETENTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HEADRACE_PROGRESS", "off")
    monkeypatch.setattr(sys, "path", list(sys.path))
    return path


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli.main, list(args), input=input, prog_name="headrace")


def run_ok(*args: str):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def record(store, run_id: str, name: str, *, start: float, end: float | None, state="COMPLETED"):
    """A flow run written through the store's API, with the id, name and times given."""
    store.flow_run_started(FlowRun(id=run_id, name=name, flow_name="recorded",
                                   style="function", parameters={"i": 1}, start_time=start))  # fmt: skip
    if end is not None:
        store.flow_run_ended(run_id, state, state.title(), None, end)


def json_runs(*args: str) -> list[dict]:
    return json.loads(run_ok("runs", "ls", "--json", *args).output)
