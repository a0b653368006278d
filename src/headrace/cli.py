"""The `headrace` command: run a flow from a file, read the run history, look after the database.

    headrace version                        versions, platform, where the history is kept
    headrace --version                      just the version
    headrace run FILE.py:FLOW --param k=v   run a graph flow or a @flow function
    headrace runs ls | show RUN | logs RUN  the recorded flow runs, task runs and log lines
    headrace db prune | reset | upgrade     the history database itself

RUN is a flow run's id, a unique prefix of it, or its name. Exit codes: 0
success, 1 a failure (a failed flow run, an unknown run, a database that
cannot be used), 2 a command line that is wrong (click's usage errors, a
bad --param, a flow that is not in the file).

This module is a face on top of the library: it reads the store through
its public read API and runs flows through `Flow.run` and `@flow` calls.
It imports nothing heavy at start-up; each command imports what it uses,
so `headrace --help` and `headrace version` stay fast.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import logging
import os
import platform
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

POLL_SECONDS = 0.5  # how often `runs logs --follow` asks the store for new lines
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
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

# `runs logs --follow` sleeps through this name, so a test can see each poll.
_sleep = time.sleep


# -- helpers: formatting ------------------------------------------------------------------------


def _iso(epoch: float | None) -> str | None:
    """Epoch seconds as an ISO-8601 UTC string (None stays None)."""
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat()


def _local(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _duration(start: float | None, end: float | None) -> str:
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


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain columns, two spaces apart, left-aligned; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths)] + [str(row[-1])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _fields(pairs: list[tuple[str, str]]) -> str:
    """`Key:  value` lines with the values aligned (keys may be indented)."""
    width = max(len(key) for key, _ in pairs) + 2
    return "\n".join(f"{key + ':':<{width}} {value}".rstrip() for key, value in pairs)


def _runs(n: int) -> str:
    return f"{n} flow run" if n == 1 else f"{n} flow runs"


def _first_line(text: str | None, limit: int = 120) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _flow_run_json(run) -> dict[str, Any]:
    """The fields `runs ls --json` promises, times as ISO-8601 UTC."""
    values = run.to_dict()
    out = {key: values[key] for key in FLOW_RUN_FIELDS}
    out["start_time"] = _iso(out["start_time"])
    out["end_time"] = _iso(out["end_time"])
    return out


def _times_iso(values: dict[str, Any]) -> dict[str, Any]:
    for key in ("start_time", "end_time"):
        values[key] = _iso(values[key])
    return values


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


# -- helpers: the store -------------------------------------------------------------------------

_stores: dict[tuple[str, int], Any] = {}


def _store():
    """The history store named by the settings, opened once per process.

    Opened directly rather than through `get_store()`, so reading works with
    HEADRACE_HISTORY=off and a store that cannot be opened says why instead
    of turning into the silent no-op store the engine uses.
    """
    from headrace.store import StoreError, database_url, open_store

    key = (database_url(), os.getpid())
    store = _stores.get(key)
    if store is None:
        try:
            store = _stores[key] = open_store(key[0])
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:  # unwritable directory, no server: say where and why
            raise click.ClickException(
                f"Cannot open the run history at {_where(key[0])}: {exc}. Set HEADRACE_HOME to "
                "a writable directory, or HEADRACE_DATABASE_URL to a reachable database."
            ) from None
    return store


def _find_run(store, ref: str):
    from headrace.store import StoreError

    try:
        return store.flow_run(ref)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


def _where(url: str) -> str:
    """Where a database URL points, without its password."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :]
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path}"


def _schema_in(url: str) -> int | None:
    """The schema version written in the database at `url`, without changing anything.

    None when there is no database yet, or it has no headrace tables (opening
    it then says whether it is empty or someone else's).
    """
    if url.startswith("sqlite:///"):
        import sqlite3

        path = Path(url[len("sqlite:///") :]).expanduser().resolve()
        if not path.exists():
            return None
        try:
            conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)
            try:
                found = conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'headrace_meta'"
                ).fetchone()
                if not found:
                    return None
                row = conn.execute(
                    "SELECT value FROM headrace_meta WHERE key = 'schema_version'"
                ).fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            return None
        return int(row[0]) if row else None
    try:
        import psycopg

        conninfo = re.sub(r"^postgresql\+psycopg://|^postgres://", "postgresql://", url)
        timeout = {} if "connect_timeout" in url else {"connect_timeout": 10}
        with psycopg.connect(conninfo, **timeout) as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('headrace_meta')")
            if cur.fetchone()[0] is None:
                return None
            cur.execute("SELECT value FROM headrace_meta WHERE key = 'schema_version'")
            row = cur.fetchone()
    except Exception:
        return None
    return int(row[0]) if row else None


