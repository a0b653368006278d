"""Where headrace's per-task time goes: cProfile one workload and print the top entries.

    .venv/bin/python benchmarks/profile_overhead.py map_reduce '{"n": 10000, "executor": "LocalExecutor"}'
    .venv/bin/python benchmarks/profile_overhead.py chain '{"n": 200, "executor": "LocalExecutor"}'
    HEADRACE_PROFILE_COLD=1 .venv/bin/python benchmarks/profile_overhead.py chain '{"n": 200, ...}'

Not part of `make bench` (a profiler slows what it watches); the percentages,
not the seconds, are what to read. With a thread or process executor only the
calling thread is profiled: the scheduler's loop, submission and callbacks,
not the task runs on the pool. By default the workload runs once unprofiled first,
so one-time costs (lazy imports on the first run) are left out; with
HEADRACE_PROFILE_COLD=1 they are in, as in the fresh processes of `make bench`.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import sys

import workloads_headrace


def main() -> None:
    name = sys.argv[1]
    kwargs = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    function = getattr(workloads_headrace, name)
    if not os.environ.get("HEADRACE_PROFILE_COLD"):
        function(**kwargs)  # warm: imports and first-use costs are not per-task costs
    profiler = cProfile.Profile()
    profiler.enable()
    result = function(**kwargs)
    profiler.disable()
    print(f"{name}({kwargs}) -> {result}")
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


if __name__ == "__main__":
    main()
