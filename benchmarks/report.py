"""Render RESULTS.md from the records of `bench.py` and check the targets.

`render(bench, peers)` takes the JSON of this run (headrace and the bare pool)
and, if present, the JSON of the last `--peers` run, and returns the Markdown
text and one bool per target (True = PASS). Ratios are always between figures
of one run: the first section divides this run's headrace figures by this
run's bare pool; the peers section divides that run's headrace figures by that
run's peers.
"""

from __future__ import annotations

import math

NAMES = {
    "headrace": "headrace",
    "bare": "bare pool",
    "python": "plain python",
    "dask": "dask.distributed",
    "prefect1": "Prefect 1.4.1",
    "prefect3": "Prefect 3.9.1",
}
SIZES = (1_000, 2_000, 10_000, 100_000)
SLEEP_N, SLEEP_S, SLEEP_WORKERS, THROTTLE = 200, 0.05, 16, 3
THROTTLE_TARGET = 3.4
RSS_TARGET = 300e6
CHAIN = 200


class Notes:
    """Numbered footnotes, one per distinct text."""

    def __init__(self):
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[^{self.texts.index(text) + 1}]"

    def render(self) -> list[str]:
        return [f"[^{i}]: {t}" for i, t in enumerate(self.texts, 1)]


def _find(records, workload, system, config=None, size=None):
    for r in records:
        if (
            r["workload"] == workload
            and r["system"] == system
            and (config is None or r["config"] == config)
            and (size is None or r["size"] == size)
        ):
            return r
    return None


def _rows(records, workloads) -> list[tuple[str, str]]:
    """(system, config) pairs of these workloads, in the order they were measured."""
    seen: list[tuple[str, str]] = []
    for r in records:
        if r["workload"] in workloads and (r["system"], r["config"]) not in seen:
            seen.append((r["system"], r["config"]))
    return seen


def _seconds(value: float) -> str:
    if value >= 100:
        return f"{value:.0f} s"
    if value >= 10:
        return f"{value:.1f} s"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value:.3f} s"


def _micro(value: float) -> str:
    us = value * 1e6
    return f"{us:,.0f} µs" if us >= 10 else f"{us:.1f} µs"


def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value / 1e6:,.0f} MB"


def _missing(record, notes: Notes) -> str | None:
    """The cell for a record without a figure (absent, skipped, failed), else None."""
    if record is None:
        return "—"
    if "skipped" in record:
        return "skipped" + notes.mark(f"Skipped: {record['skipped']}.")
    if "error" in record:
        what = f"{NAMES[record['system']]} {record['config']}"
        if record["error"].startswith("timed out after"):
            limit = record["error"].split()[3]
            return f"> {limit} s" + notes.mark(
                f"{what}: stopped after {limit} s, the time limit of one run in this run."
            )
        return "not run" + notes.mark(f"{what}: {record['error']}")
    return None


def _n(record) -> str:
    return "" if record["n"] >= 3 else f" (n={record['n']})"


def _time_cell(record, notes: Notes, per_item: int | None = None) -> str:
    missing = _missing(record, notes)
    if missing:
        return missing
    cell = _seconds(record["median"])
    if per_item:
        cell += f" · {_micro(record['median'] / per_item)}/task"
    return cell + _n(record)


def _ratio(a, b) -> str:
    """a ÷ b. Below 0.1 as 1/N (b is N times a); a run of `a` stopped at its time
    limit gives a lower bound."""
    if not a or not b or "median" not in b or b["median"] == 0:
        return "—"
    bound = ""
    if "median" in a:
        value = a["median"] / b["median"]
    elif a.get("error", "").startswith("timed out after"):
        value = float(a["error"].split()[3]) / b["median"]
        bound = "> "
    else:
        return "—"
    if value < 0.1:
        return f"{bound}1/{1 / value:,.0f}"
    return f"{bound}{value:.2f}×" if value < 10 else f"{bound}{value:,.0f}×"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _label(system: str, config: str) -> list[str]:
    return [NAMES.get(system, system), config]


