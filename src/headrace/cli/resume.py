"""`headrace runs resume RUN [--dry-run]`: run a flow again, reusing what a run completed.

The flow is loaded from the entry point its run recorded (`FILE.py:NAME` or
`module:NAME`), then resumed through `resume()`, as a program would. A run
started from `__main__` of a notebook has no entry point: the command says
so and shows the Python call. `--dry-run` prints the plan and runs nothing.
"""

from __future__ import annotations

import importlib

import click

from headrace.cli.shared import find_run, open_history, safe, table


def _load(entry: str):
    """The flow at an entry point: FILE.py:NAME, or module:NAME."""
    from headrace.cli.run import load_flow

    where, _, name = entry.rpartition(":")
    if where.endswith(".py"):
        return load_flow(where, name)
    try:
        return getattr(importlib.import_module(where), name)
    except (ImportError, AttributeError) as exc:
        raise click.ClickException(
            f"The run's flow was {entry}, which cannot be loaded here ({exc}). Run the "
            "command where that module imports, or resume the run from Python."
        ) from None


def _plan_rows(plan) -> list[list[str]]:
    rows = []
    for key, kept in plan.kept.items():
        if kept.whole is not None and not kept.children:
            size = len(kept.whole.map_states) if kept.whole.is_mapped() else 0
            reused = f"all {size} children" if size else "yes"
        else:
            reused = f"{len(kept.children)} children" if kept.children else "no"
        if kept.whole is not None:
            runs = "no"
        elif kept.children:
            runs = f"{kept.runs_again} recorded, and those never reached"
        else:
            runs = "yes"
        rows.append([key, reused, runs])
    return rows


@click.command("resume")
@click.argument("run")
@click.option("--dry-run", is_flag=True, help="Print what would be reused and what runs.")
def runs_resume(run: str, dry_run: bool) -> None:
    """Run RUN's flow again with RUN's parameters, reusing as Cached every task run that
    RUN (or the runs it resumed) completed with a result that still reads; the rest runs.

    RUN is an id, a unique prefix of it, or a name. Exits 1 when the new run failed."""
    from headrace.engine.resume import ResumeError, plan_resume

    with open_history() as reader:
        recorded = find_run(reader, run)
        try:
            plan = plan_resume(reader, recorded.id)
        except ResumeError as exc:
            raise click.ClickException(safe(exc)) from None
    who = f"run {recorded.name!r} ({recorded.id[:8]}) of flow {recorded.flow_name!r}"
    if dry_run:
        chain = "" if len(plan.chain) == 1 else f", a chain of {len(plan.chain)} runs"
        click.echo(safe(f"Resuming {who}{chain} would reuse:"))
        click.echo(table(["TASK", "REUSED", "RUNS AGAIN"], _plan_rows(plan)))
        click.echo("Tasks not listed, and map children not reused, run.")
        return
    if recorded.entry_point is None:
        raise click.ClickException(
            safe(
                f"The {who} was started from __main__ of a notebook or an interactive "
                "session, which cannot be loaded again. Resume it in Python, where the flow "
                f'is defined: {recorded.flow_name}.resume("{recorded.id}")'
            )
        )
    from headrace.cli.run import report

    chosen = _load(recorded.entry_point)
    if getattr(chosen, "name", None) != recorded.flow_name:
        raise click.ClickException(
            safe(f"{recorded.entry_point} is now flow {chosen.name!r}, not {recorded.flow_name!r}.")
        )
    from headrace.flows import Flow

    if isinstance(chosen, Flow):
        report(chosen, lambda: chosen.resume(recorded.id))
    else:
        report(chosen, lambda: chosen.resume(recorded.id, return_state=True))
