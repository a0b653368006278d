"""`headrace db prune | reset | upgrade`: look after the history database itself.

These are the only commands that open the write side: its admin operations
(`prune`, `reset`) and, by opening it, the migrations. What they report
is read through a Reader.
"""

from __future__ import annotations

import sys
import time

import click

from headrace.cli.shared import (
    count_runs,
    fields,
    local,
    open_cache_entries,
    open_history,
    open_recorder,
    parse_age,
    safe,
    where,
)


@click.group()
def db() -> None:
    """Prune, reset or upgrade the history database."""


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
    """Delete flow runs that ended long ago, with their task runs, states, logs and
    persisted results.

    Runs still Running are kept, however old, and so are the results of cache entries
    (`headrace cache clear` deletes those).
    """
    seconds = parse_age(older_than)
    store = open_recorder()
    cutoff = max(time.time() - seconds, 0.0)  # (an age beyond 1970 keeps every run)
    deleted = store.prune(cutoff)
    click.echo(f"Deleted {count_runs(deleted)} that ended before {local(cutoff)} ({older_than}).")
    _remove_results()


def _remove_results() -> None:
    """The persisted results of runs the history no longer has go too."""
    from headrace.results.persist import remove_unowned
    from headrace.store import StoreError

    with open_history() as reader:

        def known(run_id: str) -> bool:
            try:
                return reader.flow_run(run_id).id == run_id
            except StoreError:
                return False

        removed = remove_unowned(known, open_cache_entries().result_refs())
    if removed:
        click.echo(f"Deleted the persisted results of {count_runs(removed)}.")


def _interactive() -> bool:
    """Whether a person can answer a question on this terminal."""
    return sys.stdin.isatty()


@db.command("reset")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Reset even while runs are Running.")
def db_reset(yes: bool, force: bool) -> None:
    """Delete every recorded run, task run, state and log line (the schema stays)."""
    store = open_recorder()  # opening marks the runs of dead processes Crashed
    with open_history() as reader:
        count = len(reader.flow_runs(limit=None))
        running = reader.flow_runs(state="running", limit=None)
    if running and not force:
        shown = ", ".join(f"{safe(r.name)} ({r.id[:8]}, pid {r.pid})" for r in running[:5])
        raise click.ClickException(
            f"{count_runs(len(running))} still Running: {shown}. Resetting now would delete "
            "them while they record. Wait for them to finish, or pass --force."
        )
    if not yes:
        if not _interactive():
            raise click.UsageError(
                f"Refusing to delete {count_runs(count)} in {store.where} without "
                "confirmation; there is no terminal to ask on. Pass --yes to reset."
            )
        question = f"Delete {count_runs(count)} and their task runs and logs in {store.where}?"
        if not click.confirm(question, default=False):
            click.echo("Nothing was deleted.")
            sys.exit(1)
    store.reset()
    click.echo(f"Deleted {count_runs(count)} from {store.where}.")
    _remove_results()


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database's schema up to this headrace's version (creating it if new)."""
    from headrace.store import database_url, schema_version
    from headrace.store.sql import SCHEMA_VERSION

    url = database_url()
    before = _schema_in(url)
    if before is not None and before > SCHEMA_VERSION:
        raise click.ClickException(
            f"The database at {where(url)} has schema version {before}, made by a newer "
            f"headrace; this one understands up to {SCHEMA_VERSION}. Nothing was changed."
        )
    store = open_recorder()  # opening applies the migrations, or refuses a database not ours
    after = schema_version(url)
    shown = "none (new database)" if before is None else str(before)
    pairs = [("Database", store.where), ("Schema before", shown), ("Schema after", str(after))]
    click.echo(fields(pairs))
    click.echo("Already up to date." if before == after else "Upgraded.")


def _schema_in(url: str) -> int | None:
    """The schema version in the database at `url`, read without changing anything; None
    for no database yet, and for one that cannot be read (opening it then says why)."""
    from headrace.store import schema_version

    try:
        return schema_version(url)
    except Exception:
        return None
