"""How many rows a second the run history's writer takes, per backend.

    python benchmarks/store_rate.py              # SQLite; run by `make bench`
    python benchmarks/store_rate.py --postgres   # also a throwaway PostgreSQL 15 cluster

(s) 200,000 task runs handed to a Recorder as a run makes them (each with a
    persisted result's reference), then 200,000 log lines, then 200,000 children
    of a map as the engine's batches hand them over (`ChildRuns`), each timed from
    the first row to the flush that wrote the last; the size the task runs and log
    lines take in the database. Medians of 3, each in a fresh database. These are the figures
    docs/scale.md plans with.

The result replaces the section between the markers at the end of RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from caching import postgres_url
from harness import replace_section

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- store:begin -->", "<!-- store:end -->"
ROWS = 200_000


def once(url: str) -> dict:
    from headrace.engine.batch import CHILDREN
    from headrace.store import open_recorder
    from headrace.store.records import ChildRuns, FlowRun, LogRecord, TaskRun

    recorder = open_recorder(url)
    run_id = "bench-run"
    now = time.time()
    recorder.flow_run_started(FlowRun(run_id, "bench", "bench", "graph", {}, start_time=now))
    recorder.flush()
    t0 = time.perf_counter()
    for i in range(ROWS):
        recorder.task_run(TaskRun(
            f"{run_id}-0.{i}", run_id, "step", f"step[{i}]", "step-1", i, f"{run_id}-0",
            [f"{run_id}-1.{i}"], [], "COMPLETED", "Completed", None, now, now + 0.01, 1, None,
            "inline:pickle:gAVLAS4=",
        ))  # fmt: skip
    recorder.flush(timeout=600)
    tasks = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(ROWS):
        recorder.log(LogRecord(run_id, f"{run_id}-0.{i}", 20, now, "Task run 'step'",
                               f"line {i} of the benchmark"))  # fmt: skip
    recorder.flush(timeout=600)
    lines = time.perf_counter() - t0
    per_row = size(url)  # of the task runs and log lines
    t0 = time.perf_counter()
    for first in range(0, ROWS, CHILDREN):  # as the engine's batches hand them over
        runs = ChildRuns(run_id, "step", "step", "step-1", f"{run_id}-0", [f"{run_id}-1"], [],
                         "pickle", "Task run succeeded.")  # fmt: skip
        for i in range(first, min(first + CHILDREN, ROWS)):
            runs.add(i, now, now + 0.01, b"\x80\x05K\x01.")
        recorder.task_runs(runs)
    recorder.flush(timeout=600)
    children = time.perf_counter() - t0
    recorder.flow_run_ended(run_id, "COMPLETED", "Completed", None, time.time())
    recorder.flush()
    return {"tasks": ROWS / tasks, "logs": ROWS / lines, "children": ROWS / children,
            "bytes": per_row}  # fmt: skip


def size(url: str) -> float:
    """Bytes per row the two tables hold, indexes included."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        files = [path, Path(f"{path}-wal")]
        return sum(f.stat().st_size for f in files if f.exists()) / (2 * ROWS)
    import psycopg

    with psycopg.connect(url) as conn:
        total = conn.execute(
            "SELECT pg_total_relation_size('task_runs') + pg_total_relation_size('logs')"
        ).fetchone()[0]
    return total / (2 * ROWS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL 15")
    options = parser.parse_args()
    rows = []
    for backend in ["SQLite"] + (["PostgreSQL"] if options.postgres else []):
        found = []
        for _ in range(3):
            folder = tempfile.mkdtemp(prefix="headrace-store-bench-")
            os.environ["HEADRACE_HOME"] = folder
            stop = None
            try:
                if backend == "SQLite":
                    url = f"sqlite:///{folder}/headrace.db"
                else:
                    url, stop = postgres_url(folder)
                found.append(once(url))
            finally:
                if stop is not None:
                    subprocess.run(stop[0], **stop[1])
                shutil.rmtree(folder, ignore_errors=True)
        tasks = statistics.median(f["tasks"] for f in found)
        logs = statistics.median(f["logs"] for f in found)
        per_row = statistics.median(f["bytes"] for f in found)
        children = statistics.median(f["children"] for f in found)
        rows.append(
            f"| {backend} | {tasks:,.0f} task runs/s | {logs:,.0f} log lines/s "
            f"| {children:,.0f} map children/s "
            f"| {per_row:,.0f} B | {tasks * 86400 / 1e6:,.0f} million |"
        )
    lines = [
        "## The history's write rate (`benchmarks/store_rate.py`)",
        "",
        f"(s) {ROWS:,} task runs, then {ROWS:,} log lines, then {ROWS:,} children of a map "
        "handed over as the engine's batches do (`ChildRuns` of 512, one narrow row each), "
        "through one Recorder (batched transactions; on SQLite its writer process writes "
        "past the first 20,000 rows), medians of 3 fresh databases. Bytes per row: of the "
        "task runs and log lines.",
        "",
        "| store | task runs | log lines | map children, compact | bytes per row on disk "
        "| task runs a day at that rate |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    print(replace_section(RESULTS, BEGIN, END, lines))


if __name__ == "__main__":
    main()
