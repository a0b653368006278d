"""Test-wide settings: run history and persisted results go to a temporary HEADRACE_HOME,
never ~/.headrace, removed when the session ends."""

import os
import shutil
import tempfile

_home = tempfile.mkdtemp(prefix="headrace-tests-")
os.environ["HEADRACE_HOME"] = _home
os.environ.pop("HEADRACE_DATABASE_URL", None)


def pytest_unconfigure(config):
    shutil.rmtree(_home, ignore_errors=True)


from postgres_cluster import cluster, pg_url, url  # noqa: E402, F401  (fixtures for every module)
