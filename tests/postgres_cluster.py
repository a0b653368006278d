"""A throwaway PostgreSQL 15 cluster for the tests that run against PostgreSQL.

`initdb` into a fresh directory under /tmp (trust authentication, superuser
`headrace`, C locale, no fsync), then `pg_ctl start` listening on 127.0.0.1
on a free port with its unix socket in that same directory; `pg_ctl stop`
and removing the directory end it. initdb refuses to run as root, and CI
runs pytest as root: then the cluster's directory is handed to the
`postgres` system user (which the Debian package providing the binaries
creates; `nobody` when it is missing) and initdb/pg_ctl run as that user
(subprocess's `user=`/`group=`). `cluster` is one per test module; `pg_url`
is a new database on it per test. Both skip when PostgreSQL 15 is absent.
`url` is a fresh history the settings point at, once on SQLite and once on
PostgreSQL, for the tests that must hold on both databases.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
needs_pg = pytest.mark.skipif(
    not (PG_BIN / "initdb").exists(),
    reason="PostgreSQL 15 is not installed (no /usr/lib/postgresql/15/bin/initdb); "
    "apt-get install postgresql-15 to run these tests",
)


# -- the throwaway cluster --------------------------------------------------------------------------


@dataclass
class Cluster:
    port: int
    directory: Path
    settings: str = ""
    run: dict = field(default_factory=dict)

    def stop(self) -> None:
        """Stop the server, as a crash or an administrator's restart would (fast mode)."""
        data = self.directory / "data"
        done = subprocess.run(
            [PG_BIN / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], **self.run
        )
        assert done.returncode == 0, done.stderr

    def start(self) -> None:
        data = self.directory / "data"
        done = subprocess.run(
            [PG_BIN / "pg_ctl", "-D", data, "-l", self.directory / "server.log", "-w", "-t", "30",
             "-o", self.settings, "start"],
            **self.run,
        )  # fmt: skip
        assert done.returncode == 0, self.server_log()

    def url(self, db: str, user: str = "headrace") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{db}"

    def admin(self, db: str = "postgres"):
        import psycopg

        return psycopg.connect(self.url(db), autocommit=True)

    def create_database(self) -> str:
        name = "hr_" + uuid.uuid4().hex[:12]
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def server_log(self) -> str:
        return (self.directory / "server.log").read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _owner() -> dict:
    """subprocess keywords that run the server as a non-root user when we are root."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    pytest.fail("running as root, and neither a postgres nor a nobody user exists for initdb")


@pytest.fixture(scope="module")
def cluster():
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 is not installed (no /usr/lib/postgresql/15/bin/initdb)")
    owner = _owner()
    directory = Path(tempfile.mkdtemp(prefix="headrace-pg-"))
    if owner:
        os.chown(directory, owner["user"], owner["group"])
    run = {"cwd": directory, "capture_output": True, "text": True, "timeout": 60, **owner}
    data = directory / "data"
    done = subprocess.run(
        [PG_BIN / "initdb", "-D", data, "-U", "headrace", "--auth=trust", "-E", "UTF8",
         "--locale=C", "--no-sync", "--no-instructions"],
        **run,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    started = None
    for _ in range(3):  # a free port can be taken between choosing and listening
        port = free_port()
        settings = (
            f"-c listen_addresses=127.0.0.1 -c port={port} "
            f"-c unix_socket_directories={directory} -c fsync=off -c full_page_writes=off "
            "-c synchronous_commit=off -c max_connections=200"
        )
        started = subprocess.run(
            [PG_BIN / "pg_ctl", "-D", data, "-l", directory / "server.log", "-w", "-t", "30",
             "-o", settings, "start"],
            **run,
        )  # fmt: skip
        if started.returncode == 0:
            break
    assert started.returncode == 0, (directory / "server.log").read_text()
    try:
        yield Cluster(port, directory, settings, run)
    finally:
        subprocess.run([PG_BIN / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], **run)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pg_url(cluster) -> str:
    """A new, empty database on the cluster."""
    return cluster.url(cluster.create_database())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_pg)])
def url(request, tmp_path, monkeypatch) -> str:
    """A fresh history, on SQLite and then on PostgreSQL, that the settings point at."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'history.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    monkeypatch.setenv("HEADRACE_DATABASE_URL", url)
    return url
