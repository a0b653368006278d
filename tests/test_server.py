"""`headrace server`: the JSON API and the pages, served by a real uvicorn on 127.0.0.1,
read with urllib and with Debian's Chromium driven by Playwright.

The history is made by real flow runs whose names, parameters and log lines are
hostile: markup, script and control characters must reach the browser as text.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from cli_helpers import home_fixture, invoke  # noqa: F401  (a fixture)
from headrace import Flow, Parameter, flow, get_run_logger, task
from ui_helpers import free_port, serving

CHROMIUM = "/usr/bin/chromium"
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A history of real runs: 7 graph runs, a function flow with a map of 250 children
    (one failing) and hostile text, and a resume of it."""
    home = tmp_path_factory.mktemp("ui") / "home"
    patch = pytest.MonkeyPatch()
    patch.setenv("HEADRACE_HOME", str(home))
    patch.setenv("HEADRACE_PROGRESS", "off")
    patch.delenv("HEADRACE_DATABASE_URL", raising=False)
    try:

        @task
        def one(x):
            return x

        with Flow("plain") as plain:
            one(Parameter("x"))
        for i in range(7):
            plain.run(parameters={"x": i})

        broken = {7}

        @task
        def item(i):
            get_run_logger().info("<script>alert('x')</script> item %d \x1b[31mred", i)
            if i in broken:
                raise ValueError(f"bad <b>{i}</b>")
            return i

        @flow(flow_run_name=HOSTILE)
        def hostile(n: int, note: str):
            return [f.wait().name for f in item.map(range(n))]

        state = hostile(250, "</pre><script>alert(2)</script>", return_state=True)
        broken.clear()
        hostile.resume(state.flow_run_id)
        from headrace.store import get_store

        get_store().flush()
        yield home, state.flow_run_id
    finally:
        patch.undo()


@pytest.fixture(scope="module")
def server(history):
    """The base URL of a uvicorn serving the UI over `history`; stopped at the end."""
    from headrace.server import create_app
    from headrace.server.security import allowed_hosts_for

    home, _ = history
    port = free_port()
    app = create_app(f"sqlite:///{home / 'headrace.db'}", allowed_hosts_for("127.0.0.1", port))
    with serving(app, port) as base:
        yield base


def get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def api(server: str, path: str):
    status, _, body = get(server + path)
    assert status == 200, body
    return json.loads(body)


# -- the JSON API ----------------------------------------------------------------------------


def test_runs_are_paged_by_cursor_newest_first_without_gaps(server):
    every = api(server, "/api/runs?limit=500")["runs"]
    assert len(every) == 9
    seen, cursor = [], ""
    while True:
        page = api(server, f"/api/runs?limit=4&cursor={urllib.parse.quote(cursor)}")
        seen += [r["id"] for r in page["runs"]]
        if page["next"] is None:
            break
        cursor = page["next"]
    assert seen == [r["id"] for r in every]
    starts = [r["start_time"] for r in every]
    assert starts == sorted(starts, reverse=True)
    assert {r["flow_name"] for r in api(server, "/api/runs?flow=plain")["runs"]} == {"plain"}
    middle = every[4]["start_time"]
    window = api(server, f"/api/runs?since={every[6]['start_time']}&until={middle}")["runs"]
    assert [r["id"] for r in window] == [r["id"] for r in every[5:7]]
    assert len(api(server, "/api/runs?q=ONERROR")["runs"]) == 2
    assert [r["state_name"] for r in api(server, "/api/runs?q=onerror&state=failed")["runs"]] == [
        "Failed"
    ]


def test_a_run_its_map_children_and_its_resume_chain(server, history):
    _, first = history
    [resumed] = [r for r in api(server, "/api/runs?q=onerror")["runs"] if r["resumed_from"]]
    run = api(server, f"/api/runs/{resumed['id']}")
    assert run["name"] == HOSTILE and run["resume_chain"] == [{"id": first, "name": HOSTILE}]
    [group] = api(server, f"/api/runs/{first}/maps")["maps"]
    assert group["size"] == 250 and group["counts"] == {"Completed": 249, "Failed": 1}
    page = api(server, f"/api/runs/{first}/maps/{group['task_key']}?limit=100")
    assert [c["map_index"] for c in page["children"]] == list(range(100))
    rest = api(server, f"/api/runs/{first}/maps/{group['task_key']}?after={page['next']}&limit=500")
    assert [c["map_index"] for c in rest["children"]] == list(range(100, 250))
    assert rest["next"] is None
    failed = api(server, f"/api/runs/{first}/maps/{group['task_key']}?state=Failed")
    [bad] = failed["children"]
    assert bad["map_index"] == 7 and "bad <b>7</b>" in bad["state_message"]
    detail = api(server, f"/api/task-runs/{bad['id']}")
    assert [s["name"] for s in detail["states"]] == ["Running", "Failed"]
    assert "Traceback" in detail["errors"][0] and "bad <b>7</b>" in detail["errors"][0]
    good = api(server, f"/api/task-runs/{page['children'][0]['id']}")
    assert good["result"] == {"kind": "inline", "serializer": "pickle", "bytes": 5,
                              "preview": None}  # fmt: skip


