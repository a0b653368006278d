"""The parent side of a measurement: start fresh interpreters, time them, read their memory.

A `Case` is one cell of a table: a workload, a system (headrace, the bare pool,
a peer), a configuration (the executor) and a size. `measure(case)` runs it up
to `repeats` times, each in a new process, and keeps the median:

- kind "fn": the child runs one workload function (see `_child.py`) that times
  itself; the figure is the `seconds` it reports.
- kind "process": the child is `python -c CODE`, and the figure is the wall time
  from just before the process is started to just after it is reaped: what a
  user feels at the shell.

Memory is read from `os.wait4`, the kernel's `ru_maxrss` of that one child
(the same number `getrusage(RUSAGE_CHILDREN)` gives after a single child): the
peak resident set of the child or of the largest of its reaped descendants. For
systems that spread work over processes (Dask workers, Prefect's server) a
sampler also sums the resident sets of every process in the child's session
every 20 ms; that sum is the memory the machine had to find.

Every child starts its own session so that a run that times out is ended with
everything it started (its process group, by the child's id), and nothing it
left behind outlives its measurement.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from _child import MARKER

HERE = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Case:
    workload: str  # "a".."e", plus "c-server" for Prefect 3's server alone
    system: str  # "headrace", "bare", "dask", "prefect1", "prefect3"
    config: str  # the executor or variant, as shown in the table
    python: str
    size: int | None = None
    script: str | None = None  # a workloads module, relative to benchmarks/
    function: str | None = None
    kwargs: dict = field(default_factory=dict)
    code: str | None = None  # kind "process": the `python -c` program
    expect_stdout: str | None = None  # kind "process": its last line of output
    env: dict = field(default_factory=dict)
    fresh_home: str | None = None  # an env variable to point at a new temp dir per run
    sample_tree: bool = False
    repeats: int = 3
    note: str = ""

    @property
    def kind(self) -> str:
        return "process" if self.code is not None else "fn"

    @property
    def key(self) -> str:
        return f"{self.workload}|{self.system}|{self.config}|{self.size}"


def _session_rss(session: int) -> int:
    """Bytes resident in every process whose session id is `session`."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp session ... rss is field 24.
        rest = stat[stat.rfind(b")") + 2 :].split()
        if int(rest[3]) == session:
            total += int(rest[21]) * PAGE
    return total


