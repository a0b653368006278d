"""Log settings under faults: what the console hides is still recorded, and a level
that is not one is refused with what to use.

The level is read from HEADRACE_LOGGING_LEVEL once per process, so these tests
run a child Python (`run_child`, in log_helpers.py).
"""

from __future__ import annotations

import os
import subprocess
import sys

from headrace.store import open_reader
from log_helpers import LEVEL_SCRIPT, run_child


def test_the_console_level_does_not_filter_the_history(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    monkeypatch.delenv("HEADRACE_DATABASE_URL", raising=False)
    monkeypatch.delenv("HEADRACE_HISTORY", raising=False)
    script = LEVEL_SCRIPT.format(n=2) + "    print(my_flow.last_run.id)\n"
    done = run_child(script, "WARNING")
    assert "INFO" not in done.stderr
    reader = open_reader()
    lines = [(r.level, r.message) for _, r in reader.logs(done.stdout.split()[-1])]
    assert (20, "Created task run 'add_one-1' for task 'add_one'") in lines
    assert (30, "a warning") in lines


def test_a_log_level_that_is_not_one_is_a_clear_error():
    done = subprocess.run(
        [sys.executable, "-c", "from headrace.engine import logs; logs.configure()"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "HEADRACE_LOGGING_LEVEL": "LOUD"},
    )  # fmt: skip
    assert done.returncode != 0
    assert "HEADRACE_LOGGING_LEVEL='LOUD' is not a log level; use DEBUG, INFO" in done.stderr
