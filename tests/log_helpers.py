"""Running a flow in a fresh Python at a log level, for test_function_logs.py and
faults/test_logs.py.

The level is read from HEADRACE_LOGGING_LEVEL once per process, so a test of
a level runs a child Python: `run_child(code, level)`. `LEVEL_SCRIPT` is such
code, a function flow that logs a warning and runs `{n}` tasks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


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
