"""Progress of long maps: plain lines when not a terminal, a Rich bar on one, off by setting.

That a name is shown as text, markup and controls and all, is tested in faults/test_text.py.
"""

import io
import logging

import pytest

from headrace import Flow, flow, task
from headrace.engine.progress import Progress
from headrace.executors import ThreadExecutor
from terminal import Terminal


@task
def work(i):
    if i % 50 == 7:
        raise ValueError(f"item {i}")
    return i


def scrape_flow(n):
    with Flow("progress") as flow:
        work.map(list(range(n)))
    return flow


def test_plain_lines_report_done_total_and_failures(capsys, monkeypatch):
    monkeypatch.setenv("HEADRACE_PROGRESS_INTERVAL", "60")  # only the closing line is due
    scrape_flow(300).run(executor=ThreadExecutor(4))
    lines = [line for line in capsys.readouterr().err.splitlines() if "Progress:" in line]
    assert len(lines) == 1
    assert "Progress: work: 300/300 done, 6 failed" in lines[0]


def test_a_function_flows_map_gets_the_same_progress_lines(capsys, monkeypatch):
    monkeypatch.setenv("HEADRACE_PROGRESS_INTERVAL", "60")

    @flow(executor=ThreadExecutor(4))
    def scrape(n):
        return work.map(range(n)).wait()

    assert scrape(300, return_state=True).is_failed()  # six items fail
    lines = [line for line in capsys.readouterr().err.splitlines() if "Progress:" in line]
    assert len(lines) == 1
    assert "Progress: work: 300/300 done, 6 failed" in lines[0]


def test_small_maps_and_the_off_setting_show_nothing(capsys, monkeypatch):
    scrape_flow(5).run()
    monkeypatch.setenv("HEADRACE_PROGRESS", "off")
    scrape_flow(300).run()
    assert "Progress:" not in capsys.readouterr().err


def test_a_terminal_gets_a_live_bar():
    screen = Terminal()
    progress = Progress(logging.getLogger("test"), stream=screen)
    progress.expanded("key", "fetch", 40)
    for i in range(40):
        progress.child_done("key", failed=i < 3)
    progress.close()
    shown = screen.getvalue()
    assert "fetch" in shown and "40/40" in shown and "3 failed" in shown


@pytest.mark.parametrize("total, shown", [(19, False), (20, True)])
def test_the_minimum_map_size(total, shown):
    progress = Progress(logging.getLogger("test"), stream=io.StringIO())
    progress.expanded("key", "m", total)
    assert ("key" in progress.maps) is shown
    progress.close()