# -- the workloads' tables -------------------------------------------------------------------
def table_a(records, notes: Notes, ratio_to: list[tuple[str, str]]) -> list[str]:
    sizes = [s for s in SIZES if any(r["workload"] == "a" and r["size"] == s for r in records)]
    rows = []
    has_startup = any(r["workload"] == "a" and "startup" in r for r in records)
    for system, config in _rows(records, {"a"}):
        row = _label(system, config)
        for size in sizes:
            row.append(_time_cell(_find(records, "a", system, config, size), notes, size))
        if has_startup:
            started = [
                r["startup"]
                for r in records
                if r["workload"] == "a"
                and (r["system"], r["config"]) == (system, config)
                and "startup" in r
            ]
            row.append(_seconds(max(started)) if started and max(started) > 0.01 else "—")
        rows.append(row)
    header = ["system", "executor"] + [f"{s:,} items" for s in sizes]
    if has_startup:
        header.append(
            "start-up, not timed"
            + notes.mark(
                "Pools and clusters are started before the clock (`with executor:` in headrace, "
                "`LocalCluster` in dask; Prefect 3's temporary server by a first, empty flow run); "
                "this column is how long that took (the largest of the sizes' medians)."
            )
        )
    lines = _table(header, rows)
    lines += [""] + ratio_lines(records, "a", sizes, ratio_to)
    return lines


def ratio_lines(records, workload, sizes, ratio_to) -> list[str]:
    """headrace ÷ each of `ratio_to`, per headrace row and size."""
    mine = [rc for rc in _rows(records, {workload}) if rc[0] == "headrace"]
    others = [rc for rc in ratio_to if _rows(records, {workload}).count(rc)]
    if not mine or not others:
        return []
    sized = sizes != [None]
    header = (
        ["headrace ÷ …"] + (["size"] if sized else []) + [f"{NAMES[s]}: {c}" for s, c in others]
    )
    rows = []
    for system, config in mine:
        for size in sizes:
            mine_r = _find(records, workload, system, config, size)
            if mine_r is None:
                continue
            cells = [
                _ratio(mine_r, _find(records, workload, s, c, size))
                if _throttled(c) == _throttled(config)
                else "·"
                for s, c in others
            ]
            rows.append([config] + ([f"{size:,}"] if sized else []) + cells)
    return [
        "Ratios, headrace's time ÷ the other's (below 1, or 1/N: headrace is faster):",
        "",
    ] + _table(header, rows)


def table_b(records, notes, ratio_to) -> list[str]:
    rows = []
    for system, config in _rows(records, {"b"}):
        r = _find(records, "b", system, config)
        rows.append(_label(system, config) + [_time_cell(r, notes, r["size"] if r else None)])
    lines = _table(["system", "executor", f"chain of {200} tasks"], rows)
    return lines + [""] + ratio_lines(records, "b", [None], ratio_to)


def table_c(records, notes, ratio_to) -> list[str]:
    rows = []
    for system, config in _rows(records, {"c", "c-server"}):
        r = _find(records, "c", system, config) or _find(records, "c-server", system, config)
        rows.append(_label(system, config) + [_time_cell(r, notes)])
    lines = _table(["system", "variant", "wall time of the whole process"], rows)
    return lines + [""] + ratio_lines(records, "c", [None], ratio_to)


def table_d(records, notes, ratio_to) -> list[str]:
    ideal_plain = math.ceil(SLEEP_N / SLEEP_WORKERS) * SLEEP_S
    ideal_throttled = math.ceil(SLEEP_N / THROTTLE) * SLEEP_S
    rows = []
    for system, config in _rows(records, {"d"}):
        r = _find(records, "d", system, config)
        throttled = _throttled(config)
        ideal = ideal_throttled if throttled else ideal_plain
        rows.append(_label(system, config) + [_time_cell(r, notes), _seconds(ideal)])
    lines = _table(
        ["system", "configuration", f"{SLEEP_N} × {SLEEP_S * 1000:.0f} ms", "ideal"], rows
    )
    return lines + [""] + ratio_lines(records, "d", [None], ratio_to)


