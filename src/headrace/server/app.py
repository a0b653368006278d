"""The Starlette app: routes, the Reader behind them, and how errors are answered.

The Reader is opened on first use, and again while the history does not exist
yet (a server started before the first flow run shows runs as they appear).
An error is JSON under /api and a page elsewhere, its message escaped.
"""

from __future__ import annotations

import threading
from pathlib import Path

from headrace._optional import require

HERE = Path(__file__).resolve().parent


class Readers:
    """The app's Reader, opened when first asked for (and retried while there is none)."""

    def __init__(self, url: str | None):
        self.url = url
        self._reader = None
        self._lock = threading.Lock()

    def __call__(self):
        from headrace.store import StoreMissing, open_reader
        from headrace.store.base import EmptyReader

        reader = self._reader
        if reader is not None and not isinstance(reader, EmptyReader):
            return reader
        with self._lock:
            try:
                self._reader = open_reader(self.url)
            except StoreMissing:
                self._reader = EmptyReader(self.url or "")
            return self._reader


def build(url: str | None, allowed_hosts: list[str] | None):
    require("starlette", "server", "headrace server")
    require("jinja2", "server", "headrace server")
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from headrace.server import api, pages
    from headrace.server.security import Guard

    routes = [Route(path, view) for path, view, _ in api.ENDPOINTS] + [
        Route("/api/openapi.json", api.openapi),
        Route("/api/runs/{run}/logs.txt", pages.logs_file),
        Route("/", pages.runs_page),
        Route("/flows", pages.flows_page),
        Route("/schedules", pages.schedules_page),
        Route("/limits", pages.limits_page),
        Route("/runs/{run}", pages.run_page),
        Route("/runs/{run}/maps/{key}", pages.map_page),
        Route("/task-runs/{task_run}", pages.task_run_page),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def error(request, exc: HTTPException):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return pages.error_page(request, exc.status_code, exc.detail)

    app = Starlette(routes=routes, exception_handlers={HTTPException: error})
    app.state.reader = Readers(url)
    app.state.templates = pages.templates()
    return Guard(app, allowed_hosts)