# -- the command --------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="headrace", message="%(prog)s %(version)s")
def main() -> None:
    """headrace: run flows and read their history.

    The history is the SQLite file $HEADRACE_HOME/headrace.db (HEADRACE_HOME
    defaults to ~/.headrace), or the database HEADRACE_DATABASE_URL names.
    """


@main.command()
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
            ("  Path", _where(url)),
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
    click.echo(_fields(pairs))


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


# -- headrace run -------------------------------------------------------------------------------


def _parse_params(values: tuple[str, ...]) -> dict[str, Any]:
    """`key=value` pairs; a value is JSON when it parses as JSON, else the string itself."""
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(
                f"{item!r} is not key=value; write e.g. --param n=3 or --param name=alice.",
                param_hint="--param",
            )
        if key in params:
            raise click.BadParameter(f"{key!r} is given twice.", param_hint="--param")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def _load_module(path: Path):
    """Import the file at `path` as a module, its directory first on sys.path (as `python FILE`)."""
    name = path.stem
    if not _free_module_name(name, path):
        # Never shadow another module of that name (json.py, a second flows.py): a later
        # `import json` anywhere in this process would get the user's file.
        safe = re.sub(r"\W", "_", name)
        name = f"headrace_run_{safe}_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    try:  # workers of a process or Dask executor cannot import the file: send it by value
        import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    except Exception:
        pass
    return module


def _free_module_name(name: str, path: Path) -> bool:
    """Whether `name` is importable as nothing but the file at `path` (so it can be its name)."""
    if not name.isidentifier():
        return False
    taken = sys.modules.get(name)
    if taken is not None:
        return getattr(taken, "__file__", None) == str(path)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is None or spec.origin == str(path)


def _flows_in(module) -> dict[str, Any]:
    from headrace.flows import Flow
    from headrace.functions import FunctionFlow

    return {
        attr: value
        for attr, value in vars(module).items()
        if isinstance(value, Flow | FunctionFlow) and not attr.startswith("_")
    }


def _describe(attr: str, flow) -> str:
    from headrace.flows import Flow

    style = "graph flow" if isinstance(flow, Flow) else "@flow function"
    return f"{attr} ({style} {flow.name!r})"


def _pick_flow(module, file: str, wanted: str | None):
    flows = _flows_in(module)
    listed = ", ".join(_describe(a, f) for a, f in flows.items()) or "none"
    if wanted is None:
        if len(flows) == 1:
            return next(iter(flows.values()))
        raise click.UsageError(
            f"{file} has {len(flows) or 'no'} flows; name one as {file}:FLOW. Its flows: {listed}."
        )
    if wanted in flows:
        return flows[wanted]
    by_name = [f for f in flows.values() if f.name == wanted]
    if len(by_name) == 1:
        return by_name[0]
    if hasattr(module, wanted):
        kind = type(getattr(module, wanted)).__name__
        raise click.UsageError(
            f"{wanted!r} in {file} is not a flow (it is of type {kind}); a flow is a `Flow` "
            f"or a @flow function. Its flows: {listed}."
        )
    raise click.UsageError(f"{file} has no flow named {wanted!r}. Its flows: {listed}.")


