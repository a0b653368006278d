"""Running a flow in a fresh Python at a log level, for test_function_logs.py and
faults/test_logs.py; and `log`, a fixture holding the records headrace's loggers
emit during a test (they do not propagate to the root logger, so caplog misses them).

The level is read from HEADRACE_LOGGING_LEVEL once per process, so a test of
a level runs a child Python: `run_child(code, level)`. `LEVEL_SCRIPT` is such
code, a function flow that logs a warning and runs `{n}` tasks.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.INFO) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture(name="log")
def log_fixture():
    """The records of headrace's loggers while the test runs (import with `# noqa: F401`)."""
    lines, root = Lines(), logging.getLogger("headrace")
    root.addHandler(lines)
    yield lines
    root.removeHandler(lines)


def run_child(code: str, level: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python with HEADRACE_LOGGING_LEVEL=level."""
    env = {**os.environ, "HEADRACE_LOGGING_LEVEL": level}
    env.pop("HEADRACE_LOGGING_FORMAT", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done


LEVEL_SCRIPT = """
    from headrace import flow, get_run_logger, task

    @task
    def add_one(x):
        return x + 1

    @flow
    def my_flow():
        get_run_logger().warning("a warning")
        for i in range({n}):
            add_one(i)

    my_flow()
"""