def _throttled(config: str) -> bool:
    """(d) compares throttled runs only with throttled runs ("+ throttle", "+ tag limit")."""
    return "+" in config


def table_e(records, notes, ratio_to) -> list[str]:
    rows = []
    for system, config in _rows(records, {"e", "e-chain"}):
        row = _label(system, config)
        for workload in ("e", "e-chain"):
            r = _find(records, workload, system, config)
            missing = _missing(r, notes)
            if missing:
                run = r["runs"][0] if r and r.get("runs") else None
                if run and r["error"].startswith("timed out"):
                    # What the run had reached when it was stopped is still a lower bound.
                    tree = run.get("tree_peak")
                    row += [f"≥ {_mb(run['maxrss'])}", f"≥ {_mb(tree)}" if tree else "—", missing]
                else:
                    row += [missing, "", ""]
                continue
            row += [_mb(r["maxrss"]) + _n(r), _mb(r.get("tree_peak")), _seconds(r["median"])]
        rows.append(row)
    header = [
        "system",
        "executor",
        "map + reduce: peak RSS",
        "all its processes"
        + notes.mark(
            "The sum of the resident sets of every process of the run's session (workers, "
            "servers), sampled every 20 ms, so a peak shorter than that can be missed. "
            "'Peak RSS' is the kernel's exact ru_maxrss (os.wait4) of the largest process."
        ),
        "time",
        "3-step chained map: peak RSS",
        "all its processes",
        "time",
    ]
    return _table(header, rows) + [
        "",
        "The blobs are `b'\\x01' * 100_000`, not `bytes(100_000)`: CPython callocs the latter "
        "and the kernel maps untouched zero pages lazily, so 10,000 of them alive at once cost "
        "almost no RSS and the figure would measure the allocator's reuse of freed memory "
        "rather than the data kept alive. All 10,000 blobs alive at once are 1,000 MB.",
    ]