@main.command("run")
@click.argument("target", metavar="FILE.py[:FLOW]")
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A parameter; repeat for more. VALUE is read as JSON when it parses (3, true, "
    '["a","b"]), else as a string.',
)
def run_command(target: str, params: tuple[str, ...]) -> None:
    """Run a flow from a file and print its final state.

    FILE.py is imported as a module (its directory first on sys.path, as
    `python FILE.py` would; its `if __name__ == "__main__":` block does not
    run).

    FLOW is the variable holding a graph `Flow` or a @flow function (or the
    flow's name); it may be left out when the file has one flow. Exits 1
    when the flow run failed.
    """
    file, sep, wanted = target.rpartition(":")
    if not sep or not file or "/" in wanted or "\\" in wanted:
        file, wanted = target, None  # no :FLOW (a colon of a Windows drive is not one)
    parameters = _parse_params(params)
    path = Path(file).expanduser()
    if not path.is_file():
        raise click.UsageError(f"No such file: {file}")
    path = path.resolve()
    try:
        module = _load_module(path)
    except Exception as exc:
        import traceback

        shown = "".join(traceback.format_exception(exc)).rstrip()
        raise click.ClickException(f"Importing {file} failed:\n{shown}") from None
    chosen = _pick_flow(module, file, wanted or None)

    from headrace.errors import HeadraceError, ParameterError
    from headrace.flows import Flow

    try:
        if isinstance(chosen, Flow):
            state = chosen.run(parameters=parameters)
        else:
            state = chosen(return_state=True, **parameters)
            if chosen.is_async:  # an `async def` flow returns its coroutine: run it here
                import asyncio

                state = asyncio.run(state)
        run_id = state.flow_run_id
        run_name = _run_name(run_id)
    except ParameterError as exc:
        raise click.UsageError(str(exc)) from None
    except HeadraceError as exc:
        raise click.ClickException(str(exc)) from None

    from headrace.engine.logs import state_label

    who = f"Flow run {run_name!r} ({run_id[:8]})" if run_name else "The flow run"
    click.echo(f"{who} finished in state {state_label(state)}")
    if not isinstance(chosen, Flow) and state.is_successful():
        value = state.result(raise_on_failure=False)
        if value is not None:
            shown = repr(value)
            click.echo(f"Result: {shown if len(shown) <= 200 else shown[:197] + '...'}")
    if state.is_failed():
        sys.exit(1)


def _run_name(run_id: str) -> str | None:
    """The name the history recorded for this run (None when history is off)."""
    from headrace.store import get_store

    store = get_store()
    if not store.recording:
        return None
    store.flush()
    return store.flow_run(run_id).name


# -- headrace runs ------------------------------------------------------------------------------


@main.group()
def runs() -> None:
    """List flow runs, show one, print its logs."""


