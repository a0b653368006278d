"""Test-wide settings: run history and persisted results go to a temporary HEADRACE_HOME,
never ~/.headrace, removed when the session ends. Ctrl-C works in the processes the tests
start, as at a terminal, even when the suite itself was started by a shell that ignores
SIGINT (a background `cmd &` in a script does, and children inherit that)."""

import os
import shutil
import signal
import tempfile

_home = tempfile.mkdtemp(prefix="headrace-tests-")
os.environ["HEADRACE_HOME"] = _home
os.environ.pop("HEADRACE_DATABASE_URL", None)
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a handler is reset to default on exec
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_unconfigure(config):
    shutil.rmtree(_home, ignore_errors=True)


from postgres_cluster import cluster, pg_url, url  # noqa: E402, F401  (fixtures for every module)
