"""The JSON API: everything a page shows, read through the Reader.

GET /api/runs                       flow runs, newest first. ?flow= ?state= ?q= (in
                                    the run's or the flow's name) ?since= (epoch s)
                                    ?limit= (≤ 500) ?cursor= (the `next` of the page
                                    before: keyset paging, never OFFSET)
GET /api/runs/{id}                  one run (id, prefix or name), its subflows and the
                                    chain of runs it resumed
GET /api/runs/{id}/task-runs        its task runs, map children left out
GET /api/runs/{id}/maps             per mapped task: children counted by state, span
GET /api/runs/{id}/maps/{key}       one map's children by index. ?after= ?limit= ?state=
GET /api/runs/{id}/edges            recorded dependency edges between task runs
GET /api/runs/{id}/logs             log lines. ?after= (a line id) ?limit= ?level=
                                    ?task_run= ?q= (text, on the server)
GET /api/task-runs/{id}             one task run: its states, its result's location
                                    and cache key
GET /api/schedules                  the schedules servers registered: when, policies,
                                    parameters, the next run, the latest runs scheduled
GET /api/limits                     the tag limits: slots, the task runs holding them
                                    (flow run, process, since when), how many wait
GET /api/openapi.json               this, as OpenAPI
"""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

RUNS_PAGE, RUNS_LIMIT = 50, 500
LOGS_PAGE, LOGS_LIMIT = 200, 5000
CHILDREN_PAGE, CHILDREN_LIMIT = 100, 1000
TASKS_PAGE, TASKS_LIMIT = 500, 5000
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def integer(request: Request, name: str, default: int, most: int | None = None) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(400, f"?{name}= must be a whole number, got {text!r}.") from None
    return min(value, most) if most is not None else value


def number(request: Request, name: str) -> float | None:
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise HTTPException(400, f"?{name}= must be a number, got {text!r}.") from None


def cursor_of(run) -> str:
    return f"{run.start_time!r}~{run.id}"


def parse_cursor(text: str | None) -> tuple[float, str] | None:
    if not text:
        return None
    start, sep, run_id = text.partition("~")
    try:
        return float(start), run_id
    except ValueError:
        raise HTTPException(
            400, "?cursor= is not one this API gave: use a page's `next`."
        ) from None


def level_of(text: str | None) -> int | None:
    if not text:
        return None
    if text.isdigit():
        return int(text)
    if text.lower() not in LEVELS:
        raise HTTPException(400, f"?level= is one of {', '.join(LEVELS)}, got {text!r}.")
    return LEVELS[text.lower()]


def run_dict(run) -> dict[str, Any]:
    values = run.to_dict()
    values["duration"] = (
        None if run.start_time is None or run.end_time is None else run.end_time - run.start_time
    )
    return values


def task_run_dict(task_run) -> dict[str, Any]:
    values = task_run.to_dict()
    values["result"] = result_summary(task_run.result_ref)
    values.pop("result_ref")
    return values


def result_summary(ref: str | None) -> dict[str, Any] | None:
    """Where a result is, never the value: the server does not unpickle what it reads."""
    if not ref:
        return None
    kind, _, rest = ref.partition(":")
    serializer, _, where = rest.partition(":")
    if kind == "inline":
        import base64

        data = base64.b64decode(where)
        preview = data.decode("utf-8", "replace")[:500] if serializer == "json" else None
        return {"kind": "inline", "serializer": serializer, "bytes": len(data),
                "preview": preview}  # fmt: skip
    return {"kind": "file", "serializer": serializer, "location": where, "preview": None}


def runs(request: Request) -> JSONResponse:
    """Flow runs, newest first, one page."""
    page, following = runs_page(request)
    return JSONResponse({"runs": [run_dict(r) for r in page], "next": following})


