"""The child side of a measurement: run one workload function, print one result line.

Every measured run is a fresh interpreter started by `harness.py` as

    python <workloads module file> <function name> '<json keyword arguments>'

The workload function does its own set-up, times only what the table reports
(`time.perf_counter`) and returns a dict with at least `seconds` and `check`
(a value the parent compares with the expected one, so a fast wrong answer
never counts). This module uses only the standard library because the peers'
virtualenvs import it too.
"""

from __future__ import annotations

import json
import resource
import sys
import traceback

MARKER = "BENCH-RESULT "


def main(namespace: dict) -> None:
    """Entry point of a workloads module: `main(globals())` under `if __name__ == "__main__"`."""
    name = sys.argv[1]
    kwargs = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    try:
        result = namespace[name](**kwargs)
    except BaseException as exc:  # the parent records why instead of a figure
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    # ru_maxrss is in KiB on Linux: the child's own view, next to the parent's wait4 figure.
    result["self_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.flush()
    print(MARKER + json.dumps(result, default=repr), flush=True)


def expected_map_reduce(n: int) -> int:
    """sum(x + 1 for x in range(n))."""
    return n * (n + 1) // 2


def make_blob(size: int) -> bytes:
    """A `size`-byte blob whose every page is resident.

    `bytes(size)` would be the obvious blob, but CPython allocates it with
    calloc, and the kernel maps fresh zero pages lazily: untouched, a million
    of them cost no RSS, and the memory figures would measure the allocator's
    reuse of freed chunks instead of the data that is alive.
    """
    return b"\x01" * size


def renew_blob(blob: bytes) -> bytes:
    """A new, fully written blob of the same length (the middle step of the chain)."""
    return b"\x02" * len(blob)
