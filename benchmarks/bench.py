"""Run the benchmarks and write benchmarks/RESULTS.md.

    python benchmarks/bench.py            # `make bench`: headrace and the bare pool
    python benchmarks/bench.py --peers    # `make bench-peers`: the same, then every peer

The workloads, each a function in a workloads module and one table in RESULTS.md:

    (a) a trivial task mapped over 1,000 / 10,000 / 100,000 items, then a reduce;
        ProcessExecutor and DaskExecutor over 2,000 / 10,000, next to their bare
        engines driven the same way (ProcessPoolExecutor, raw client.submit)
    (b) a chain of 200 dependent tasks
    (c) the whole process: `python -c "import headrace; <two-task flow run>"`
    (d) 200 tasks sleeping 50 ms on 16 threads, then with throttle {"tag": 3}
    (e) peak RSS of a map over 10,000 items of 100 KB then a reduce, and of a
        three-step chained map over the same whose intermediates are not kept

Every figure is the median of up to 3 runs, each in a fresh interpreter (a case
stops repeating once its runs took `--budget` seconds; the tables show n).
`make bench` needs no peer: it re-reads the peers' figures from the last
`--peers` run (results/peers.json), whose own headrace figures give the ratios,
so every ratio compares figures measured in the same run.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from harness import Case, measure_series
from report import render

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PEERS = HERE / ".peers"

SIZES = (1_000, 10_000, 100_000)
POOL_SIZES = (2_000, 10_000)  # ProcessExecutor / DaskExecutor, and their bare engines
CHAIN = 200
SLEEPERS = {"n": 200, "seconds": 0.05, "workers": 16}
THROTTLE = 3
BLOBS = {"n": 10_000, "size": 100_000}

TWO_TASKS = {
    "headrace": """import headrace
from headrace import Flow, task
{imports}
@task
def one():
    return 1

@task
def plus_one(x):
    return x + 1

with Flow("two") as flow:
    b = plus_one(one())
print(flow.run({run_args})[b].result())
""",
    "bare": """from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor() as pool:
    print(pool.submit(lambda x: x + 1, pool.submit(lambda: 1).result()).result())
""",
    "python": "print(2)",
    "dask": """from distributed import Client, LocalCluster

def inc(x):
    return x + 1

with LocalCluster(n_workers={workers}, threads_per_worker=1, dashboard_address=None,
                  host="127.0.0.1") as cluster, Client(cluster) as client:
    print(client.submit(inc, client.submit(inc, 0)).result())
""",
    "prefect1": """from prefect import Flow, task

@task
def one():
    return 1

@task
def plus_one(x):
    return x + 1

with Flow("two") as flow:
    b = plus_one(one())
print(flow.run().result[b].result)
""",
    "prefect3": """from prefect import flow, task

@task
def one():
    return 1

@task
def plus_one(x):
    return x + 1

@flow
def two():
    return plus_one(one())

