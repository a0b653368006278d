"""What a cache lookup costs with a million entries in the store, and a cached map per task.

    python benchmarks/caching.py              # run by `make bench`, SQLite
    python benchmarks/caching.py --postgres   # also a throwaway PostgreSQL 15 cluster

(l) 1,000,000 cache entries in a fresh store, then 2,000 lookups of tasks run
    through the engine's own path (`engine.caching.plan_cache` + `look_up`: the
    key made from the inputs, the entry read, its result read): the median and
    p95 of a hit, of a miss (no entry: the task's newest entry is read to say
    which input changed), and of the store's read of one entry alone;
(m) a 10,000-item map + reduce on LocalExecutor whose task has
    cache_policy=INPUTS: a first run (every child misses, claims its key,
    runs and writes its entry) and a second (every child hits), per task,
    against the same map uncached, in fresh interpreters (medians of 3).

The result replaces the section between the markers at the end of RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import replace_section

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- caching:begin -->", "<!-- caching:end -->"
ENTRIES = 1_000_000
LOOKUPS = 2_000
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def seed(url: str) -> None:
    """ENTRIES entries of one task with random keys, written in one transaction."""
    from headrace.store import open_cache

    store = open_cache(url)
    conn = store._connect()
    now = time.time()
    rows = (
        (hashlib.sha256(b"%d" % i).hexdigest(), "filler", "inline:pickle:gAVLAS4=",
         '{"input x": "00"}', "seeded", f"seeded-{i}", now - i, None)
        for i in range(ENTRIES)
    )  # fmt: skip
    if store.dialect.name == "sqlite":
        conn.executemany("INSERT INTO cache_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    else:
        with conn.cursor().copy("COPY cache_entries FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    conn.commit()
    conn.close()
    assert store.count() == ENTRIES


def lookups(url: str) -> dict:
    """Medians and p95 (µs) of hits, misses and bare reads, through the engine's path."""
    from headrace import task
    from headrace.cache import INPUTS
    from headrace.engine.caching import cache_store, plan_cache
    from headrace.engine.context import FlowRunContext
    from headrace.engine.logs import task_logger
    from headrace.engine.task_run import TaskSpec
    from headrace.states import Completed

    @task(cache_policy=INPUTS)
    def measured(x, label):
        return x

    spec = TaskSpec(measured)
    ctx = FlowRunContext("bench", "bench", "bench", {})
    ctx.cache_url = url
    logger = task_logger("measured")
    store = cache_store(url)
    plans = []
    for i in range(LOOKUPS):  # entries written through the engine: real keys and refs
        plan, _ = plan_cache(spec, {"x": i, "label": "bench"}, ctx, logger, f"run-{i}")
        plans.append(plan)
        plan.write(Completed("", measured.fn(i, "bench")))
    assert store.count() == ENTRIES + LOOKUPS
    hit, miss, read = [], [], []
    for i in range(LOOKUPS):
        t0 = time.perf_counter()
        plan, _ = plan_cache(spec, {"x": i, "label": "bench"}, ctx, logger, f"again-{i}")
        found = plan.look_up()
        hit.append(time.perf_counter() - t0)
        assert found is not None and found.result() == i
        t0 = time.perf_counter()
        plan, _ = plan_cache(spec, {"x": -1 - i, "label": "bench"}, ctx, logger, f"new-{i}")
        assert plan.look_up() is None and plan.why == "inputs changed: x"
        miss.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        store.get(plans[i].key)
        read.append(time.perf_counter() - t0)
    return {name: _summary(values) for name, values in
            (("hit", hit), ("miss", miss), ("read", read))}  # fmt: skip