def runs_page(request: Request) -> tuple[list, str | None]:
    """The page of flow runs the request's filters and cursor ask for, and the next
    page's cursor (None on the last page)."""
    reader = request.app.state.reader()
    limit = max(1, integer(request, "limit", RUNS_PAGE, RUNS_LIMIT))
    params = request.query_params
    found = reader.flow_runs(
        flow_name=params.get("flow") or None,
        state=params.get("state") or None,
        limit=limit + 1,
        after_cursor=parse_cursor(params.get("cursor")),
        text=params.get("q") or None,
        since=number(request, "since"),
        before=number(request, "until"),
    )
    page = found[:limit]
    return page, cursor_of(page[-1]) if len(found) > limit else None


def find(request: Request):
    from headrace.store import StoreError

    try:
        return request.app.state.reader().flow_run(request.path_params["run"])
    except StoreError as exc:
        raise HTTPException(404, str(exc)) from None


def chain(reader, run) -> list[dict[str, str]]:
    """The runs `run` resumed, nearest first: id and name."""
    out, seen = [], {run.id}
    while run.resumed_from and run.resumed_from not in seen:
        seen.add(run.resumed_from)
        try:
            run = reader.flow_run(run.resumed_from)
        except Exception:
            out.append({"id": run.resumed_from, "name": None})
            break
        out.append({"id": run.id, "name": run.name})
    return out


def run(request: Request) -> JSONResponse:
    """One flow run, its subflows and its resume chain."""
    reader = request.app.state.reader()
    found = find(request)
    subflows = reader.flow_runs(parent_id=found.id, limit=None)
    return JSONResponse({
        **run_dict(found),
        "subflows": [run_dict(s) for s in subflows],
        "resume_chain": chain(reader, found),
    })  # fmt: skip


def task_runs(request: Request) -> JSONResponse:
    """A run's task runs in start order, map children left out (see /maps)."""
    reader = request.app.state.reader()
    found = find(request)
    limit = max(1, integer(request, "limit", TASKS_PAGE, TASKS_LIMIT))
    offset = max(0, integer(request, "offset", 0))
    state = (request.query_params.get("state") or "").lower()
    rows = reader.task_runs(found.id, children=False)
    if state:
        rows = [t for t in rows if state in (t.state_name.lower(), t.state_type.lower())]
    page = rows[offset : offset + limit]
    following = offset + limit if len(rows) > offset + limit else None
    return JSONResponse({"task_runs": [task_run_dict(t) for t in page], "next": following})


def maps(request: Request) -> JSONResponse:
    """Per mapped task: its children counted by state, first start, last end."""
    reader = request.app.state.reader()
    found = find(request)
    return JSONResponse({"maps": [g.to_dict() for g in reader.map_groups(found.id)]})


def children(request: Request) -> JSONResponse:
    """One map's children by index, a page at a time."""
    reader = request.app.state.reader()
    found = find(request)
    limit = max(1, integer(request, "limit", CHILDREN_PAGE, CHILDREN_LIMIT))
    rows = reader.map_children(
        found.id, request.path_params["key"], integer(request, "after", -1), limit + 1,
        request.query_params.get("state") or None,
    )  # fmt: skip
    page = rows[:limit]
    following = page[-1].map_index if len(rows) > limit else None
    return JSONResponse({"children": [task_run_dict(t) for t in page], "next": following})


def edges(request: Request) -> JSONResponse:
    """Recorded edges: [upstream task run id, downstream task run id]."""
    reader = request.app.state.reader()
    found = find(request)
    pairs = [[up, t.id] for t in reader.task_runs(found.id, children=False) for up in t.upstream]
    return JSONResponse({"edges": pairs})


def logs(request: Request) -> JSONResponse:
    """Log lines, oldest first, filtered on the server."""
    reader = request.app.state.reader()
    found = find(request)
    limit = max(1, integer(request, "limit", LOGS_PAGE, LOGS_LIMIT))
    params = request.query_params
    rows = reader.logs(
        found.id, integer(request, "after", 0), limit + 1, level_of(params.get("level")),
        params.get("task_run") or None, params.get("q") or None,
    )  # fmt: skip
    page = rows[:limit]
    lines = [{"id": i, **record.to_dict(), "level_name": logging.getLevelName(record.level)}
             for i, record in page]  # fmt: skip
    return JSONResponse({"logs": lines, "next": page[-1][0] if len(rows) > limit else None})


