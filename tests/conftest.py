"""Test-wide settings: run history goes to a temporary HEADRACE_HOME, never ~/.headrace."""

import os
import tempfile

_home = tempfile.mkdtemp(prefix="headrace-tests-")
os.environ["HEADRACE_HOME"] = _home
os.environ.pop("HEADRACE_DATABASE_URL", None)

from postgres_cluster import cluster, pg_url, url  # noqa: E402, F401  (fixtures for every module)