def test_logs_are_filtered_and_paged_on_the_server(server, history):
    _, first = history
    lines = api(server, f"/api/runs/{first}/logs?q=item%2012%20&limit=5000")["logs"]
    assert [line["message"] for line in lines] == [
        "<script>alert('x')</script> item 12 \x1b[31mred"
    ]
    errors = api(server, f"/api/runs/{first}/logs?level=error&limit=5000")["logs"]
    assert errors and all(line["level"] >= 40 for line in errors)
    page = api(server, f"/api/runs/{first}/logs?limit=50")
    after = api(server, f"/api/runs/{first}/logs?limit=50&after={page['next']}")
    assert page["logs"][-1]["id"] < after["logs"][0]["id"]
    status, headers, body = get(f"{server}/api/runs/{first}/logs.txt?q=item%2012%20")
    assert status == 200 and headers["content-disposition"].startswith("attachment; filename=")
    assert '"' not in headers["content-disposition"].split("filename=")[1].strip('"')
    assert body.decode().count("\n") == 1 and "item 12" in body.decode()


def test_flows_are_summarised(server):
    flows = {f["flow_name"]: f for f in api(server, "/api/flows")["flows"]}
    assert flows["plain"]["runs"] == 7 and flows["plain"]["completed"] == 7
    assert flows["hostile"]["runs"] == 2 and flows["hostile"]["completed"] == 1
    assert flows["plain"]["median_duration"] > 0
    _, _, body = get(server + "/flows")
    assert "100%" in body.decode() and "50%" in body.decode()


def test_bad_input_gets_a_clear_error(server):
    status, _, body = get(f"{server}/api/runs?limit=ten")
    assert status == 400 and json.loads(body) == {
        "error": "?limit= must be a whole number, got 'ten'."
    }
    status, _, body = get(f"{server}/api/runs/no-such-run")
    assert status == 404 and "no-such-run" in json.loads(body)["error"]
    status, _, body = get(f"{server}/api/runs?cursor=garbage")
    assert status == 400 and "a page's `next`" in json.loads(body)["error"]
    status, _, body = get(f"{server}/runs/%3Cscript%3E")
    assert status == 404 and b"<script>" not in body and b"&lt;script&gt;" in body


def test_openapi_lists_every_endpoint(server):
    schema = api(server, "/api/openapi.json")
    assert schema["openapi"].startswith("3.")
    assert (
        "/api/runs/{run}/logs" in schema["paths"] and "/api/task-runs/{task_run}" in schema["paths"]
    )


def test_every_response_has_a_csp_and_a_foreign_host_is_refused(server):
    status, headers, _ = get(server + "/")
    assert status == 200
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    status, _, body = get(server + "/api/runs", {"Host": "attacker.example"})
    assert status == 421 and b"only the host it was started on" in body


