"""`headrace serve FILE.py[:FLOW] --cron ...` and `headrace schedules ls | runs`.

`serve` runs a flow from a file on a schedule until Ctrl-C, through
`headrace.serving.Server`; `schedules` reads what servers registered and
the ticks they took, through a Reader.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from headrace.cli.shared import iso, safe, table
from headrace.schedules import CATCHUP, MAX_CATCHUP, OVERLAP


@click.command("serve")
@click.argument("target", metavar="FILE.py[:FLOW]")
@click.option("--cron", multiple=True, help="When to run, as cron: five fields, e.g. "
              "'0 2 * * *'; repeat for several schedules.")  # fmt: skip
@click.option("--interval", type=float, multiple=True, metavar="SECONDS",
              help="Or (or also): run every SECONDS.")  # fmt: skip
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
    policies = {"timezone": timezone, "catchup": catchup, "max_catchup": max_catchup,
                "overlap": overlap}  # fmt: skip
    if not cron and not interval:
        raise click.UsageError("Give --cron '0 2 * * *' or --interval SECONDS (or several).")
    try:
        given = [Schedule(c, **policies) for c in cron] + [
            Schedule(interval=timedelta(seconds=s), **policies) for s in interval
        ]
    except ScheduleError as exc:
        raise click.UsageError(str(exc)) from None
    chosen = load_flow(file, wanted)
    server = Server(chosen, given, parameters)
    now = datetime.now(UTC)
    first = min(s.next_after(now) for s in given)
    shown = ", ".join(repr(s) for s in given)
    click.echo(safe(f"Serving flow {chosen.name!r} on {shown}; the next run is at "
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
    from headrace.cli.shared import open_history
    from headrace.schedules import registered

    rows = [[s["id"], s["flow_name"], s["when"], s["timezone"], s["catchup"], s["overlap"],
             iso(s["runs"][0]["scheduled_time"]) if s["runs"] else "-", iso(s["next"])]
            for s in registered(open_history(), runs=1)]  # fmt: skip
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
    from headrace.cli.shared import open_history

    runs = open_history().scheduled_runs(schedule_id, limit)
    rows = [[r.schedule_id, iso(r.scheduled_time), r.state_name, r.flow_run_id or "-",
             r.server or "-"] for r in runs]  # fmt: skip
    if not rows:
        click.echo("No scheduled runs yet.")
        return
    click.echo(table(["SCHEDULE", "SCHEDULED FOR", "STATE", "FLOW RUN", "SERVER"], rows))