def targets(records) -> tuple[list[list[str]], list[bool]]:
    """The brief's targets, measured on headrace in this run."""
    rows, verdicts = [], []

    def check(name: str, measured: str, ok: bool | None) -> None:
        verdicts.append(bool(ok))
        rows.append([name, measured, "PASS" if ok else "FAIL"])

    def ratio(name, mine, floor, cap, per_task=None, key="median", unit=_seconds) -> None:
        """A target `mine ≤ cap × floor`, on two records of this run."""
        if not (mine and floor and key in mine and key in floor):
            check(name, "not measured", False)
            return
        times = mine[key] / floor[key]
        if per_task:
            measured = f"{_micro(mine[key] / per_task)} vs {_micro(floor[key] / per_task)} per task"
        else:
            measured = f"{unit(mine[key])} vs {unit(floor[key])}"
        check(name, f"{measured} = {times:.2f}×", times <= cap)

    thread_pool = "ThreadPoolExecutor()"
    for config, cap in (("LocalExecutor", 1.5), ("ThreadExecutor", 2)):
        for size in (10_000, 100_000):
            ratio(
                f"{size:,}-item map + reduce, {config}: ≤ {cap}× the bare thread pool",
                _find(records, "a", "headrace", config, size),
                _find(records, "a", "bare", thread_pool, size),
                cap,
                size,
            )
    for config, floor, what in (
        ("ProcessExecutor", "ProcessPoolExecutor", "a bare ProcessPoolExecutor"),
        ("DaskExecutor", "client.submit", "raw client.submit on the same cluster"),
    ):
        bare_config = next((c for s_, c in _rows(records, {"a"}) if c.startswith(floor)), None)
        for size in (2_000, 10_000):
            ratio(
                f"{size:,}-item map + reduce, {config}: ≤ 1.5× {what}",
                _find(records, "a", "headrace", config, size),
                _find(records, "a", "bare", bare_config, size),
                1.5,
                size,
            )
        if config == "DaskExecutor":
            ratio(
                "the same, 10,000 items: client peak RSS ≤ 1.5× raw dask's",
                _find(records, "a", "headrace", config, 10_000),
                _find(records, "a", "bare", bare_config, 10_000),
                1.5,
                key="maxrss",
                unit=_mb,
            )
    ratio(
        f"chain of {CHAIN} dependent tasks, LocalExecutor: ≤ 2× the bare thread pool",
        _find(records, "b", "headrace", "LocalExecutor"),
        _find(records, "b", "bare", thread_pool),
        2,
    )
    ratio(
        "whole process, import + two-task flow (LocalExecutor): ≤ 2.5× the bare pool's",
        _find(records, "c", "headrace", "LocalExecutor"),
        _find(records, "c", "bare", thread_pool),
        2.5,
    )
    big = _find(records, "a", "headrace", "LocalExecutor", 100_000)
    ok = big and "median" in big and big["median"] < 5
    check(
        "100,000-item map + reduce, LocalExecutor: < 5 s",
        _seconds(big["median"]) if big and "median" in big else "not measured",
        ok,
    )
    whole = _find(records, "c", "headrace", "LocalExecutor")
    ok = whole and "median" in whole and whole["median"] <= 0.5
    check(
        "whole process, import + two-task flow (LocalExecutor): ≤ 0.5 s",
        _seconds(whole["median"]) if whole and "median" in whole else "not measured",
        ok,
    )
    plain = _find(records, "d", "headrace", f"ThreadExecutor({SLEEP_WORKERS})")
    ok = plain and "median" in plain and plain["median"] <= 1.0
    check(
        f"{SLEEP_N} × 50 ms on ThreadExecutor({SLEEP_WORKERS}): ≤ 1.0 s",
        _seconds(plain["median"]) if plain and "median" in plain else "not measured",
        ok,
    )
    throttled = _find(records, "d", "headrace", f"ThreadExecutor({SLEEP_WORKERS}) + throttle")
    ok = (
        throttled
        and "median" in throttled
        and abs(throttled["median"] - THROTTLE_TARGET) <= 0.1 * THROTTLE_TARGET
    )
    check(
        f"the same with throttle={{'tag': {THROTTLE}}}: within 10% of {THROTTLE_TARGET} s",
        _seconds(throttled["median"]) if throttled and "median" in throttled else "not measured",
        ok,
    )
    for config in ("LocalExecutor", "ThreadExecutor"):
        r = _find(records, "e-chain", "headrace", config)
        ok = r and "maxrss" in r and "error" not in r and r["maxrss"] <= RSS_TARGET
        check(
            f"3-step chained map over 10,000 × 100 KB, {config}: peak RSS ≤ 300 MB",
            _mb(r["maxrss"]) if r and "maxrss" in r else "not measured",
            ok,
        )
    return rows, verdicts


def _machine_lines(info: dict) -> list[str]:
    lines = [
        f"- date: {info['date']}",
        f"- machine: {info['nproc']} CPUs (nproc), {info['cpu']}, {info['memory']} memory; "
        f"{info['os']}",
        f"- headrace at git {info['git']}",
    ]
    for system, v in info.get("versions", {}).items():
        packages = ", ".join(f"{k} {val}" for k, val in v.items() if k != "python" and val)
        lines.append(
            f"- {NAMES.get(system, system)} venv: Python {v.get('python', '?')}"
            + (f"; {packages}" if packages else "")
        )
    return lines


SECTIONS = [
    ("(a) A trivial task mapped over N items, then a reduce", table_a),
    ("(b) A chain of 200 dependent tasks (building the flow is timed too)", table_b),
    ("(c) The whole process: start Python, import, run a two-task flow, exit", table_c),
    (
        f"(d) {SLEEP_N} tasks sleeping 50 ms on {SLEEP_WORKERS} threads; then at most "
        f"{THROTTLE} at once",
        table_d,
    ),
    (
        "(e) Memory: a map over 10,000 items returning 100 KB each, reduced to their total "
        "length; then a 3-step chained map (make → renew → len → sum) whose blobs are not kept",
        table_e,
    ),
]


