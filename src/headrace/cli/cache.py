"""`headrace cache ls | clear`: the cache's entries in the store, and their results.

An entry maps a task run's cache key to its persisted result. `clear`
deletes entries (of one task, older than an age) and the result files that
were theirs; the runs that used them keep their history.
"""

from __future__ import annotations

import time

import click

from headrace.cli.shared import local, open_cache_entries, parse_age, safe, table


@click.group()
def cache() -> None:
    """List or clear the cache's entries."""


def _result(ref: str) -> str:
    kind, _, rest = ref.partition(":")
    if kind == "inline":
        return "inline"
    return rest.partition(":")[2]


def _count(n: int) -> str:
    return f"{n} cache entry" if n == 1 else f"{n} cache entries"


@cache.command("ls")
@click.option("--task", "task_name", metavar="NAME", help="Only the entries of this task.")
@click.option("--limit", default=50, show_default=True, help="At most this many, newest first.")
def cache_ls(task_name: str | None, limit: int) -> None:
    """The newest cache entries: key, task, when written and by which task run, expiry,
    and where the result is."""
    store = open_cache_entries()
    entries = store.entries(task_name, limit)
    total = store.count()
    if not entries:
        click.echo(f"No cache entries{f' of task {safe(task_name)!s}' if task_name else ''}.")
        return
    now = time.time()
    rows = [
        [
            e.key[:12],
            e.task_name,
            local(e.created),
            "never" if e.expires is None else ("expired" if e.expired(now) else local(e.expires)),
            e.task_run_id or "-",
            _result(e.result_ref),
        ]
        for e in entries
    ]
    click.echo(table(["KEY", "TASK", "WRITTEN", "EXPIRES", "BY TASK RUN", "RESULT"], rows))
    if total > len(entries):
        click.echo(f"({len(entries)} of {_count(total)}; --limit shows more)")


@cache.command("clear")
@click.option("--task", "task_name", metavar="NAME", help="Only the entries of this task.")
@click.option(
    "--older-than",
    "older_than",
    metavar="AGE",
    help="Only entries written more than AGE ago: a number and a unit, s, m, h or d.",
)
def cache_clear(task_name: str | None, older_than: str | None) -> None:
    """Delete cache entries (all of them, unless --task or --older-than narrow it) and
    their result files. Their tasks run again the next time."""
    from headrace.results.persist import ResultRef

    if task_name is not None and not task_name.strip():
        raise click.BadParameter("is empty: give a task's name.", param_hint="--task")
    cutoff = None if older_than is None else max(time.time() - parse_age(older_than), 0.0)
    store = open_cache_entries()
    going = [
        e for e in store.entries(task_name)
        if cutoff is None or e.created < cutoff
    ]  # fmt: skip
    deleted = store.clear(task_name, cutoff)
    kept = store.result_refs()  # another entry may share a result file
    for entry in going:
        if entry.result_ref.startswith("file:") and entry.result_ref not in kept:
            ref = ResultRef.parse(entry.result_ref)
            try:
                ref.storage.delete(ref.key)
            except Exception as exc:
                click.echo(f"Could not delete {safe(ref.storage.locate(ref.key))}: {exc}")
    click.echo(f"Deleted {_count(deleted)}.")
