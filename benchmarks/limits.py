"""Tag limits across processes: how fast a slot goes from one process to the next.

    python benchmarks/limits.py              # run by `make bench`, SQLite
    python benchmarks/limits.py --postgres   # also a throwaway PostgreSQL 15 cluster

Every process is `tests/limit_worker.py`: its task bodies log when they start
and end, under an flock, so the figures are what the bodies saw.

(t) hand-off: 2 processes, each calling a 5 ms task 150 times in a row, on a
    limit of 1: the time from a body's end to the next body's start in the
    other process (median, p95). Target: p95 ≤ 50 ms.
(u) throughput: 6 processes (graph and function flows), each mapping a 0.1 s
    task over 20 items, on a limit of 3: task runs started per second (the
    most is 30). Target: ≥ 25 tasks/s.
(v) a killed holder: a process holding all 3 slots is killed with SIGKILL
    while another waits; the time from the kill to the waiter's first body
    (3 trials, the worst). Target: ≤ 1 s.
(w) a map of trivial tasks under a limit of 3, in one process: 2,000 and
    20,000 items, per task (every slot taken and given back through the
    store). Target: flat, the 20,000-item map's per task ≤ 1.5× the 2,000's.

The result replaces the section between the markers at the end of RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from caching import postgres_url, sqlite_url
from harness import replace_section

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
WORKER = HERE.parent / "tests" / "limit_worker.py"
sys.path.insert(0, str(WORKER.parent))
from limit_worker import kill_uncounted  # noqa: E402  (the worker's, shared with its test)

BEGIN, END = "<!-- limits:begin -->", "<!-- limits:end -->"


def start(folder: Path, count: int, seconds: float, style: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(folder), str(count), str(seconds), style],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "HEADRACE_PROGRESS": "off", "HEADRACE_HISTORY": "on"},
    )  # fmt: skip


def events(folder: Path) -> list[tuple[str, float, int]]:
    path = folder / "events"
    lines = path.read_text().splitlines() if path.exists() else []
    return sorted((float(at), kind, int(pid)) for kind, at, pid in (line.split() for line in lines))


def finish(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read().decode()[-2000:]


def set_limit(url: str, slots: int) -> None:
    from headrace.store import open_limits

    store = open_limits(url)
    store.set("web", slots)
    store.close()


def hand_off(url: str, folder: Path) -> dict:
    set_limit(url, 1)
    finish([start(folder, 150, 0.005, "calls") for _ in range(2)])
    seen, gaps = events(folder), []
    for i, (at, kind, pid) in enumerate(seen):
        if kind == "end":
            following = next(e for e in seen[i + 1 :] + [(None, "start", pid)] if e[1] == "start")
            if following[0] is not None and following[2] != pid:
                gaps.append(following[0] - at)
    gaps.sort()
    assert int((folder / "peak").read_text()) == 1
    return {"n": len(gaps), "median": statistics.median(gaps) * 1e3,
            "p95": gaps[int(len(gaps) * 0.95)] * 1e3}  # fmt: skip


def throughput(url: str, folder: Path) -> dict:
    set_limit(url, 3)
    finish([start(folder, 20, 0.1, ("graph", "function")[i % 2]) for i in range(6)])
    starts = [at for at, kind, _ in events(folder) if kind == "start"]
    assert len(starts) == 120 and int((folder / "peak").read_text()) == 3
    return {"rate": (len(starts) - 1) / (starts[-1] - starts[0])}


def killed_holder(url: str, folder: Path) -> float:
    from headrace.store import open_limits

    set_limit(url, 3)
    store = open_limits(url)
    holder = start(folder, 3, 600, "graph")
    while len(events(folder)) < 3:
        time.sleep(0.01)
    waiter = start(folder, 2, 0.01, "calls")
    while [lim.waiting for lim in store.read()] != [1]:
        time.sleep(0.01)
    store.close()
    killed = kill_uncounted(folder, holder)
    finish([waiter])
    return (
        min(at for at, kind, pid in events(folder) if kind == "start" and pid == waiter.pid)
        - killed
    )


BIG_MAP = """
import sys, time
from headrace import Flow, task
@task(tags=["web"])
def tiny(i):
    return i
with Flow("big") as flow:
    tiny.map(list(range(int(sys.argv[1]))))
started = time.perf_counter()
assert flow.run().is_successful()
print(time.perf_counter() - started)
"""


def big_map(url: str) -> dict[int, float]:
    """µs per task of a limited map, each size in a fresh process."""
    set_limit(url, 3)
    per = {}
    for n in (2_000, 20_000):
        out = subprocess.run([sys.executable, "-c", BIG_MAP, str(n)], capture_output=True,
                             text=True, check=True, env={**os.environ, "HEADRACE_PROGRESS": "off"})  # fmt: skip
        per[n] = float(out.stdout.split()[-1]) / n * 1e6
    return per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL 15")
    options = parser.parse_args()
    rows = []
    for backend in ["SQLite"] + (["PostgreSQL"] if options.postgres else []):
        root = tempfile.mkdtemp(prefix="headrace-limits-bench-")
        os.environ["HEADRACE_HOME"] = root
        stop = None
        try:
            if backend == "SQLite":
                url = sqlite_url(root)
            else:
                url, stop = postgres_url(root)
            os.environ["HEADRACE_DATABASE_URL"] = url
            figures = {}
            for name, measure in (("hand_off", hand_off), ("throughput", throughput)):
                folder = Path(tempfile.mkdtemp(dir=root))
                figures[name] = measure(url, folder)
            kills = []
            for _ in range(3):
                kills.append(killed_holder(url, Path(tempfile.mkdtemp(dir=root))))
            figures["big_map"] = big_map(url)
        finally:
            os.environ.pop("HEADRACE_DATABASE_URL", None)
            if stop is not None:
                subprocess.run(stop[0], **stop[1])
            shutil.rmtree(root, ignore_errors=True)
        h, rate, worst = figures["hand_off"], figures["throughput"]["rate"], max(kills)
        small, big = figures["big_map"][2_000], figures["big_map"][20_000]
        rows.append(
            f"| {backend} | {h['median']:.1f} ms · p95 {h['p95']:.1f} ms ({h['n']} hand-offs) "
            f"{'PASS' if h['p95'] <= 50 else 'FAIL'} | {rate:.1f}/s "
            f"{'PASS' if rate >= 25 else 'FAIL'} | "
            f"{', '.join(f'{k:.2f}' for k in kills)} s {'PASS' if worst <= 1 else 'FAIL'} | "
            f"{small:.0f} / {big:.0f} µs {'PASS' if big <= 1.5 * small else 'FAIL'} |"
        )
    lines = [
        "## Tag limits across processes (`benchmarks/limits.py`)",
        "",
        "(t) a slot handed from one process to another on a limit of 1 (target: p95 ≤ 50 ms); "
        "(u) 0.1 s tasks from 6 processes on a limit of 3 (target: ≥ 25 task runs started "
        "per second, of at most 30); (v) from the SIGKILL of a process holding every slot "
        "to the first body of the process waiting (3 trials; target: ≤ 1 s); (w) a map of "
        "trivial tasks on a limit of 3 in one process, per task at 2,000 / 20,000 items "
        "(target: the second ≤ 1.5× the first). History on.",
        "",
        "| store | (t) hand-off | (u) 0.1 s tasks, limit 3 | (v) after a SIGKILL "
        "| (w) a limited map, per task |",
        "|---|---|---|---|---|",
        *rows,
    ]
    print(replace_section(RESULTS, BEGIN, END, lines))


if __name__ == "__main__":
    main()
