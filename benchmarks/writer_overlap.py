"""Does the history's writer run beside a busy flow, or after it?

    python benchmarks/writer_overlap.py          # about 20 s; not run by `make bench`

A pure-Python loop stands in for a flow's thread; a SQLite Recorder in a fresh
directory writes 300,000 task runs (as store_rate.py does). Each is timed alone,
then both at once in one process. If the writer's work ran outside the
interpreter lock, both at once would take as long as the longer one; if it all
needs the lock, as long as the two one after the other. Medians of 3, for each
writer: HEADRACE_HISTORY_WRITER=thread (the recorder's thread writes) and
=process (it hands the rows to a writer process).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time

ROWS = 300_000
SPINS = 40_000_000


def spin() -> float:
    t0 = time.perf_counter()
    x = 0
    for i in range(SPINS):
        x += i
    return time.perf_counter() - t0


def write() -> float:
    from headrace.store import open_recorder
    from headrace.store.records import FlowRun, TaskRun

    home = tempfile.mkdtemp(prefix="headrace-overlap-")
    try:
        recorder = open_recorder(f"sqlite:///{home}/history.db")
        run_id, now = "overlap-run", time.time()
        recorder.flow_run_started(FlowRun(run_id, "overlap", "overlap", "graph", {}))
        recorder.flush()
        t0 = time.perf_counter()
        for i in range(ROWS):
            recorder.task_run(TaskRun(
                f"{run_id}-1.{i}", run_id, "inc", f"inc[{i}]", "inc-1", i, f"{run_id}-1", [],
                [], "COMPLETED", "Completed", None, now, now, 1, None, "inline:pickle:gAVLAS4=",
            ))  # fmt: skip
        recorder.flush(timeout=600)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(home, ignore_errors=True)


def both() -> float:
    t0 = time.perf_counter()
    writer = threading.Thread(target=write)
    writer.start()
    spin()
    writer.join()
    return time.perf_counter() - t0


def main() -> None:
    for writer in ("thread", "process"):
        os.environ["HEADRACE_HISTORY_WRITER"] = writer
        runs: dict[str, list[float]] = {"spin": [], "write": [], "both": []}
        for _ in range(3):
            runs["spin"].append(spin())
            runs["write"].append(write())
            runs["both"].append(both())
        spun, wrote, together = (statistics.median(runs[k]) for k in ("spin", "write", "both"))
        overlap = (spun + wrote - together) / min(spun, wrote)
        print(f"HEADRACE_HISTORY_WRITER={writer}")
        print(f"  a busy thread alone:            {spun:.2f} s")
        print(f"  writing {ROWS:,} task runs alone: {wrote:.2f} s")
        print(f"  both at once:                   {together:.2f} s")
        print(f"  overlap: {overlap:.0%} of the shorter one ran beside the other (100%: all)")


if __name__ == "__main__":
    main()