def _summary(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {
        "median": statistics.median(ordered) * 1e6,
        "p95": ordered[int(len(ordered) * 0.95)] * 1e6,
    }


MAP = """
import json, sys, time
from headrace import Flow, task
from headrace.cache import INPUTS
cached = sys.argv[2] == "cached"
@task(cache_policy=INPUTS) if cached else task
def inc(x):
    return x + 1
@task
def total(xs):
    return sum(xs)
n = int(sys.argv[1])
with Flow("cached-map") as flow:
    result = total(inc.map(list(range(n))))
times = []
for _ in range(2 if cached else 1):
    t0 = time.perf_counter()
    state = flow.run()
    assert state[result].result() == n * (n + 1) // 2
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def cached_map(n: int) -> dict:
    """Seconds of the uncached map, and of the cached one's first and second runs."""
    runs = {"plain": [], "first": [], "second": []}
    for _ in range(3):
        for mode in ("plain", "cached"):
            home = tempfile.mkdtemp(prefix="headrace-bench-")
            env = {**os.environ, "HEADRACE_HOME": home, "HEADRACE_LOGGING_LEVEL": "WARNING",
                   "HEADRACE_PROGRESS": "off"}  # fmt: skip
            try:
                out = subprocess.run([sys.executable, "-c", MAP, str(n), mode], env=env,
                                     capture_output=True, text=True)  # fmt: skip
            finally:
                shutil.rmtree(home, ignore_errors=True)
            if out.returncode != 0:
                raise SystemExit(f"cached map failed:\n{out.stderr}")
            times = json.loads(out.stdout.strip().splitlines()[-1])
            if mode == "plain":
                runs["plain"].append(times[0])
            else:
                runs["first"].append(times[0])
                runs["second"].append(times[1])
    return {k: statistics.median(v) for k, v in runs.items()}


def sqlite_url(folder: str) -> str:
    return f"sqlite:///{folder}/headrace.db"


def postgres_url(folder: str) -> tuple[str, list]:
    """A throwaway cluster in `folder` (initdb + pg_ctl) and how to stop it."""
    import socket

    owner = {}
    if os.getuid() == 0:  # PostgreSQL refuses to run as root: run it as nobody
        import pwd

        nobody = pwd.getpwnam("nobody")
        owner = {"user": nobody.pw_uid, "group": nobody.pw_gid}
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    data = f"{folder}/data"
    run = {"capture_output": True, "check": True, "cwd": folder, **owner}
    subprocess.run([PG_BIN / "initdb", "-D", data, "-U", "headrace", "--auth=trust",
                    "--no-sync", "--no-instructions"], **run)  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder}"
    subprocess.run([PG_BIN / "pg_ctl", "-D", data, "-l", f"{folder}/log", "-w", "-o", options,
                    "start"], **run)  # fmt: skip
    subprocess.run([PG_BIN / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "headrace",
                    "bench"], **run)  # fmt: skip
    stop = [[PG_BIN / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], run]
    return f"postgresql://headrace@127.0.0.1:{port}/bench", stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL 15")
    options = parser.parse_args()
    backends = ["SQLite"] + (["PostgreSQL"] if options.postgres else [])
    rows = []
    for backend in backends:
        folder = tempfile.mkdtemp(prefix="headrace-cache-bench-")
        os.environ["HEADRACE_HOME"] = folder
        stop = None
        try:
            if backend == "SQLite":
                url = sqlite_url(folder)
            else:
                url, stop = postgres_url(folder)
            t0 = time.perf_counter()
            seed(url)
            seeded = time.perf_counter() - t0
            found = lookups(url)
        finally:
            if stop is not None:
                subprocess.run(stop[0], **stop[1])
            shutil.rmtree(folder, ignore_errors=True)
        ok = found["hit"]["median"] <= 1000
        rows.append(
            f"| {backend} | {ENTRIES + LOOKUPS:,} (seeded in {seeded:.1f} s) "
            f"| {found['hit']['median']:.0f} µs · p95 {found['hit']['p95']:.0f} µs "
            f"| {found['miss']['median']:.0f} µs · p95 {found['miss']['p95']:.0f} µs "
            f"| {found['read']['median']:.0f} µs | {'PASS' if ok else 'FAIL'} (≤ 1 ms) |"
        )
    n = 10_000
    mapped = cached_map(n)
    per = {k: v / n * 1e6 for k, v in mapped.items()}
    lines = [
        "## Caches (`benchmarks/caching.py`)",
        "",
        f"(l) {LOOKUPS:,} lookups through the engine's path (key from the inputs, entry, "
        "result) with a million entries in the store; target: a hit's median ≤ 1 ms.",
        "",
        "| store | entries | hit | miss (says which input changed) | read of one entry | target |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"(m) a {n:,}-item map + reduce, LocalExecutor, history on, medians of 3 fresh "
        "processes: the task uncached, and with cache_policy=INPUTS run twice.",
        "",
        "| run | seconds | per task | against uncached |",
        "|---|---|---|---|",
        f"| uncached | {mapped['plain']:.2f} s | {per['plain']:.1f} µs | |",
        f"| cached, first run (every child misses and writes its entry) "
        f"| {mapped['first']:.2f} s | {per['first']:.1f} µs "
        f"| {per['first'] - per['plain']:+.1f} µs |",
        f"| cached, second run (every child hits) | {mapped['second']:.2f} s "
        f"| {per['second']:.1f} µs | {per['second'] - per['plain']:+.1f} µs |",
    ]
    print(replace_section(RESULTS, BEGIN, END, lines))


if __name__ == "__main__":
    main()
