"""The pages: server-rendered from the same Reader calls as the API, autoescaped.

/                       runs: filters, state colours, keyset pages; refreshed
                        by the script while runs are Running
/runs/{id}              a run: header, task runs (a map is one row with counts
                        per state, linked to its children), logs with search,
                        level filter and download
/runs/{id}/maps/{key}   one map's children, a page at a time
/task-runs/{id}         a task run: states with times, result location, cache
                        key, its log lines (a failure's traceback among them)
"""

from __future__ import annotations

import datetime
import json
import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, StreamingResponse

from headrace.server import api
from headrace.server.app import HERE
from headrace.text import safe


def templates():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every recorded string is hostile
        undefined=jinja2.StrictUndefined,
        # ... and shown with its control characters visible (an ESC as \x1b), lines kept
        finalize=_visible,
    )
    env.filters["time"] = _time
    env.filters["duration"] = _duration
    env.filters["json"] = lambda value: json.dumps(value, indent=1, sort_keys=True)
    return env


def _visible(value):
    """A recorded string with its control characters shown; markup made here as it is."""
    import markupsafe

    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return safe(value, lines=True)
    return value


def _time(epoch) -> str:
    if epoch is None:
        return "–"
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {seconds % 60:04.1f}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def render(request: Request, name: str, code: int = 200, **values) -> HTMLResponse:
    page = request.app.state.templates.get_template(name)
    return HTMLResponse(page.render(request=request, **values), status_code=code)


def error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    return render(request, "error.html", status, status=status, detail=detail)


def runs_page(request: Request) -> HTMLResponse:
    page, following = api.runs_page(request)
    params = request.query_params
    return render(
        request, "runs.html", runs=[api.run_dict(r) for r in page], next=following,
        filters={k: params.get(k, "") for k in ("flow", "state", "q")},
        live=any(r.is_running() for r in page),
    )  # fmt: skip


def flows_page(request: Request) -> HTMLResponse:
    return render(request, "flows.html", flows=request.app.state.reader().flow_summaries())


def schedules_page(request: Request) -> HTMLResponse:
    from headrace.schedules import registered

    return render(request, "schedules.html", schedules=registered(request.app.state.reader()))


def limits_page(request: Request) -> HTMLResponse:
    return render(request, "limits.html", limits=request.app.state.reader().limits())


def run_page(request: Request) -> HTMLResponse:
    reader = request.app.state.reader()
    found = api.find(request)
    params = request.query_params
    lines = reader.logs(
        found.id, api.integer(request, "after", 0), api.LOGS_PAGE + 1,
        api.level_of(params.get("level")), params.get("task_run") or None,
        params.get("q") or None,
    )  # fmt: skip
    from headrace.server.graph import layout, nodes_and_edges, timeline

    every = reader.task_runs(found.id)  # the children too: the graph folds them into maps
    nodes, edges = nodes_and_edges(every)
    width, height = layout(nodes, edges)
    lanes, origin, span = timeline(nodes)
    return render(
        request, "run.html", run=api.run_dict(found),
        graph={"nodes": nodes, "edges": edges, "width": width, "height": height},
        lanes=lanes, span=span,
        subflows=reader.flow_runs(parent_id=found.id, limit=None),
        chain=api.chain(reader, found),
        task_runs=[t for t in every if t.map_index is None],
        maps={g.task_key: g for g in reader.map_groups(found.id)},
        logs=lines[: api.LOGS_PAGE], more_logs=len(lines) > api.LOGS_PAGE,
        filters={k: params.get(k, "") for k in ("q", "level")},
        live=found.is_running(),
        events=f"/api/runs/{found.id}/events" if found.is_running() else None,
    )  # fmt: skip


def map_page(request: Request) -> HTMLResponse:
    reader = request.app.state.reader()
    found = api.find(request)
    key = request.path_params["key"]
    state = request.query_params.get("state") or None
    rows = reader.map_children(
        found.id, key, api.integer(request, "after", -1), api.CHILDREN_PAGE + 1, state
    )
    group = next((g for g in reader.map_groups(found.id) if g.task_key == key), None)
    if group is None:
        raise HTTPException(404, f"Run {found.name!r} has no mapped task with key {key!r}.")
    page = rows[: api.CHILDREN_PAGE]
    following = page[-1].map_index if len(rows) > api.CHILDREN_PAGE else None
    return render(request, "map.html", run=found, group=group, children=page,
                  next=following, state=state or "")  # fmt: skip


def task_run_page(request: Request) -> HTMLResponse:
    reader = request.app.state.reader()
    found = reader.task_run(request.path_params["task_run"])
    if found is None:
        raise HTTPException(404, f"No task run has id {request.path_params['task_run']!r}.")
    return render(
        request, "task_run.html", task_run=found, states=reader.states(found.id),
        result=api.result_summary(found.result_ref),
        logs=reader.logs(found.flow_run_id, 0, api.LOGS_LIMIT, None, found.id),
    )  # fmt: skip


def logs_file(request: Request) -> StreamingResponse:
    """A run's log lines (filtered as the page is) as a text file, read a page at a time."""
    reader = request.app.state.reader()
    found = api.find(request)
    params = request.query_params
    level, text = api.level_of(params.get("level")), params.get("q") or None

    def lines():
        import logging

        after = 0
        while True:
            page = reader.logs(found.id, after, api.LOGS_LIMIT, level, None, text)
            for _, record in page:
                stamp = datetime.datetime.fromtimestamp(record.time).isoformat(" ", "milliseconds")
                yield (f"{stamp} | {logging.getLevelName(record.level):<8} | {record.logger} - "
                       f"{record.message}\n").encode("utf-8", "backslashreplace")  # fmt: skip
            if len(page) < api.LOGS_LIMIT:
                return
            after = page[-1][0]

    name = re.sub(r"[^A-Za-z0-9._-]", "_", f"headrace-{found.name}-{found.id[:8]}.log")
    return StreamingResponse(lines(), media_type="text/plain; charset=utf-8",
                             headers={"content-disposition": f'attachment; filename="{name}"'})  # fmt: skip
