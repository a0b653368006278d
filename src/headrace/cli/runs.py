"""`headrace runs ls | show RUN | logs RUN`: the recorded flow runs, task runs and log lines
(`runs resume` is `cli.resume`).

Read only through a Reader (`store.base.Reader`): nothing here writes, and
a mapped task's children are found by what was recorded about them (their
parent task run, else their task key or name), never by the shape of an id.
RUN is a flow run's id, a unique prefix of it, or its name.
"""

from __future__ import annotations

import datetime
import json
import logging
import time

import click

from headrace.cli.shared import (
    duration,
    echo_json,
    fields,
    find_run,
    first_line,
    flow_run_json,
    local,
    open_history,
    safe,
    table,
    times_iso,
)

POLL_SECONDS = 0.5  # how often `runs logs --follow` asks the history for new lines
FAILED_SHOWN = 3  # failed children named on a mapped task's line

# `runs logs --follow` sleeps through this name, so a test can see each poll.
_sleep = time.sleep


@click.group()
def runs() -> None:
    """List flow runs, show one, print its logs, resume one."""


def _not_empty(ctx, param, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("is empty: leave the option out to list every run.")
    return value


def _state_names() -> list[str]:
    """The names headrace's own states have (a task may name its states otherwise)."""
    from headrace import states

    made = [
        states.Scheduled(), states.Pending(), states.Running(), states.Retrying(),
        states.Looped(), states.Completed(), states.Cached(), states.Skipped(),
        states.NotRun(), states.Failed(), states.TriggerFailed(), states.TimedOut(),
        states.Crashed(), states.Cancelled(), states.Mapped([]),
    ]  # fmt: skip
    return [state.name for state in made]


def _unknown_state(state: str) -> click.BadParameter | None:
    """The error for a --state that is neither a state type nor one of headrace's names."""
    from headrace.states import StateType

    types = [t.value.lower() for t in StateType]
    names = _state_names()
    if state.lower() in types or state.lower() in (n.lower() for n in names):
        return None
    return click.BadParameter(
        safe(
            f"{state!r} is not a state type ({', '.join(types)}) nor one of headrace's state "
            f"names ({', '.join(names)}), and no recorded run has a state of that name.",
        ),
        param_hint="--state",
    )


@runs.command("ls")
@click.option(
    "--flow",
    "flow_name",
    metavar="NAME",
    callback=_not_empty,
    help="Only runs of the flow with this name.",
)
@click.option(
    "--state",
    metavar="STATE",
    callback=_not_empty,
    help="Only runs in this state: a type (failed, completed, running, crashed) or a name "
    "(TimedOut); case does not matter.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0, max=2**62),  # a database integer
    default=20,
    show_default=True,
    help="At most this many runs, newest first; 0 for all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def runs_ls(flow_name: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List flow runs, newest first."""
    with open_history() as reader:
        found = reader.flow_runs(flow_name=flow_name, state=state, limit=limit or None)
        unknown = _unknown_state(state) if state and not found else None
        if unknown is not None:
            raise unknown
        if as_json:
            echo_json([flow_run_json(r) for r in found])
            return
        if not found:
            filtered = " match" if flow_name or state else " are recorded"
            click.echo(safe(f"No flow runs{filtered} in {reader.where}."))
            return
    rows = [
        [
            r.id[:8],
            r.name,
            r.flow_name,
            r.state_name,
            local(r.start_time),
            duration(r.start_time, r.end_time),
        ]
        for r in found
    ]
    click.echo(table(["ID", "NAME", "FLOW", "STATE", "START", "DURATION"], rows))


@runs.command("show")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print the run and its task runs as JSON.")
def runs_show(run: str, as_json: bool) -> None:
    """Show flow run RUN (an id, a unique id prefix or a name) and its task runs.

    A mapped task is one line with its children counted by state.
    """
    with open_history() as reader:
        flow_run = find_run(reader, run)
        if as_json:
            out = times_iso(flow_run.to_dict())
            out["task_runs"] = [times_iso(t.to_dict()) for t in reader.task_runs(flow_run.id)]
            echo_json(out)
            return
        parent, resumed = _named(reader, flow_run.parent_id), _named(reader, flow_run.resumed_from)
        subflows = reader.flow_runs(parent_id=flow_run.id, limit=None)
        lines = _task_lines(
            reader.task_runs(flow_run.id, children=False), reader.map_groups(flow_run.id)
        )
    state = flow_run.state_name
    if flow_run.state_message:
        state += f": {first_line(flow_run.state_message)}"
    pairs = [
        ("Flow run", f"{flow_run.name} ({flow_run.id})"),
        ("Flow", f"{flow_run.flow_name} ({flow_run.style})"),
        ("State", state),
        ("Parameters", json.dumps(flow_run.parameters) if flow_run.parameters else "-"),
        ("Parent", parent),
        *([("Resumed from", resumed)] if flow_run.resumed_from else []),
        ("Start", local(flow_run.start_time)),
        ("End", local(flow_run.end_time)),
        ("Duration", duration(flow_run.start_time, flow_run.end_time)),
        ("Host", f"{flow_run.host or '-'}, pid {flow_run.pid or '-'}"),
    ]
    if flow_run.executor:
        pairs.append(("Executor", flow_run.executor))
    click.echo(fields(pairs))
    if subflows:
        rows = [
            [s.id[:8], s.name, s.flow_name, s.state_name, duration(s.start_time, s.end_time)]
            for s in sorted(subflows, key=lambda s: s.start_time or 0)
        ]
        click.echo("\nSubflow runs")
        click.echo(table(["ID", "NAME", "FLOW", "STATE", "DURATION"], rows))
    click.echo("\nTask runs")
    if not lines:
        click.echo("(none recorded)")
        return
    click.echo(table(["NAME", "STATE", "DURATION", "DETAILS"], lines))


def _named(reader, run_id: str | None) -> str:
    """`name (id8)` of another recorded run; its id when it is gone; `-` for none."""
    if not run_id:
        return "-"
    try:
        other = reader.flow_run(run_id)
    except Exception:
        return run_id
    return f"{other.name} ({other.id[:8]})"


def _task_lines(task_runs: list, groups: list) -> list[list[str]]:
    """One row per task run that is not a map child, and one per mapped task.

    A mapped task's row counts its children (a `MapGroup`) by state. Graph
    flows record the mapped task as a whole (state Mapped) whose children
    name it as their parent; children recorded with no parent form a group
    by their task key (else task name), as the Reader groups them.
    """
    by_parent = {g.parent_task_run_id: g for g in groups if g.parent_task_run_id is not None}
    entries = []  # (sort key, row)
    for t in task_runs:
        group = by_parent.pop(t.id, None)
        if group is not None or t.is_mapped():
            entries.append(_mapped_row(t.name, t.state_name, group, t))
            continue
        details = []
        if not t.is_completed_or_cached() and t.state_message:
            details.append(first_line(t.state_message))
        if (t.run_count or 1) > 1:
            details.append(f"{t.run_count} attempts")
        row = [t.name, t.state_name, duration(t.start_time, t.end_time), "; ".join(details)]
        entries.append((t.start_time or 0, row))
    for group in groups:  # children recorded without a parent, or whose parent is missing
        if group.parent_task_run_id is None or group.parent_task_run_id in by_parent:
            entries.append(_mapped_row(group.task_name, "Mapped", group, None))
    entries.sort(key=lambda e: e[0])
    return [row for _, row in entries]


def _mapped_row(name: str, state: str, group, whole):
    counts = group.counts if group is not None else {}
    size = group.size if group is not None else 0
    summary = ", ".join(
        f"{n} {s}" for s, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    )
    details = f"{size} {'child' if size == 1 else 'children'}"
    if summary:
        details += f": {summary}"
    bad = group.failed if group is not None else []
    if bad:
        more = ", ..." if len(bad) > FAILED_SHOWN else ""
        details += f" (failed: {', '.join(bad[:FAILED_SHOWN])}{more})"
    start = group.start_time if group is not None else None
    end = group.end_time if group is not None else None
    if start is None and whole is not None:
        start = whole.start_time
    if end is None and whole is not None:
        end = whole.end_time
    return (start or 0, [name, state, duration(start, end), details])


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
    with open_history() as reader:
        flow_run = find_run(reader, run)
        last = _print_logs(reader, flow_run.id, 0)
        if not follow:
            return
        seen_running = False
        while flow_run.is_running():
            seen_running = True
            _sleep(POLL_SECONDS)
            flow_run = reader.flow_run(flow_run.id)
            last = _print_logs(reader, flow_run.id, last)
        if flow_run.is_crashed() and flow_run.end_time is None:
            # Shown Crashed by the Reader: its process is gone and never ended the run.
            raise click.ClickException(
                safe(
                    f"The process running flow run {flow_run.name!r} (pid {flow_run.pid}) has "
                    "stopped without ending the run; the history shows it as Crashed."
                )
            )
        if seen_running:
            # The run's last lines can be written in the batch after its end: read once more.
            _sleep(POLL_SECONDS)
            _print_logs(reader, flow_run.id, last)


def _print_logs(reader, flow_run_id: str, after: int) -> int:
    """Print the lines after log id `after` like the console shows them; the last id printed."""
    for log_id, record in reader.logs(flow_run_id, after=after):
        moment = datetime.datetime.fromtimestamp(record.time)
        level = logging.getLevelName(record.level)
        stamp = f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}"
        line = f"{stamp} | {level:<7} | {safe(record.logger)} - {safe(record.message, lines=True)}"
        click.echo(line)
        after = log_id
    return after