@runs.command("ls")
@click.option("--flow", "flow_name", metavar="NAME", help="Only runs of the flow with this name.")
@click.option(
    "--state",
    metavar="STATE",
    help="Only runs in this state: a type (failed, completed, running, crashed) or a name "
    "(TimedOut); case does not matter.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="At most this many runs, newest first; 0 for all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def runs_ls(flow_name: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List flow runs, newest first."""
    store = _store()
    found = store.flow_runs(flow=flow_name, state=state, limit=limit or None)
    if as_json:
        _echo_json([_flow_run_json(r) for r in found])
        return
    if not found:
        filtered = " match" if flow_name or state else " are recorded"
        click.echo(f"No flow runs{filtered} in {store.where}.")
        return
    rows = [
        [
            r.id[:8],
            r.name,
            r.flow_name,
            r.state_name,
            _local(r.start_time),
            _duration(r.start_time, r.end_time),
        ]
        for r in found
    ]
    click.echo(_table(["ID", "NAME", "FLOW", "STATE", "START", "DURATION"], rows))


@runs.command("show")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print the run and its task runs as JSON.")
def runs_show(run: str, as_json: bool) -> None:
    """Show flow run RUN (an id, a unique id prefix or a name) and its task runs.

    A mapped task is one line with its children counted by state.
    """
    store = _store()
    flow_run = _find_run(store, run)
    task_runs = store.task_runs(flow_run.id)
    if as_json:
        out = _times_iso(flow_run.to_dict())
        out["task_runs"] = [_times_iso(t.to_dict()) for t in task_runs]
        _echo_json(out)
        return
    parent = "-"
    if flow_run.parent_id:
        try:
            up = store.flow_run(flow_run.parent_id)
            parent = f"{up.name} ({up.id[:8]})"
        except Exception:
            parent = flow_run.parent_id
    state = flow_run.state_name
    if flow_run.state_message:
        state += f": {_first_line(flow_run.state_message)}"
    pairs = [
        ("Flow run", f"{flow_run.name} ({flow_run.id})"),
        ("Flow", f"{flow_run.flow_name} ({flow_run.style})"),
        ("State", state),
        ("Parameters", json.dumps(flow_run.parameters) if flow_run.parameters else "-"),
        ("Parent", parent),
        ("Start", _local(flow_run.start_time)),
        ("End", _local(flow_run.end_time)),
        ("Duration", _duration(flow_run.start_time, flow_run.end_time)),
        ("Host", f"{flow_run.host or '-'}, pid {flow_run.pid or '-'}"),
    ]
    if flow_run.executor:
        pairs.append(("Executor", flow_run.executor))
    click.echo(_fields(pairs))
    subflows = store.flow_runs(parent_id=flow_run.id, limit=None)
    if subflows:
        rows = [
            [s.id[:8], s.name, s.flow_name, s.state_name, _duration(s.start_time, s.end_time)]
            for s in sorted(subflows, key=lambda s: s.start_time or 0)
        ]
        click.echo("\nSubflow runs")
        click.echo(_table(["ID", "NAME", "FLOW", "STATE", "DURATION"], rows))
    click.echo("\nTask runs")
    lines = _task_lines(task_runs)
    if not lines:
        click.echo("(none recorded)")
        return
    click.echo(_table(["NAME", "STATE", "DURATION", "DETAILS"], lines))


def _task_lines(task_runs: list) -> list[list[str]]:
    """One row per task run, and one per mapped task summarising its children.

    Graph flows record a mapped task as a whole (state Mapped) whose children
    point at it; function flows record only the children of each `.map`
    call, numbered from 0, so consecutive runs of one task form a group.
    """
    children: dict[str, list] = {}
    loose: dict[tuple[str, int], list] = {}
    plain = []
    last: dict[str, tuple[int, int]] = {}  # task name -> (map index, group) of its last child
    for t in sorted(task_runs, key=_creation_order):
        if t.parent_task_run_id:
            children.setdefault(t.parent_task_run_id, []).append(t)
        elif t.map_index is not None:
            index, group = last.get(t.task_name, (-1, 0))
            if t.map_index <= index:
                group += 1
            last[t.task_name] = (t.map_index, group)
            loose.setdefault((t.task_name, group), []).append(t)
        else:
            plain.append(t)
    entries = []  # (sort key, row)
    for t in plain:
        kids = children.pop(t.id, None)
        if kids is not None or t.state_name == "Mapped":
            kids = kids or []
            entries.append(_mapped_row(t.name, t.state_name, kids, t))
            continue
        details = []
        if t.state_name not in ("Completed", "Cached") and t.state_message:
            details.append(_first_line(t.state_message))
        if (t.run_count or 1) > 1:
            details.append(f"{t.run_count} attempts")
        row = [t.name, t.state_name, _duration(t.start_time, t.end_time), "; ".join(details)]
        entries.append((t.start_time or 0, row))
    for (task_name, _), kids in loose.items():
        entries.append(_mapped_row(task_name, "Mapped", kids, None))
    for kids in children.values():  # children whose whole was not recorded
        entries.append(_mapped_row(kids[0].task_name, "Mapped", kids, None))
    entries.sort(key=lambda e: e[0])
    return [row for _, row in entries]


def _creation_order(t) -> tuple:
    # Function-flow ids end in a per-run counter ("<run id>-7"): the order the runs were made.
    tail = t.id.rsplit("-", 1)[-1]
    return (int(tail) if tail.isdigit() else 0, t.start_time or 0, t.id)


def _mapped_row(name: str, state: str, kids: list, whole):
    counts: dict[str, int] = {}
    for k in kids:
        counts[k.state_name] = counts.get(k.state_name, 0) + 1
    summary = ", ".join(
        f"{n} {s}" for s, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    )
    details = f"{len(kids)} {'child' if len(kids) == 1 else 'children'}"
    if summary:
        details += f": {summary}"
    bad = [k.name for k in kids if k.state_type in ("FAILED", "CRASHED")]
    if bad:
        details += f" (failed: {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})"
    starts = [k.start_time for k in kids if k.start_time is not None]
    ends = [k.end_time for k in kids if k.end_time is not None]
    start = min(starts) if starts else (whole.start_time if whole else None)
    end = max(ends) if ends else (whole.end_time if whole else None)
    return (start or 0, [name, state, _duration(start, end), details])


@runs.command("logs")
@click.argument("run")
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help=f"While the run is Running, keep printing new lines (every {POLL_SECONDS:g} s); "
    "stop when it ends.",
)
def runs_logs(run: str, follow: bool) -> None:
    """Print the log lines of flow run RUN (an id, a unique id prefix or a name)."""
    store = _store()
    flow_run = _find_run(store, run)
    last = _print_logs(store, flow_run.id, 0)
    if not follow:
        return
    seen_running = False
    while flow_run.state_type == "RUNNING":
        seen_running = True
        if _process_gone(flow_run):
            raise click.ClickException(
                f"The process running flow run {flow_run.name!r} (pid {flow_run.pid}) has "
                "stopped without ending the run; it is marked Crashed the next time the "
                "history is opened."
            )
        _sleep(POLL_SECONDS)
        flow_run = store.flow_run(flow_run.id)
        last = _print_logs(store, flow_run.id, last)
    if seen_running:
        # The run's last lines can be written in the batch after its end: read once more.
        _sleep(POLL_SECONDS)
        _print_logs(store, flow_run.id, last)


def _print_logs(store, flow_run_id: str, after: int) -> int:
    """Print the lines after log id `after` like the console shows them; the last id printed."""
    for log_id, record in store.logs(flow_run_id, after=after):
        moment = datetime.datetime.fromtimestamp(record.time)
        level = logging.getLevelName(record.level)
        stamp = f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}"
        click.echo(f"{stamp} | {level:<7} | {record.logger} - {record.message}")
        after = log_id
    return after


def _process_gone(flow_run) -> bool:
    """True when the run's process was on this host and no longer exists."""
    if not flow_run.pid or flow_run.host != socket.gethostname():
        return False
    try:
        os.kill(flow_run.pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


# -- headrace db --------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Prune, reset or upgrade the history database."""


def _parse_age(value: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value or "")
    if not match:
        raise click.BadParameter(
            f"{value!r} is not an age: write a number and a unit, s, m, h or d (e.g. 30d, 12h).",
            param_hint="--older-than",
        )
    return float(match.group(1)) * UNITS[match.group(2)]


@db.command("prune")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="AGE",
    help="Delete finished runs that ended more than AGE ago: a number and a unit, "
    "s, m, h or d (30d, 12h).",
)
def db_prune(older_than: str) -> None:
    """Delete flow runs that ended long ago, with their task runs, states and logs.

    Runs still Running are kept, however old.
    """
    seconds = _parse_age(older_than)
    store = _store()
    cutoff = time.time() - seconds
    deleted = store.prune(cutoff)
    click.echo(f"Deleted {_runs(deleted)} that ended before {_local(cutoff)} ({older_than}).")


def _interactive() -> bool:
    """Whether a person can answer a question on this terminal."""
    return sys.stdin.isatty()


@db.command("reset")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def db_reset(yes: bool) -> None:
    """Delete every recorded run, task run, state and log line (the schema stays)."""
    store = _store()
    count = len(store.flow_runs(limit=None))
    if not yes:
        if not _interactive():
            raise click.UsageError(
                f"Refusing to delete {_runs(count)} in {store.where} without "
                "confirmation; there is no terminal to ask on. Pass --yes to reset."
            )
        question = f"Delete {_runs(count)} and their task runs and logs in {store.where}?"
        if not click.confirm(question, default=False):
            click.echo("Nothing was deleted.")
            sys.exit(1)
    store.reset()
    click.echo(f"Deleted {_runs(count)} from {store.where}.")


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database's schema up to this headrace's version (creating it if new)."""
    from headrace.store import database_url
    from headrace.store.sql import SCHEMA_VERSION

    url = database_url()
    before = _schema_in(url)
    if before is not None and before > SCHEMA_VERSION:
        raise click.ClickException(
            f"The database at {_where(url)} has schema version {before}, made by a newer "
            f"headrace; this one understands up to {SCHEMA_VERSION}. Nothing was changed."
        )
    store = _store()  # opening applies the migrations, or refuses a database not headrace's
    after = _schema_in(url)
    shown = "none (new database)" if before is None else str(before)
    pairs = [("Database", store.where), ("Schema before", shown), ("Schema after", str(after))]
    click.echo(_fields(pairs))
    click.echo("Already up to date." if before == after else "Upgraded.")


if __name__ == "__main__":
    main(prog_name="headrace")