def flows(request: Request) -> JSONResponse:
    """Per flow: runs, success rate, median duration."""
    return JSONResponse({"flows": request.app.state.reader().flow_summaries()})


def schedules(request: Request) -> JSONResponse:
    """Schedules servers registered, with their next and latest scheduled runs."""
    from headrace.schedules import registered

    return JSONResponse({"schedules": registered(request.app.state.reader())})


def limits(request: Request) -> JSONResponse:
    """Tag limits, the task runs holding their slots, and how many wait."""
    return JSONResponse({"limits": [lim.as_json() for lim in request.app.state.reader().limits()]})


POLL_SECONDS = 0.5  # how often a live run's history is asked for news


async def events(request: Request):
    """Server-sent events while the run is Running: `change` when its state, task runs or
    log lines changed (at most every POLL_SECONDS), then `end` once it ended."""
    import asyncio

    from starlette.concurrency import run_in_threadpool
    from starlette.responses import StreamingResponse

    reader = request.app.state.reader()
    found = await run_in_threadpool(find, request)

    def look():
        now = reader.flow_run(found.id)
        return now.state_type, now.state_name, *reader.activity(found.id)

    async def stream():
        seen = None
        while not await request.is_disconnected():
            news = await run_in_threadpool(look)
            if news != seen:
                seen = news
                yield f"event: change\ndata: {json.dumps(list(news))}\n\n"
            if news[0] != "RUNNING":
                yield "event: end\ndata: {}\n\n"
                return
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-store"})  # fmt: skip


def task_run(request: Request) -> JSONResponse:
    """One task run: its fields, its states in order, where its result is."""
    reader = request.app.state.reader()
    found = reader.task_run(request.path_params["task_run"])
    if found is None:
        raise HTTPException(404, f"No task run has id {request.path_params['task_run']!r}.")
    states = [_state(s) for s in reader.states(found.id)]
    errors = reader.logs(found.flow_run_id, 0, 20, logging.ERROR, found.id)  # its traceback
    return JSONResponse({**task_run_dict(found), "states": states,
                         "errors": [record.message for _, record in errors]})  # fmt: skip


def _state(record) -> dict[str, Any]:
    return {"type": record.type, "name": record.name, "message": record.message,
            "time": record.time}  # fmt: skip


# (path, view, query parameters) of every endpoint, for the schema
ENDPOINTS = [
    ("/api/runs", runs, ["flow", "state", "q", "since", "until", "limit", "cursor"]),
    ("/api/runs/{run}", run, []),
    ("/api/runs/{run}/task-runs", task_runs, ["state", "limit", "offset"]),
    ("/api/runs/{run}/maps", maps, []),
    ("/api/runs/{run}/maps/{key}", children, ["after", "limit", "state"]),
    ("/api/runs/{run}/edges", edges, []),
    ("/api/runs/{run}/logs", logs, ["after", "limit", "level", "task_run", "q"]),
    ("/api/runs/{run}/events", events, []),
    ("/api/task-runs/{task_run}", task_run, []),
    ("/api/flows", flows, []),
    ("/api/schedules", schedules, []),
    ("/api/limits", limits, []),
]


def openapi(request: Request) -> JSONResponse:
    """This API as OpenAPI 3."""
    from headrace import __version__

    paths = {}
    for path, view, query in ENDPOINTS:
        names = [p[1:-1] for p in path.split("/") if p.startswith("{")]
        parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                      for n in names] + [
            {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
            for n in query
        ]  # fmt: skip
        paths[path] = {"get": {"summary": (view.__doc__ or "").strip().splitlines()[0],
                               "parameters": parameters,
                               "responses": {"200": {"description": "JSON"}}}}  # fmt: skip
    return JSONResponse({"openapi": "3.0.3", "info": {"title": "headrace", "version": __version__},
                         "paths": paths})  # fmt: skip
