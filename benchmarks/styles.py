"""Function flows against graph flows, on one core: the same work written both ways.

    python benchmarks/styles.py          # run by `make bench` after overhead.py

(h) a trivial task mapped over 10,000 items then a reduce, on LocalExecutor and on
    ThreadExecutor(4): the function flow's time against the graph flow's
    (target: at most 1.2x);
(i) a three-step chained map over 5,000 items of 100 KB whose intermediates are
    not kept, then a reduce, on LocalExecutor: peak RSS (target: at most 1.5x);
(j) a trivial task mapped over 1,000,000 items then a reduce, on LocalExecutor:
    time and peak RSS (target: at most 1.3x each; and each style at most 8 s and
    250 MB).

Run history is on (SQLite in a fresh HEADRACE_HOME). Each figure is the median of
3 runs, each in a fresh interpreter; the two styles alternate, so both see the
same machine. The result replaces the section between the markers in RESULTS.md.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import replace_section

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- styles:begin -->", "<!-- styles:end -->"

SCRIPT = """
import json, resource, sys, time
from headrace import Flow, flow, task
from headrace.executors import LocalExecutor, ThreadExecutor

workload, style, n, executor = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
make_executor = LocalExecutor if executor == "local" else (lambda: ThreadExecutor(4))
SIZE = 100_000

@task
def inc(x):
    return x + 1

@task
def make(i):
    return b"\\x01" * SIZE  # written pages: RSS sees them (bytes(n) would be lazy zeros)

@task
def renew(blob):
    return bytes(reversed(blob))

@task
def length(blob):
    return len(blob)

@task
def total(xs):
    return sum(xs)

if workload == "map":
    expected = sum(range(1, n + 1))
    if style == "graph":
        with Flow("map") as graph:
            t = total(inc.map(list(range(n))))
        run = lambda: graph.run(executor=make_executor())[t].result()
    else:
        @flow(executor=make_executor())
        def mapped(n):
            return total(inc.map(range(n)))
        run = lambda: mapped(n)
else:
    expected = n * SIZE
    if style == "graph":
        with Flow("chain") as graph:
            t = total(length.map(renew.map(make.map(list(range(n))))))
        run = lambda: graph.run(executor=make_executor())[t].result()
    else:
        @flow(executor=make_executor())
        def chained(n):
            return total(length.map(renew.map(make.map(range(n)))))
        run = lambda: chained(n)

t0 = time.perf_counter()
assert run() == expected
seconds = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "rss_mb": rss}))
"""


def median_of_3(workload: str, n: int, executor: str) -> dict[str, dict]:
    """Per style: median seconds and peak RSS of 3 fresh processes, styles alternating."""
    runs: dict[str, list] = {"graph": [], "function": []}
    for _ in range(3):
        for style in runs:
            home = tempfile.mkdtemp(prefix="headrace-bench-")
            env = {
                **os.environ,
                "HEADRACE_HOME": home,
                "HEADRACE_LOGGING_LEVEL": "WARNING",
                "HEADRACE_PROGRESS": "off",
            }
            try:
                out = subprocess.run(
                    [sys.executable, "-c", SCRIPT, workload, style, str(n), executor],
                    env=env,
                    capture_output=True,
                    text=True,
                )
            finally:  # the history and the persisted results of a million task runs
                shutil.rmtree(home, ignore_errors=True)
            if out.returncode != 0:
                raise SystemExit(f"{workload} {style} failed:\n{out.stderr}")
            runs[style].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        style: {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "rss_mb": statistics.median(r["rss_mb"] for r in rs),
        }
        for style, rs in runs.items()
    }


def row(label: str, measured: dict, key: str, limit: float, unit: str) -> str:
    graph, function = measured["graph"][key], measured["function"][key]
    ratio = function / graph
    shown = (lambda v: f"{v:.2f} s") if unit == "s" else (lambda v: f"{v:,.0f} MB")
    verdict = "PASS" if ratio <= limit else "FAIL"
    return f"| {label} | {shown(graph)} | {shown(function)} | {ratio:.2f}× | ≤ {limit}× {verdict} |"


def absolute(label: str, measured: dict, key: str, limit: float, unit: str) -> str:
    """A target on each style's own figure, not their ratio."""
    graph, function = measured["graph"][key], measured["function"][key]
    shown = (lambda v: f"{v:.2f} s") if unit == "s" else (lambda v: f"{v:,.0f} MB")
    verdict = "PASS" if max(graph, function) <= limit else "FAIL"
    cap = f"{limit:g} s" if unit == "s" else f"{limit:,.0f} MB"
    return f"| {label} | {shown(graph)} | {shown(function)} | — | each ≤ {cap} {verdict} |"


def main() -> None:
    rows = []
    for executor, label in (("local", "LocalExecutor"), ("threads", "ThreadExecutor(4)")):
        measured = median_of_3("map", 10_000, executor)
        rows.append(
            row(f"(h) 10,000-item map + reduce, {label}, time", measured, "seconds", 1.2, "s")
        )
    chain = median_of_3("chain", 5_000, "local")
    rows.append(row("(i) 5,000 × 100 KB chained map, peak RSS", chain, "rss_mb", 1.5, "MB"))
    big = median_of_3("map", 1_000_000, "local")
    rows.append(row("(j) 1,000,000-item map + reduce, time", big, "seconds", 1.3, "s"))
    rows.append(row("(j) 1,000,000-item map + reduce, peak RSS", big, "rss_mb", 1.3, "MB"))
    rows.append(absolute("(j) the same, each style's time", big, "seconds", 8, "s"))
    rows.append(absolute("(j) the same, each style's peak RSS", big, "rss_mb", 250, "MB"))
    lines = [
        "## Function flows against graph flows (`benchmarks/styles.py`)",
        "",
        "History on, medians of 3 fresh processes per style, the styles alternating.",
        "",
        "| workload | graph flow | function flow | ratio | target |",
        "|---|---|---|---|---|",
        *rows,
    ]
    print(replace_section(RESULTS, BEGIN, END, lines))


if __name__ == "__main__":
    main()
