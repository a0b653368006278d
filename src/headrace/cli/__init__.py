"""The `headrace` command: run a flow from a file, read the run history, look after the database.

    headrace version                        versions, platform, where the history is kept
    headrace --version                      just the version
    headrace run FILE.py:FLOW --param k=v   run a graph flow or a @flow function
    headrace runs ls | show RUN | logs RUN  the recorded flow runs, task runs and log lines
    headrace runs resume RUN [--dry-run]    run RUN's flow again, reusing what it completed
    headrace cache ls | clear               the cache's entries and their results
    headrace serve FILE.py:FLOW --cron ...  run a flow on a schedule until Ctrl-C
    headrace schedules ls | runs [ID]       the schedules servers registered, their runs
    headrace limits set TAG N | ls | rm TAG tag limits shared by every process on the store
    headrace server [--host] [--port]       the web UI over the history
    headrace db prune | reset | upgrade     the history database itself

One module per command group: `version`, `run`, `runs` (and its `resume`), `serve` (and
`schedules`), `limits`, `cache`, `server`, `db`; `shared` holds
the formatting (every recorded string is escaped before it reaches the
terminal) and the opening of the history. RUN is a flow run's id, a unique
prefix of it, or its name. Exit codes: 0 success, 1 a failure (a failed
flow run, an unknown run, a database that cannot be used), 2 a command line
that is wrong (click's usage errors, a bad --param, a flow that is not in
the file).

The commands are a face on top of the library: they read the history only
through a `Reader` (`headrace.store.open_reader`), look after it through the
write side's admin operations (`db`), and run flows through `Flow.run` and
`@flow` calls. Nothing heavy is imported at start-up; each command imports
what it uses, so `headrace --help` and `headrace version` stay fast.
"""

from __future__ import annotations

import click

from headrace.cli import cache, db, limits, resume, run, runs, serve, server, version


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="headrace", message="%(prog)s %(version)s")
def main() -> None:
    """headrace: run flows and read their history.

    The history is the SQLite file $HEADRACE_HOME/headrace.db (HEADRACE_HOME
    defaults to ~/.headrace), or the database HEADRACE_DATABASE_URL names.
    """


main.add_command(version.version)
main.add_command(run.run_command)
runs.runs.add_command(resume.runs_resume)
main.add_command(runs.runs)
main.add_command(serve.serve_command)
main.add_command(serve.schedules)
main.add_command(limits.limits)
main.add_command(cache.cache)
main.add_command(server.server_command)
main.add_command(db.db)
