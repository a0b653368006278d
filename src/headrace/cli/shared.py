"""What the command groups share: formatting for a terminal, and opening the history.

Every recorded string is hostile when shown in a terminal: a flow, task or
run name, a message or a log line may hold escape sequences that would move
the cursor, retitle the window or hide text. `safe` shows each control
character (and each bidirectional override) as its Python escape; `--json`
output is escaped by JSON itself.
"""

from __future__ import annotations

import datetime
import json
import re
import time

import click

from headrace.text import safe  # noqa: F401 - every command prints recorded text through it

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

FLOW_RUN_FIELDS = (
    "id",
    "name",
    "flow_name",
    "parent_id",
    "state_type",
    "state_name",
    "start_time",
    "end_time",
    "parameters",
)

# -- formatting ---------------------------------------------------------------------------------


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as an ISO-8601 UTC string (None stays None)."""
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat()


def local(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def duration(start: float | None, end: float | None) -> str:
    """`0.42s`, `12.3s`, `3m 05s`, `2h 03m`; a run without an end counts until now."""
    if start is None:
        return "-"
    seconds = max(0.0, (end if end is not None else time.time()) - start)
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain columns, two spaces apart, left-aligned; the last column is not padded."""
    rows = [[safe(cell) for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def fields(pairs: list[tuple[str, str]]) -> str:
    """`Key:  value` lines with the values aligned (keys may be indented)."""
    width = max(len(key) for key, _ in pairs) + 2
    return "\n".join(f"{key + ':':<{width}} {safe(value)}".rstrip() for key, value in pairs)


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(value: str) -> float:
    """Seconds in an `--older-than` age: a number and a unit, s, m, h or d."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value or "")
    if not match:
        raise click.BadParameter(
            f"{value!r} is not an age: write a number and a unit, s, m, h or d (e.g. 30d, 12h).",
            param_hint="--older-than",
        )
    return float(match.group(1)) * UNITS[match.group(2)]


def count_runs(n: int) -> str:
    return f"{n} flow run" if n == 1 else f"{n} flow runs"


def first_line(text: str | None, limit: int = 120) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def times_iso(values: dict[str, Any]) -> dict[str, Any]:
    for key in ("start_time", "end_time"):
        values[key] = iso(values[key])
    return values


def flow_run_json(run) -> dict[str, Any]:
    """The fields `runs ls --json` promises, times as ISO-8601 UTC."""
    values = run.to_dict()
    return times_iso({key: values[key] for key in FLOW_RUN_FIELDS})


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


# -- the history ----------------------------------------------------------------------------------


def where(url: str) -> str:
    """Where a database URL points, without its password."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :]
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path}"


def _cannot_open(url: str, exc: Exception) -> click.ClickException:
    return click.ClickException(
        f"Cannot open the run history at {where(url)}: {exc}. Set HEADRACE_HOME to a "
        "writable directory, or HEADRACE_DATABASE_URL to a reachable database."
    )


def open_history():
    """A Reader on the history the settings name; an empty one where nothing was recorded.

    It never turns into the engine's silent no-op recorder: reading works with
    HEADRACE_HISTORY=off, and a history that cannot be read says why.
    """
    from headrace.store import StoreError, StoreMissing, database_url, open_reader
    from headrace.store.base import EmptyReader

    url = database_url()
    try:
        return open_reader(url)
    except StoreMissing:
        return EmptyReader(where(url))
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # no server, no permission: say where and why
        raise _cannot_open(url, exc) from None


def _opened(opener):
    """`opener(url)` on the settings' database URL; what stops it is a ClickException."""
    from headrace.store import StoreError, database_url

    url = database_url()
    try:
        return opener(url)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # unwritable directory, no server: say where and why
        raise _cannot_open(url, exc) from None


def open_recorder():
    """The write side, for the `db` commands that look after the database."""
    from headrace.store import open_recorder as open_write_side

    return _opened(open_write_side)


def open_cache_entries():
    """The cache's entries in the store the settings name."""
    from headrace.store import open_cache

    return _opened(open_cache)


def open_limit_store():
    """The tag limits, and the claims on their slots, in the store the settings name."""
    from headrace.store import open_limits

    return _opened(open_limits)


def find_run(reader, ref: str):
    from headrace.store import StoreError

    if not ref.strip():
        raise click.BadParameter(
            "is empty: give a flow run's id, a unique prefix of it, or its name "
            "(`headrace runs ls` lists them).",
            param_hint="RUN",
        )
    try:
        return reader.flow_run(ref)
    except StoreError as exc:
        raise click.ClickException(safe(exc)) from None