def test_pages_escape_every_recorded_string(server, history):
    _, first = history
    for path in ("/", f"/runs/{first}", "/?q=onerror"):
        status, _, body = get(server + path)
        text = body.decode()
        assert status == 200
        assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
        assert "<script>alert" not in text
    _, _, body = get(f"{server}/runs/{first}?q=item%203%20")
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; item 3 \\x1b[31mred" in body.decode()
    assert "\x1b" not in body.decode()  # a control character is shown, never sent


# -- in a real browser --------------------------------------------------------------------------

SHOTS = os.environ.get("HEADRACE_UI_SCREENSHOTS")  # `make screenshots` sets it to docs/images


def shoot(page, name: str) -> None:
    """Save what the browser shows, for docs/ui.md, when asked to."""
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/ui-{name}.png", full_page=False)


@pytest.fixture(scope="module")
def browser():
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def test_the_browser_shows_hostile_text_as_text_and_runs_no_script(server, history, browser):
    _, first = history
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs, violations = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on(
        "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
    )
    page.goto(server + "/")
    shoot(page, "runs")
    links = page.locator("#runs a", has_text="onerror")
    assert links.count() == 2
    assert links.first.text_content() == HOSTILE
    links.last.click()
    page.wait_for_url(f"**/runs/{first}")
    assert page.locator("h1").text_content().startswith(HOSTILE)
    assert "250 children" in page.locator("#task-runs").text_content()
    assert page.locator("#graph .node").count() == 1 and page.locator("#timeline rect").count() == 2
    shoot(page, "run")
    page.fill("input[name=q]", "item 7 ")
    page.click("text=Search")
    logs = page.locator("#logs").text_content()
    assert "<script>alert('x')</script> item 7" in logs
    page.click("a.map")
    assert page.locator("#children tbody tr").count() == 100
    shoot(page, "map")
    page.click("a[rel=next]")
    assert page.locator("#children tbody tr").count() == 100
    assert dialogs == [] and violations == []
    page.close()


# -- the command --------------------------------------------------------------------------------


def test_a_port_in_use_is_one_line_naming_it(home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = invoke("server", "--port", str(port))
    assert said.exit_code == 1
    assert said.output == f"Error: Port {port} on 127.0.0.1 is in use; pass another with --port.\n"


def test_a_host_beyond_the_loopback_is_warned_of(home):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = invoke("server", "--host", "0.0.0.0", "--port", str(port))
    assert "The UI has no authentication" in said.output
    assert said.exit_code == 1  # the port was taken: it stops there


def test_a_running_run_s_page_follows_it_live(server, browser):
    gate = threading.Event()

    @task
    def quick():
        return 1

    @task
    def waits(x):
        assert gate.wait(30)
        return x

    @flow
    def live_run():
        return waits.submit(quick.submit()).result()  # futures: the edge is recorded

    runner = threading.Thread(target=live_run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 20
    while True:
        running = api(server, "/api/runs?q=live-run&state=running")["runs"]
        if running and api(server, f"/api/runs/{running[0]['id']}/task-runs")["task_runs"]:
            break
        assert time.monotonic() < deadline, "the run did not show as Running"
        time.sleep(0.05)
    page = browser.new_page()
    page.goto(f"{server}/runs/{running[0]['id']}")
    assert page.locator("body[data-events]").count() == 1
    assert "waits" not in page.locator("#task-runs").text_content()
    gate.set()
    deadline = time.monotonic() + 10  # (how fast: benchmarks/ui.py measures it)
    while "Completed" not in page.locator("h1").text_content():
        assert time.monotonic() < deadline, "the page did not follow the run to its end"
        page.wait_for_timeout(50)
    assert "waits" in page.locator("#task-runs").text_content()
    assert page.locator("#graph .node").count() == 2 and page.locator("#graph .edge").count() == 1
    run_id = running[0]["id"]
    assert [t["name"] for t in api(server, f"/api/runs/{run_id}/task-runs")["task_runs"]] == [
        "quick-0",
        "waits-0",
    ]
    page_one = api(server, f"/api/runs/{run_id}/task-runs?limit=1")
    assert [t["name"] for t in page_one["task_runs"]] == ["quick-0"] and page_one["next"] == 1
    assert api(server, f"/api/runs/{run_id}/task-runs?state=failed")["task_runs"] == []
    runner.join(10)
    page.close()


def test_the_ui_reads_a_postgresql_history(pg_url, monkeypatch):
    from headrace.server import create_app

    monkeypatch.setenv("HEADRACE_DATABASE_URL", pg_url)

    @task
    def one():
        return 1

    @flow
    def on_postgres():
        return one()

    state = on_postgres(return_state=True)
    from headrace.store import get_store

    get_store().flush()
    with serving(create_app(pg_url)) as base:
        [run] = api(base, "/api/runs")["runs"]
        assert run["id"] == state.flow_run_id and run["flow_name"] == "on-postgres"
        [task_run] = api(base, f"/api/runs/{run['id']}/task-runs")["task_runs"]
        assert task_run["state_name"] == "Completed"
        status, _, body = get(f"{base}/runs/{run['id']}")
        assert status == 200 and b"on-postgres" in body