class _TreeSampler(threading.Thread):
    def __init__(self, session: int, every: float = 0.02):
        super().__init__(daemon=True)
        self.session, self.every = session, every
        self.peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, _session_rss(self.session))
            self._halt.wait(self.every)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_once(case: Case, timeout: float) -> dict:
    """One fresh process. Returns a run record: figure, memory, or the error."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(case.env)
    home = None
    if case.fresh_home:
        home = tempfile.mkdtemp(prefix=f"bench-{case.system}-")
        env[case.fresh_home] = home
    if case.kind == "process":
        argv = [case.python, "-c", case.code]
    else:
        argv = [case.python, case.script, case.function, json.dumps(case.kwargs)]
    timed_out = threading.Event()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                argv, cwd=HERE, env=env, stdout=out, stderr=err, start_new_session=True
            )
            sampler = _TreeSampler(proc.pid) if case.sample_tree else None
            if sampler:
                sampler.start()

            def expire() -> None:
                timed_out.set()
                _kill_group(proc.pid)

            timer = threading.Timer(timeout, expire)
            timer.start()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            timer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
            tree_peak = sampler.stop() if sampler else None
            _kill_group(proc.pid)  # whatever the run left behind (servers, workers)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        finally:
            if home:
                shutil.rmtree(home, ignore_errors=True)
    record: dict = {
        "wall": wall,
        "maxrss": usage.ru_maxrss * 1024,
        "tree_peak": tree_peak,
        "returncode": proc.returncode,
    }
    if timed_out.is_set():
        record["error"] = f"timed out after {timeout:.0f} s"
        return record
    if case.kind == "process":
        last = stdout.strip().splitlines()[-1:] or [""]
        if proc.returncode != 0 or (case.expect_stdout and last[0] != case.expect_stdout):
            record["error"] = _why(proc.returncode, stderr) or f"printed {last[0]!r}"
            return record
        record["seconds"] = wall
        return record
    lines = [ln for ln in stdout.splitlines() if ln.startswith(MARKER)]
    if not lines:
        record["error"] = _why(proc.returncode, stderr) or "no result line"
        return record
    result = json.loads(lines[-1][len(MARKER) :])
    if "error" in result:
        record["error"] = result["error"]
        return record
    if result.get("check") is not True:
        record["error"] = f"wrong answer (check={result.get('check')!r})"
        return record
    record["seconds"] = result["seconds"]
    if result.get("startup") is not None:
        record["startup"] = result["startup"]
    return record


def _why(returncode: int, stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    tail = lines[-1].strip() if lines else ""
    return f"exit {returncode}: {tail[:300]}" if returncode else tail[:300]


def measure(case: Case, budget: float, timeout: float, log=print) -> dict:
    """Up to `case.repeats` runs; stop early once the runs so far took `budget` seconds.

    The record keeps every run, the medians, `n` (runs measured) and, on failure,
    `error` with the first run's reason.
    """
    runs: list[dict] = []
    spent = 0.0
    for _ in range(case.repeats):
        run = run_once(case, timeout)
        runs.append(run)
        spent += run["wall"]
        if "error" in run or spent >= budget:
            break
    record = {
        "workload": case.workload,
        "system": case.system,
        "config": case.config,
        "size": case.size,
        "kind": case.kind,
        "note": case.note,
        "runs": runs,
        "n": len(runs),
    }
    failed = [r for r in runs if "error" in r]
    if failed:
        record["error"] = failed[0]["error"]
    good = [r for r in runs if "error" not in r]
    if good and not failed:
        record["median"] = statistics.median(r["seconds"] for r in good)
        record["maxrss"] = statistics.median(r["maxrss"] for r in good)
        if all(r["tree_peak"] is not None for r in good):
            record["tree_peak"] = statistics.median(r["tree_peak"] for r in good)
        if all("startup" in r for r in good):
            record["startup"] = statistics.median(r["startup"] for r in good)
    log(_summary(record))
    return record


def _summary(record: dict) -> str:
    what = f"  {record['workload']:<8} {record['system']:<9} {record['config']:<28}"
    what += f" {record['size'] if record['size'] is not None else '':>7}"
    if "error" in record:
        return f"{what}  FAILED: {record['error']}"
    if "skipped" in record:
        return f"{what}  skipped: {record['skipped']}"
    extra = f"  rss {record['maxrss'] / 1e6:.0f} MB" if record["workload"].startswith("e") else ""
    return f"{what}  {record['median']:.3f} s (n={record['n']}){extra}"


def skipped(case: Case, why: str) -> dict:
    record = {
        "workload": case.workload,
        "system": case.system,
        "config": case.config,
        "size": case.size,
        "kind": case.kind,
        "note": case.note,
        "runs": [],
        "n": 0,
        "skipped": why,
    }
    return record


def measure_series(cases: list[Case], budget: float, timeout: float, limit: float, log=print):
    """Cases of one series in ascending size. A size is skipped when the one before it
    failed, or when its median scaled linearly to the next size passes `limit` seconds."""
    records = []
    previous = None
    for case in cases:
        if previous is not None and "median" not in previous:
            why = f"the {previous['size']:,}-item run did not finish"
            record = skipped(case, why)
            log(_summary(record))
        elif previous is not None and previous["median"] * case.size / previous["size"] > limit:
            projected = previous["median"] * case.size / previous["size"]
            why = (
                f"{previous['size']:,} items took {previous['median']:.1f} s, which scales to "
                f"~{projected / 60:.0f} min for {case.size:,} (> {limit / 60:.0f} min)"
            )
            record = skipped(case, why)
            log(_summary(record))
        else:
            record = measure(case, budget, timeout, log)
        records.append(record)
        previous = record
    return records


def replace_section(path, begin: str, end: str, lines: list[str]) -> str:
    """Put `lines` between the markers `begin` and `end` in the file at `path`
    (appending them, with the markers, when the file has none); return the section."""
    section = "\n".join([begin, *lines, end])
    text = path.read_text() if path.exists() else ""
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    return section
