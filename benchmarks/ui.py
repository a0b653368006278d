"""The web UI over a large history: API latency, and page timings in Chromium.

    python benchmarks/ui.py [--history DIR]   # run by `make bench`

A history of 100,000 flow runs, 1,000,000 task runs and 5,000,000 log lines is
made by `ui_history.py` (in a temporary folder unless --history names one that
has it), then `headrace server` is started on it as its own process. Measured:

(o) the runs-list API: p95 of 30 requests each for the first page, a page in
    the middle and the last page (keyset cursors), and for a flow, a state and
    a text filter; target ≤ 100 ms at any page;
(p) in Chromium (/usr/bin/chromium through Playwright): the runs page's first
    contentful paint (target ≤ 1 s); the page of a run with a 10,000-child map,
    its size (≤ 200 KB) and when it is interactive (≤ 1.5 s); the page of a run
    of 2,000 distinct tasks, when its graph is drawn (its load event, ≤ 2 s);
(q) a run with 1,000,000 log lines: the first page of lines (p95, ≤ 300 ms) and
    a text search over all of them (median, ≤ 1 s);
(r) a live run: a real flow run recording into the same history, its page open in
    Chromium; from its last task's end to the page showing the run Completed
    (median of 3, target ≤ 1 s).

The result replaces the section between the markers at the end of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from harness import replace_section

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- ui:begin -->", "<!-- ui:end -->"
CHROMIUM = "/usr/bin/chromium"
# When the page first painted content (ms), once the browser reports it.
PAINTED = """new Promise((done) => new PerformanceObserver((list) => {
  for (const entry of list.getEntries())
    if (entry.name === "first-contentful-paint") done(entry.startTime);
}).observe({type: "paint", buffered: true}))"""


def serve(home: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HEADRACE_HOME": str(home)}
    env.pop("HEADRACE_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "headrace.cli", "server", "--port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "/api/openapi.json", timeout=2).read()
            return process, base
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("headrace server did not start") from None
            time.sleep(0.1)


def fetch(url: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
    return time.perf_counter() - t0, body


def p95(url: str, n: int = 30) -> float:
    fetch(url)  # once to warm the page cache, as a server that has been up would be
    times = sorted(fetch(url)[0] for _ in range(n))
    return times[int(n * 0.95) - 1]


def api_latency(base: str) -> list[tuple[str, float]]:
    first = json.loads(fetch(base + "/api/runs")[1])
    runs = json.loads(fetch(base + "/api/runs?limit=500")[1])["runs"]
    middle = f"{runs[-1]['start_time'] - 50_000 * 60.0!r}~z"
    last = f"{runs[-1]['start_time'] - 99_940 * 60.0!r}~z"
    cases = [
        ("first page", "/api/runs"),
        ("second page", f"/api/runs?cursor={first['next']}"),
        ("a page in the middle (run 50,000)", f"/api/runs?cursor={middle}"),
        ("the last page", f"/api/runs?cursor={last}"),
        ("flow filter", "/api/runs?flow=report"),
        ("state filter (crashed, 5%)", "/api/runs?state=crashed"),
        ("text filter", "/api/runs?q=run-0777"),
    ]
    return [(label, p95(base + path)) for label, path in cases]


def browser_timings(base: str) -> dict:
    from playwright.sync_api import sync_playwright

    out: dict = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(bypass_csp=True)  # to read the page's timings

        def navigation(path: str, field: str) -> float:
            page = context.new_page()
            page.goto(base + path, wait_until="load")
            value = page.evaluate(f"performance.getEntriesByType('navigation')[0].{field}")
            page.close()
            return value / 1000

        def paint(path: str) -> float:
            page = context.new_page()
            page.goto(base + path, wait_until="load")
            value = page.evaluate(PAINTED)
            page.close()
            return value / 1000

        paint("/")  # the browser's own start-up is not the page's
        out["runs_paint"] = statistics.median(paint("/") for _ in range(5))
        out["map_interactive"] = statistics.median(
            navigation("/runs/map-10k", "domInteractive") for _ in range(5)
        )
        out["graph_drawn"] = statistics.median(
            navigation("/runs/graph-2k", "loadEventEnd") for _ in range(3)
        )
        out["live"] = statistics.median(live_latency(context, base) for _ in range(3))
        browser.close()
    out["map_bytes"] = len(fetch(base + "/runs/map-10k")[1])
    out["graph_bytes"] = len(fetch(base + "/runs/graph-2k")[1])
    return out


def live_latency(context, base: str) -> float:
    """Seconds from a running flow's last task ending to its page saying Completed."""
    import threading

    from headrace import flow, task
    from headrace.store import get_store

    gate, ended = threading.Event(), []

    @task
    def first():
        return 1

    @task
    def last(x):
        gate.wait(60)
        ended.append(time.perf_counter())
        return x

    @flow
    def followed():
        return last(first())

    runner = threading.Thread(target=followed, daemon=True)
    runner.start()
    page = context.new_page()
    while True:  # until its page shows it Running, with a task recorded
        get_store().flush()
        runs = json.loads(fetch(base + "/api/runs?q=followed&state=running")[1])["runs"]
        if runs:
            page.goto(f"{base}/runs/{runs[0]['id']}")
            if page.locator("body[data-events]").count():
                break
        time.sleep(0.05)
    gate.set()
    while "Completed" not in page.locator("h1").text_content():
        page.wait_for_timeout(5)
    seen = time.perf_counter()
    runner.join(10)
    page.close()
    return seen - ended[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=Path, help="a folder to keep the history in")
    options = parser.parse_args()
    home = options.history or Path(tempfile.mkdtemp(prefix="headrace-ui-bench-"))
    os.environ["HEADRACE_HOME"] = str(home)  # (r)'s flow runs record into the same history
    os.environ.pop("HEADRACE_DATABASE_URL", None)
    os.environ["HEADRACE_LOGGING_LEVEL"] = "WARNING"
    try:
        if not (home / "headrace.db").exists():
            from ui_history import make

            t0 = time.perf_counter()
            make(home)
            print(f"history made in {time.perf_counter() - t0:.0f} s")
        server, base = serve(home)
        try:
            listing = api_latency(base)
            logs_first = p95(base + "/api/runs/logs-1m/logs")
            search = statistics.median(
                fetch(base + "/api/runs/logs-1m/logs?q=needle-in-logs")[0] for _ in range(10)
            )
            found = json.loads(fetch(base + "/api/runs/logs-1m/logs?q=needle-in-logs")[1])
            assert len(found["logs"]) == 5
            shown = browser_timings(base) if shutil.which(CHROMIUM) else None
        finally:
            server.terminate()
            server.wait(10)
    finally:
        if options.history is None:
            shutil.rmtree(home, ignore_errors=True)

    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    worst = max(t for _, t in listing)
    lines = [
        "## The web UI (`benchmarks/ui.py`)",
        "",
        "A history of 100,000 flow runs, 1,000,000 task runs and 5,000,000 log lines "
        "(`benchmarks/ui_history.py`), served by `headrace server` in its own process.",
        "",
        "(o) the runs-list API, p95 of 30 requests; target ≤ 100 ms at any page.",
        "",
        "| request | p95 |",
        "|---|---|",
        *[f"| {label} | {t * 1000:.0f} ms |" for label, t in listing],
        f"| **worst** | **{worst * 1000:.0f} ms: {mark(worst <= 0.1)}** |",
        "",
        "(p) in Chromium, medians.",
        "",
        "| page | measured | target |",
        "|---|---|---|",
    ]
    if shown is None:
        lines.append(f"| (not measured: no Chromium at {CHROMIUM}) | | |")
    else:
        lines += [
            f"| runs, first contentful paint | {shown['runs_paint'] * 1000:.0f} ms "
            f"| ≤ 1 s {mark(shown['runs_paint'] <= 1)} |",
            f"| run with a 10,000-child map: size | {shown['map_bytes'] / 1000:.1f} KB "
            f"| ≤ 200 KB {mark(shown['map_bytes'] <= 200_000)} |",
            f"| run with a 10,000-child map: interactive | {shown['map_interactive'] * 1000:.0f} ms "
            f"| ≤ 1.5 s {mark(shown['map_interactive'] <= 1.5)} |",
            f"| run of 2,000 distinct tasks: graph drawn (load event; page "
            f"{shown['graph_bytes'] / 1e6:.1f} MB) | {shown['graph_drawn'] * 1000:.0f} ms "
            f"| ≤ 2 s {mark(shown['graph_drawn'] <= 2)} |",
        ]
    lines += [
        "",
        "(q) a run with 1,000,000 log lines.",
        "",
        "| request | measured | target |",
        "|---|---|---|",
        f"| first page of lines, p95 | {logs_first * 1000:.0f} ms | ≤ 300 ms {mark(logs_first <= 0.3)} |",
        f"| text search over all of them, median | {search * 1000:.0f} ms | ≤ 1 s {mark(search <= 1)} |",
        "",
        "(r) a live run's page in Chromium, from its last task's end to the page showing it "
        "Completed (server-sent events), median of 3.",
        "",
        "| measured | target |",
        "|---|---|",
        f"| {shown['live'] * 1000:.0f} ms | ≤ 1 s {mark(shown['live'] <= 1)} |"
        if shown
        else "| (not measured: no Chromium) | |",
    ]
    print(replace_section(RESULTS, BEGIN, END, lines))


if __name__ == "__main__":
    main()