print(two())
""",
}

PEER_ENV = {
    "dask": {},
    "prefect1": {"PREFECT__LOGGING__LEVEL": "WARNING"},
    "prefect3": {
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    },
}
PEER_HOME = {"dask": None, "prefect1": "PREFECT__HOME_DIR", "prefect3": "PREFECT_HOME"}


HOME = "HEADRACE_HOME"  # each headrace run records into a new, empty home, removed after it


def headrace_cases(python: str) -> list[list[Case]]:
    """Series of cases (one series = one row of a table, sizes ascending)."""
    script = "workloads_headrace.py"

    def fn(workload, config, function, items=None, **kwargs):
        return Case(workload, "headrace", config, python, items, script, function, kwargs,
                    fresh_home=HOME)  # fmt: skip

    series: list[list[Case]] = []
    for ex in ("LocalExecutor", "ThreadExecutor"):
        series.append([fn("a", ex, "map_reduce", n, n=n, executor=ex) for n in SIZES])
    for ex in ("ProcessExecutor", "DaskExecutor"):
        series.append([fn("a", ex, "map_reduce", n, n=n, executor=ex) for n in POOL_SIZES])
    for ex in ("LocalExecutor", "ThreadExecutor"):
        series.append([fn("b", ex, "chain", CHAIN, n=CHAIN, executor=ex)])
    for ex, imports, run_args in (
        ("LocalExecutor", "", ""),
        (
            "ThreadExecutor",
            "from headrace.executors import ThreadExecutor",
            "executor=ThreadExecutor()",
        ),
    ):
        code = TWO_TASKS["headrace"].format(imports=imports, run_args=run_args)
        series.append(
            [Case("c", "headrace", ex, python, code=code, expect_stdout="2", fresh_home=HOME)]
        )
    workers = SLEEPERS["workers"]
    series.append([fn("d", f"ThreadExecutor({workers})", "sleepers", **SLEEPERS)])
    series.append(
        [
            fn(
                "d",
                f"ThreadExecutor({workers}) + throttle",
                "sleepers",
                **SLEEPERS,
                throttle=THROTTLE,
            )
        ]
    )
    for ex in ("LocalExecutor", "ThreadExecutor"):
        for function, workload in (("memory_map_reduce", "e"), ("memory_chain", "e-chain")):
            case = fn(workload, ex, function, BLOBS["n"], **BLOBS, executor=ex)
            case.sample_tree = True
            series.append([case])
    return series


def bare_cases(python: str) -> list[list[Case]]:
    script = "workloads_bare.py"
    label = "ThreadPoolExecutor()"

    def fn(workload, config, function, items=None, **kwargs):
        return Case(workload, "bare", config, python, items, script, function, kwargs)

    workers = SLEEPERS["workers"]
    cpus = os.cpu_count() or 1
    series = [
        [fn("a", label, "map_reduce", n, n=n) for n in SIZES],
        [fn("a", f"ProcessPoolExecutor({cpus})", "process_map_reduce", n, n=n) for n in POOL_SIZES],
        [
            fn(
                "a",
                f"client.submit, LocalCluster({cpus} procs x 1 thread)",
                "dask_map_reduce",
                n,
                n=n,
            )
            for n in POOL_SIZES
        ],
        [fn("b", label, "chain", CHAIN, n=CHAIN)],
        [Case("c", "bare", label, python, code=TWO_TASKS["bare"], expect_stdout="2")],
        [
            Case(
                "c",
                "python",
                "python -c 'print(2)' (interpreter alone)",
                python,
                code=TWO_TASKS["python"],
                expect_stdout="2",
            )
        ],
        [fn("d", f"ThreadPoolExecutor({workers})", "sleepers", **SLEEPERS)],
        [
            fn(
                "d",
                f"ThreadPoolExecutor({workers}) + Semaphore",
                "sleepers",
                **SLEEPERS,
                throttle=THROTTLE,
            )
        ],
    ]
    for function, workload in (("memory_map_reduce", "e"), ("memory_chain", "e-chain")):
        case = fn(workload, "ThreadPoolExecutor()", function, BLOBS["n"], **BLOBS)
        case.sample_tree = True
        series.append([case])
    return series


def peer_cases(name: str, python: str) -> list[list[Case]]:
    script = f"peers/workloads_{name}.py"
    env, home = PEER_ENV[name], PEER_HOME[name]
    multi = name in ("dask", "prefect3")  # work or a server in other processes

    def fn(workload, config, function, items=None, **kwargs):
        return Case(
            workload,
            name,
            config,
            python,
            items,
            script,
            function,
            kwargs,
            env=env,
            fresh_home=home,
            sample_tree=multi or workload.startswith("e"),
        )

    def proc(config, code):
        return Case(
            "c", name, config, python, code=code, expect_stdout="2", env=env, fresh_home=home
        )

    workers = SLEEPERS["workers"]
    cpus = os.cpu_count() or 1
    series: list[list[Case]] = []
    if name == "dask":
        cfg = f"LocalCluster({cpus} procs x 1 thread)"
        series.append([fn("a", cfg, "map_reduce", n, n=n) for n in SIZES])
        series.append([fn("b", cfg, "chain", CHAIN, n=CHAIN)])
        series.append([proc(cfg, TWO_TASKS["dask"].format(workers=cpus))])
        series.append(
            [fn("d", f"LocalCluster(1 proc x {workers} threads)", "sleepers", **SLEEPERS)]
        )
        series.append(
            [
                fn(
                    "d",
                    f"LocalCluster(1 proc x {workers} threads) + resources",
                    "sleepers",
                    **SLEEPERS,
                    throttle=THROTTLE,
                )
            ]
        )
        series.append([fn("e", cfg, "memory_map_reduce", BLOBS["n"], **BLOBS)])
        series.append([fn("e-chain", cfg, "memory_chain", BLOBS["n"], **BLOBS)])
    elif name == "prefect1":
        for ex in ("LocalExecutor", "LocalDaskExecutor"):
            series.append([fn("a", ex, "map_reduce", n, n=n, executor=ex) for n in SIZES])
        for ex in ("LocalExecutor", "LocalDaskExecutor"):
            series.append([fn("b", ex, "chain", CHAIN, n=CHAIN, executor=ex)])
        series.append([proc("LocalExecutor", TWO_TASKS["prefect1"])])
        series.append([fn("d", f"LocalDaskExecutor(threads, {workers})", "sleepers", **SLEEPERS)])
        series.append(
            [
                fn(
                    "d",
                    f"LocalDaskExecutor(threads, {workers}) + tag limit",
                    "sleepers",
                    **SLEEPERS,
                    throttle=THROTTLE,
                )
            ]
        )
        series.append(
            [
                fn(
                    "e",
                    "LocalExecutor",
                    "memory_map_reduce",
                    BLOBS["n"],
                    **BLOBS,
                    executor="LocalExecutor",
                )
            ]
        )
        series.append(
            [
                fn(
                    "e-chain",
                    "LocalExecutor",
                    "memory_chain",
                    BLOBS["n"],
                    **BLOBS,
                    executor="LocalExecutor",
                )
            ]
        )
    elif name == "prefect3":
        cfg = "ThreadPoolTaskRunner()"
        series.append([fn("a", cfg, "map_reduce", n, n=n) for n in SIZES])
        series.append([fn("b", cfg, "chain", CHAIN, n=CHAIN)])
        series.append([proc(f"{cfg}, temporary server", TWO_TASKS["prefect3"])])
        series.append([fn("c-server", "temporary server alone", "server_startup")])
        series.append([fn("d", f"ThreadPoolTaskRunner({workers})", "sleepers", **SLEEPERS)])
        series.append(
            [
                fn(
                    "d",
                    f"ThreadPoolTaskRunner({workers}) + tag limit",
                    "sleepers",
                    **SLEEPERS,
                    throttle=THROTTLE,
                )
            ]
        )
        series.append([fn("e", cfg, "memory_map_reduce", BLOBS["n"], **BLOBS)])
        series.append([fn("e-chain", cfg, "memory_chain", BLOBS["n"], **BLOBS)])
    return series


# -- the machine and the versions ------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return head + (" (src/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions(python: str, names: list[str]) -> dict:
    code = (
        "import importlib.metadata as m, json, platform\n"
        f"names = {names!r}\n"
        "out = {'python': platform.python_version()}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
        return json.loads(done.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def machine() -> dict:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "memory": _memory(),
        "os": platform.platform(),
        "git": _git(),
    }


# -- running -------------------------------------------------------------------------------------
def run_all(series: list[list[Case]], budget: float, timeout: float, limit: float) -> list:
    records = []
    for cases in series:
        records += measure_series(cases, budget, timeout, limit)
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", action="store_true", help="also run every installed peer")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="stop repeating a case once its runs took this many seconds "
        "(default 20; 120 for peers)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="end a run after this many seconds (default 60; 900 for peers)",
    )
    parser.add_argument("--only", help="run only workloads starting with these letters, e.g. 'ab'")
    args = parser.parse_args()
    python = sys.executable
    # Byte-compile headrace as an installed package is (an editable install under
    # PYTHONDONTWRITEBYTECODE would compile its modules inside every timed process).
    compileall.compile_dir(ROOT / "src", quiet=1)
    RESULTS.mkdir(exist_ok=True)
    started = time.perf_counter()

    own_budget = args.budget or 20.0
    print(f"headrace and the bare pool ({python})", flush=True)
    series = headrace_cases(python) + bare_cases(python)
    if args.only:
        series = [s for s in series if s[0].workload[0] in args.only]
    records = run_all(series, own_budget, timeout=args.timeout or 60.0, limit=600)
    info = machine()
    info["versions"] = {
        "headrace": versions(python, ["headrace", "cloudpickle", "dask", "distributed"])
    }
    settings = {
        "budget": own_budget,
        "timeout": args.timeout or 60.0,
        "peer_budget": args.budget or 120.0,
        "peer_timeout": args.timeout or 900.0,
    }
    bench = {"machine": info, "settings": settings, "records": records}
    (RESULTS / "bench.json").write_text(json.dumps(bench, indent=1))

    if args.peers:
        peers = {"machine": info, "settings": settings, "records": list(records), "status": {}}
        for name in ("dask", "prefect1", "prefect3"):
            status_file = PEERS / f"{name}.status"
            status = (
                status_file.read_text().strip()
                if status_file.exists()
                else ("failed: not set up (run benchmarks/peers/setup.sh)")
            )
            peers["status"][name] = status
            peer_python = PEERS / name / "bin" / "python"
            if not status.startswith("ok") or not peer_python.exists():
                print(f"{name}: not run: {status}", flush=True)
                continue
            print(f"{name} ({peer_python})", flush=True)
            packages = {
                "dask": ["dask", "distributed"],
                "prefect1": ["prefect", "dask"],
                "prefect3": ["prefect", "pydantic", "certifi"],
            }[name]
            peers["machine"]["versions"][name] = versions(str(peer_python), packages)
            peer_series = peer_cases(name, str(peer_python))
            if args.only:
                peer_series = [s for s in peer_series if s[0].workload[0] in args.only]
            peers["records"] += run_all(
                peer_series, args.budget or 120.0, timeout=args.timeout or 900.0, limit=600
            )
            (RESULTS / "peers.json").write_text(json.dumps(peers, indent=1))
        (RESULTS / "peers.json").write_text(json.dumps(peers, indent=1))

    peers_path = RESULTS / "peers.json"
    peers_data = json.loads(peers_path.read_text()) if peers_path.exists() else None
    text, verdicts = render(bench, peers_data)
    (HERE / "RESULTS.md").write_text(text)
    print()
    print(text)
    print(f"benchmarks took {time.perf_counter() - started:.0f} s; wrote {HERE / 'RESULTS.md'}")
    failed = [v for v in verdicts if not v]
    print(f"targets: {len(verdicts) - len(failed)} PASS, {len(failed)} FAIL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
