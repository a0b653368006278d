"""A large run history for the UI benchmark: 100,000 flow runs, 1,000,000 task runs and
5,000,000 log lines in one SQLite file.

    python benchmarks/ui_history.py DIR    # writes DIR/headrace.db (about a minute)

Rows are written straight into headrace's schema (made by opening a recorder), in
one transaction per table. Three runs are there to be looked at:

    map-10k     a flow run with one mapped task of 10,000 children (one failed)
    graph-2k    a flow run of 2,000 distinct tasks, each waiting for up to two others
    logs-1m     a flow run with 1,000,000 log lines; 5 of them hold "needle-in-logs"

The other runs share the remaining task runs and lines, about 10 and 40 each.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from pathlib import Path

RUNS, TASK_RUNS, LOGS = 100_000, 1_000_000, 5_000_000
MAP, GRAPH, BIG_LOG = 10_000, 2_000, 1_000_000
FLOWS = ["xfiles", "etl-nightly", "report", "scrape", "train-model", "backfill"]
STATES = [("COMPLETED", "Completed")] * 17 + [("FAILED", "Failed"), ("CANCELLED", "Cancelled"),
                                              ("CRASHED", "Crashed")]  # fmt: skip


def make(folder: Path) -> Path:
    from headrace.store import open_recorder

    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "headrace.db"
    open_recorder(f"sqlite:///{db}").flush()  # the schema, as headrace makes it
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous = OFF")
    rng = random.Random(13)
    t0 = time.time() - RUNS * 60.0
    special = {"map-10k": 0, "graph-2k": 1, "logs-1m": 2}
    runs = []
    for i in range(RUNS):
        state = ("COMPLETED", "Completed") if i < 3 else rng.choice(STATES)
        start = t0 + i * 60.0
        name = next((k for k, v in special.items() if v == i), f"run-{i:06d}")
        runs.append((f"{i:08d}-0000-4000-8000-000000000000", name, rng.choice(FLOWS),
                     "graph", json.dumps({"n": i}), None, *state, None, start,
                     start + rng.uniform(0.5, 600), "LocalExecutor()", "bench", 1, start,
                     "[]", None, None))  # fmt: skip
    conn.executemany(f"INSERT INTO flow_runs VALUES ({', '.join('?' * len(runs[0]))})", runs)
    ids = [r[0] for r in runs]

    def task_rows():
        run = ids[special["map-10k"]]
        yield (f"{run}-0", run, "fetch", "fetch", "fetch-1", None, None, "[]", "[]", "MAPPED",
               "Mapped", None, None, t0 + 30, 1, None, None)  # fmt: skip
        for c in range(MAP):
            state = ("FAILED", "Failed") if c == 4242 else ("COMPLETED", "Completed")
            yield (f"{run}-0.{c}", run, "fetch", f"fetch[{c}]", "fetch-1", c, f"{run}-0", "[]",
                   "[]", *state, None, t0 + c * 0.001, t0 + c * 0.001 + 0.01, 1, None,
                   "inline:pickle:gAVLAS4=")  # fmt: skip
        run = ids[special["graph-2k"]]
        for k in range(GRAPH):
            ups = sorted({f"{run}-{rng.randrange(k)}" for _ in range(2)}) if k else []
            yield (f"{run}-{k}", run, f"step_{k}", f"step_{k}", f"step_{k}-1", None, None,
                   json.dumps(ups), "[]", "COMPLETED", "Completed", None, t0 + 60 + k * 0.01,
                   t0 + 60 + k * 0.01 + 0.005, 1, None, None)  # fmt: skip
        left = TASK_RUNS - MAP - 1 - GRAPH
        for n in range(left):
            run = ids[3 + n % (RUNS - 3)]
            yield (f"{run}-t{n}", run, "step", f"step-{n}", f"step-{n % 10}", None, None,
                   "[]", "[]", "COMPLETED", "Completed", None, t0, t0 + 0.1, 1, None, None)  # fmt: skip

    conn.executemany(f"INSERT INTO task_runs VALUES ({', '.join('?' * 17)})", task_rows())

    def log_rows():
        run = ids[special["logs-1m"]]
        for n in range(BIG_LOG):
            text = "needle-in-logs" if n % 200_000 == 199_999 else f"line {n} of the big run"
            yield (run, None, 20, t0 + n * 0.0001, "Flow run 'logs-1m'", text)
        for n in range(LOGS - BIG_LOG):
            run = ids[3 + n % (RUNS - 3)]
            yield (run, None, 20 if n % 9 else 30, t0, "Task run 'step'", f"step {n} done")

    conn.executemany("INSERT INTO logs (flow_run_id, task_run_id, level, time, logger, message) "
                     "VALUES (?, ?, ?, ?, ?, ?)", log_rows())  # fmt: skip
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    return db


if __name__ == "__main__":
    started = time.perf_counter()
    path = make(Path(sys.argv[1]))
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.0f} s"
    )
