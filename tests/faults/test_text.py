"""Recorded text is shown as text: in the terminal, in the progress display, and as a run
reference.

Names, messages and log lines are whatever a flow recorded. The CLI shows control
characters as visible escapes, the progress display shows Rich markup literally, and
a run reference (an id, an id prefix or a name) is matched as text, never as a SQL
pattern, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import logging
import time

import pytest

from cli_helpers import home_fixture, invoke, json_runs, record, run_ok  # noqa: F401  (a fixture)
from headrace import Flow, flow, task
from headrace.engine.progress import Progress
from headrace.store import get_store, open_reader
from headrace.store.records import FlowRun, LogRecord, TaskRun
from headrace.store.sql import StoreError
from terminal import Terminal


@task
def inc(x):
    return x + 1


def record_some_runs() -> None:
    """A graph run and a function run, in the history the settings point at."""
    with Flow("counted") as graph:
        inc(1)
    assert graph.run().is_successful()

    @flow(name="counted-too")
    def counted():
        return inc(1)

    assert counted() == 2
    get_store().flush()


# -- in the terminal -----------------------------------------------------------------------------


def test_recorded_strings_cannot_drive_the_terminal(home):
    store = get_store()
    run_id = "e5c0" + "0" * 28
    evil = "\x1b]0;pwned\x07\x1b[2J\u202eevil\r"
    store.flow_run_started(FlowRun(run_id, f"run{evil}", f"flow{evil}", "graph",
                                   start_time=time.time()))  # fmt: skip
    store.task_run(TaskRun(f"{run_id}-1", run_id, f"t{evil}", f"t{evil}", state_type="FAILED",
                           state_name="Failed", state_message=f"bad{evil}",
                           start_time=time.time(), end_time=time.time()))  # fmt: skip
    store.log(LogRecord(run_id, None, logging.ERROR, time.time(), f"Flow run {evil}",
                        f"first line{evil}\nsecond\tline"))  # fmt: skip
    store.flow_run_ended(run_id, "FAILED", "Failed", f"message{evil}", time.time())
    record(store, "e5c1" + "0" * 28, "other", start=time.time(), end=time.time())
    store.flush()
    outputs = [
        run_ok("runs", "ls").output,
        run_ok("runs", "show", run_id).output,
        run_ok("runs", "logs", run_id).output,
        invoke("runs", "show", "e5c").output,  # an error naming both runs
    ]
    assert "matches 2 flow runs" in outputs[3]
    for out in outputs:
        assert not any(c in out for c in "\x1b\x07\r\u202e"), repr(out)
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\u202eevil\\r" in outputs[0]
    assert "first line\\x1b" in outputs[2] and "\nsecond\tline" in outputs[2]
    assert {r["name"] for r in json_runs()} == {f"run{evil}", "other"}


# -- in the progress display --------------------------------------------------------------------


def test_a_name_with_markup_or_controls_is_shown_as_text():
    screen = Terminal()
    progress = Progress(logging.getLogger("test"), stream=screen)
    name = "fetch[/][link=http://example.invalid]x\x1b]0;title\x07"
    progress.expanded("key", name, 30)
    for _ in range(30):
        progress.child_done("key", failed=False)
    progress.close()
    shown = screen.getvalue()
    assert progress._thread is None or not progress._thread.is_alive()
    assert "fetch[/][link=http://example.invalid]x\\x1b]0;title\\x07" in shown
    assert "\x1b]8;" not in shown and "\x07" not in shown  # no hyperlink, no title


# -- as a run reference -------------------------------------------------------------------------


def test_a_run_reference_is_text_not_a_pattern(url):
    record_some_runs()
    reader = open_reader(url)
    newest = reader.flow_runs(limit=1)[0]
    assert reader.flow_run(newest.id[:6]) == newest
    for pattern in ("", "%", "_", newest.id[:2] + "%", "\\"):
        with pytest.raises(StoreError, match="No flow run has the id, id prefix or name"):
            reader.flow_run(pattern)
