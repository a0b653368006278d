"""`headrace server [--host 127.0.0.1] [--port 4280]`: the web UI over the run history.

uvicorn serves `headrace.server.create_app()`. A port already taken is a
one-line error naming it and `--port`; a host other than the loopback gets a
warning, since the UI has no authentication. Needs the `server` extra.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

import click

from headrace.cli.shared import where


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise click.ClickException(
                    f"Port {port} on {host} is in use; pass another with --port."
                ) from None
            raise click.ClickException(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", default=4280, show_default=True, type=click.IntRange(0, 65535),
              help="The port to listen on.")  # fmt: skip
def server_command(host: str, port: int) -> None:
    """Serve the web UI over the run history (read only), until Ctrl-C."""
    from headrace._optional import require
    from headrace.errors import MissingDependencyError

    try:
        uvicorn = require("uvicorn", "server", "headrace server")
        from headrace.server import create_app
        from headrace.server.security import allowed_hosts_for
        from headrace.store import database_url

        app = create_app(allowed_hosts=allowed_hosts_for(host, port))
    except MissingDependencyError as exc:
        raise click.ClickException(str(exc)) from None
    if not _loopback(host):
        click.echo(
            f"Warning: listening on {host}, beyond this machine. The UI has no "
            "authentication: anyone who reaches it reads every run, parameter and log line.",
            err=True,
        )
    _check_port(host, port)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"headrace UI on http://{shown}:{port}/ over {where(database_url())} (Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
