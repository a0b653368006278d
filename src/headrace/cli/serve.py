"""`headrace serve FILE.py[:FLOW] --cron ...` and `headrace schedules ls | runs`.

`serve` runs a flow from a file on a schedule until Ctrl-C, through
`headrace.serving.Server`; `schedules` reads what servers registered and
the ticks they took, from the store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from headrace.cli.shared import iso, safe, table
from headrace.schedules import CATCHUP, MAX_CATCHUP, OVERLAP


@click.command("serve")
@click.argument("target", metavar="FILE.py[:FLOW]")
@click.option("--cron", help="When to run, as cron: five fields, e.g. '0 2 * * *'.")
@click.option("--interval", type=float, metavar="SECONDS", help="Or: run every SECONDS.")
@click.option("--timezone", default="UTC", show_default=True, help="The cron's time zone.")
@click.option("--catchup", type=click.Choice(CATCHUP), default="latest", show_default=True,
              help="Which runs missed while no server ran go now.")  # fmt: skip
@click.option("--max-catchup", type=int, default=MAX_CATCHUP, show_default=True,
              help="At most this many of them (catchup all).")  # fmt: skip
@click.option("--overlap", type=click.Choice(OVERLAP), default="skip", show_default=True,
              help="What a run does while the previous one still runs.")  # fmt: skip
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="A parameter of every run; as `headrace run` reads them.")  # fmt: skip
def serve_command(target, cron, interval, timezone, catchup, max_catchup, overlap, params):
    """Run a flow from a file on a schedule until Ctrl-C.

    Each run is a process of its own, recorded in the history as any run is.
    Several servers may serve one flow on one store: each tick runs once. A
    server that restarts finds its schedule and the runs it missed (see
    --catchup).
    """
    from headrace.cli.run import _parse_params, load_flow, split_target
    from headrace.schedules import Schedule, ScheduleError
    from headrace.serving import Server

    parameters = _parse_params(params)
    file, wanted = split_target(target)
    try:
        schedule = Schedule(
            cron, interval=timedelta(seconds=interval) if interval is not None else None,
            timezone=timezone, catchup=catchup, max_catchup=max_catchup, overlap=overlap,
        )  # fmt: skip
    except ScheduleError as exc:
        raise click.UsageError(str(exc)) from None
    chosen = load_flow(file, wanted)
    server = Server(chosen, [schedule], parameters)
    first = schedule.next_after(datetime.now(UTC))
    click.echo(safe(f"Serving flow {chosen.name!r} on {schedule!r}; the next run is at "
                    f"{iso(first.timestamp())}. Ctrl-C stops."))  # fmt: skip
    try:
        server.serve()
    except KeyboardInterrupt:
        click.echo("Stopped.")


@click.group("schedules")
def schedules() -> None:
    """The schedules servers registered, and the runs they scheduled."""


@schedules.command("ls")
def schedules_ls() -> None:
    """Each schedule: its flow, when it runs, its policies, its last and next run."""
    from headrace.cli.shared import _opened
    from headrace.schedules import Schedule
    from headrace.store import open_ticks

    store = _opened(open_ticks)
    now = datetime.now(UTC)
    rows = []
    for served in store.schedules():
        spec = dict(served.spec)
        when = spec.get("cron") or f"every {spec['interval']:g} s"
        if "interval" in spec:
            spec["interval"] = timedelta(seconds=spec["interval"])
            spec["anchor"] = datetime.fromtimestamp(spec["anchor"], UTC)
        last = store.last_tick(served.id)
        upcoming = Schedule(spec.pop("cron", None), **spec).next_after(now)
        rows.append([served.id, served.flow_name, when, served.spec["timezone"],
                     served.spec["catchup"], served.spec["overlap"], iso(last) or "-",
                     iso(upcoming.timestamp())])  # fmt: skip
    if not rows:
        click.echo("No schedules: `headrace serve FILE.py:FLOW --cron ...` registers one.")
        return
    click.echo(table(["ID", "FLOW", "WHEN", "TIMEZONE", "CATCHUP", "OVERLAP", "LAST", "NEXT"],
                     rows))  # fmt: skip


@schedules.command("runs")
@click.argument("schedule_id", required=False)
@click.option("--limit", default=20, show_default=True)
def schedules_runs(schedule_id, limit) -> None:
    """The runs servers scheduled (of SCHEDULE_ID), the latest first."""
    from headrace.cli.shared import _opened
    from headrace.store import open_ticks

    runs = _opened(open_ticks).scheduled_runs(schedule_id, limit)
    rows = [[r.schedule_id, iso(r.scheduled_time), r.state_name, r.flow_run_id or "-",
             r.server or "-"] for r in runs]  # fmt: skip
    if not rows:
        click.echo("No scheduled runs yet.")
        return
    click.echo(table(["SCHEDULE", "SCHEDULED FOR", "STATE", "FLOW RUN", "SERVER"], rows))
