"""`headrace limits set TAG N | ls | rm TAG`: tag limits shared by every process on the store.

A limit caps the task runs of a tag running at once across every flow run
on the store, on every executor and machine (docs/limits.md). `ls` shows
each limit, who holds its slots (task run, flow run, process, since when)
and how many wait; the claims of processes that died are swept first.
"""

from __future__ import annotations

import time

import click

from headrace.cli.shared import duration, echo_json, local, open_limit_store, safe, table


@click.group()
def limits() -> None:
    """Set, list or remove tag limits shared by every process on the store."""


def _tag(tag: str) -> str:
    if not tag.strip():
        raise click.BadParameter("is empty: give the tag the tasks carry.", param_hint="TAG")
    return tag


@limits.command("set")
@click.argument("tag")
@click.argument("slots", type=int, metavar="N")
def limits_set(tag: str, slots: int) -> None:
    """At most N task runs tagged TAG run at once, across every process on the store."""
    if slots < 1:
        raise click.BadParameter(
            f"{slots} is not a limit: give a whole number >= 1 (`headrace limits rm` "
            "removes a limit).",
            param_hint="N",
        )
    _tag(tag)
    store = open_limit_store()
    store.set(tag, slots)
    click.echo(safe(f"Tag {tag!r}: at most {slots} running at once, on {store.where}."))


@limits.command("rm")
@click.argument("tag")
def limits_rm(tag: str) -> None:
    """Remove the limit of TAG: its waiting task runs start."""
    _tag(tag)
    if not open_limit_store().remove(tag):
        raise click.ClickException(safe(f"Tag {tag!r} has no limit (`headrace limits ls`)."))
    click.echo(safe(f"Tag {tag!r} is no longer limited."))


@limits.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def limits_ls(as_json: bool) -> None:
    """Each limit, the task runs holding its slots, and how many wait."""
    found = open_limit_store().read()
    if as_json:
        echo_json([limit.as_json() for limit in found])
        return
    if not found:
        click.echo("No tag limits: `headrace limits set TAG N` sets one.")
        return
    click.echo(table(["TAG", "LIMIT", "HOLDING", "WAITING"],
                     [[lim.tag, str(lim.slots), str(len(lim.holders)), str(lim.waiting)]
                      for lim in found]))  # fmt: skip
    holders = [
        [lim.tag, c.task_run_name or "-", c.flow_run_id or "-", f"{c.host}:{c.pid}",
         f"{local(c.granted)} ({duration(c.granted, now)})"]
        for now in [time.time()] for lim in found for c in lim.holders
    ]  # fmt: skip
    if holders:
        click.echo()
        click.echo(table(["TAG", "TASK RUN", "FLOW RUN", "PROCESS", "SINCE"], holders))
