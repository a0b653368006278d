"""`headrace version`: versions, the platform and where the history is kept.

It never opens the database, so it never creates one.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import click

from headrace.cli.shared import fields, where


@click.command()
def version() -> None:
    """Show versions, the platform and where the history is kept."""
    import headrace
    from headrace.store import database_url
    from headrace.store.sql import SCHEMA_VERSION

    url = database_url()
    pairs = [
        ("Version", headrace.__version__),
        ("Schema version", str(SCHEMA_VERSION)),
        ("Python version", platform.python_version()),
        ("Git commit", _git_commit(Path(headrace.__file__).parent)),
        ("OS/Arch", f"{platform.system().lower()}/{platform.machine()}"),
    ]
    history = os.environ.get("HEADRACE_HISTORY", "on").lower()
    if history in ("off", "0", "false", "no"):
        pairs.append(("History", "off (HEADRACE_HISTORY)"))
    if url.startswith("sqlite:///"):
        import sqlite3

        pairs += [
            ("Database", "sqlite"),
            ("  Path", where(url)),
            ("  SQLite version", sqlite3.sqlite_version),
        ]
    elif url.split("://", 1)[0] in ("postgresql", "postgres", "postgresql+psycopg"):
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        pairs += [
            ("Database", "postgresql"),
            ("  Host", f"{host}:{parts.port}" if parts.port else host),
            ("  Name", parts.path.lstrip("/") or "-"),
        ]
    else:
        pairs.append(("Database", f"not understood ({url.split(':', 1)[0]}://...)"))
    click.echo(fields(pairs))


def _git_commit(package_dir: Path) -> str:
    """The short commit of the source checkout headrace runs from, else "unknown".

    An installed copy (site-packages) is never asked: a virtualenv inside
    some other repository would otherwise report that repository's commit.
    """
    if "site-packages" in package_dir.parts or "dist-packages" in package_dir.parts:
        return "unknown"
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=package_dir,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else "unknown"