def _sections(records, notes, ratio_to) -> list[str]:
    out = []
    for title, fn in SECTIONS:
        letter = title[1]
        if any(r["workload"].startswith(letter) for r in records):
            out += [f"### {title}", ""] + fn(records, notes, ratio_to) + [""]
    return out


def render(bench: dict, peers: dict | None) -> tuple[str, list[bool]]:
    notes = Notes()
    records = bench["records"]
    settings = bench.get("settings", {})
    out = [
        "# Benchmarks",
        "",
        "Written by `benchmarks/bench.py` (`make bench`; `make bench-peers` adds the peers). "
        "Each figure is the median of 3 runs, each in a fresh Python process, unless a cell "
        "says n=1 or n=2: a case stops repeating once its runs took "
        f"{settings.get('budget', '?'):g} s ({settings.get('peer_budget', 120):g} s for peers), "
        f"and one run is stopped after {settings.get('timeout', '?'):g} s "
        f"({settings.get('peer_timeout', 900):g} s for peers). "
        "Workloads and how each system is driven: `benchmarks/workloads_*.py`, "
        "`benchmarks/peers/workloads_*.py`.",
        "",
        "## This run: headrace and a bare `concurrent.futures.ThreadPoolExecutor`",
        "",
    ]
    out += _machine_lines(bench["machine"]) + [""]
    rows, verdicts = targets(records)
    out += ["### Targets", ""] + _table(["target", "measured", "result"], rows) + [""]
    bare_rows = [rc for rc in _rows(records, {"a", "b", "c", "d"}) if rc[0] == "bare"]
    out += _sections(records, notes, bare_rows)

    out += ["## Peers", ""]
    if peers is None:
        out += [
            "No peer figures yet: `make bench-peers` runs them and this file picks up "
            "their last results (benchmarks/results/peers.json).",
            "",
        ]
    else:
        precords = peers["records"]
        out += [
            f"From the last `make bench-peers` run ({peers['machine']['date']}), which measured "
            "headrace again alongside the peers: every ratio below divides that run's headrace "
            "figure by that run's peer figure.",
            "",
        ]
        out += _machine_lines(peers["machine"]) + [""]
        out += ["How each peer was installed (benchmarks/peers/setup.sh):", ""]
        out += [f"- {NAMES[name]}: {status}" for name, status in peers["status"].items()]
        out += [""] + PEER_NOTES + [""]
        others = [
            rc
            for rc in _rows(precords, {"a", "b", "c", "d", "e", "e-chain"})
            if rc[0] not in ("headrace", "python")
        ]
        out += _sections(precords, notes, others)
    out += notes.render()
    return "\n".join(out) + "\n", verdicts


PEER_NOTES = [
    "- Every peer runs with its per-task INFO console logging off "
    "(PREFECT__LOGGING__LEVEL / PREFECT_LOGGING_LEVEL=WARNING), which only makes it faster.",
    "- Prefect 3.9.1 runs without PREFECT_API_URL, so it starts its temporary API server on "
    "127.0.0.1 (a subprocess) with a fresh PREFECT_HOME per run and analytics off; in (a), (b), "
    "(d) and (e) a first, empty flow run starts that server before the clock, and (c) shows "
    "both the whole process and the server's start-up alone.",
    "- Throttling in the peers: dask uses worker resources (`resources={'tag': 3}` on the "
    "worker, 1 per task); Prefect 3 a tag concurrency limit created on its server; Prefect 1 "
    "has tag limits only with Prefect Cloud/Server, so none locally. Prefect 3's server makes "
    "a task run that finds no free slot wait PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS "
    "(default 10 s) before it asks again; the default is what is measured.",
    "- Sizes whose smaller size's median scales linearly past 10 minutes are skipped.",
]
