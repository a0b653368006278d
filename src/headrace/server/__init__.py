"""The local web UI: `headrace server`, an ASGI app over the run history's Reader.

    app.py        the Starlette app: routes, the reader it reads through, errors
    api.py        the JSON API under /api (every page's data), and its OpenAPI schema
    pages.py      the server-rendered pages (Jinja2, autoescaped) and their small script
    security.py   headers (Content-Security-Policy and friends) and the Host check

Reads go through `headrace.store.open_reader` only: the server never writes, so
it runs beside flows writing the same SQLite file, and on PostgreSQL. Every
recorded string is hostile: templates escape it, the script only ever sets
`textContent`, and the CSP allows scripts from the package's own static files.
Needs the `server` extra (Starlette, uvicorn, Jinja2).
"""

from __future__ import annotations


def create_app(url: str | None = None, allowed_hosts: list[str] | None = None):
    """The ASGI app over the history at `url` (the settings' by default). `allowed_hosts`
    are the Host headers it answers (DNS rebinding); None answers any."""
    from headrace.server.app import build

    return build(url, allowed_hosts)


__all__ = ["create_app"]
