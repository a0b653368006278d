"""A process that runs COUNT tasks tagged "web", for test_tag_limits.py and benchmarks/limits.py.

    python tests/limit_worker.py DIR COUNT SECONDS [graph|function|calls] [THREADS]

`graph` and `function` map the task over COUNT items; `calls` calls it COUNT
times, one after another, so the process asks for one slot at a time.

Each task body, under an flock on DIR/lock, counts itself into DIR/running,
raises DIR/peak when it sees more running than ever before, and appends
"start TIME PID" to DIR/events; then sleeps SECONDS, and counts itself out
("end TIME PID"). The bodies count themselves, so what they see is what ran
at once, whatever headrace believes. The process writes DIR/ready-PID as it begins,
and exits 0 when its flow run completed.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

from headrace import Flow, flow, task, unmapped
from headrace.executors import ThreadExecutor

DIR = Path(sys.argv[1]) if __name__ == "__main__" else None


def counted(change: int) -> None:
    with open(DIR / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        running_file, peak_file = DIR / "running", DIR / "peak"
        running = int(running_file.read_text() or 0) if running_file.exists() else 0
        running += change
        running_file.write_text(str(running))
        peak = int(peak_file.read_text() or 0) if peak_file.exists() else 0
        if running > peak:
            peak_file.write_text(str(running))
        with open(DIR / "events", "a") as events:
            events.write(f"{'start' if change > 0 else 'end'} {time.time():.6f} {os.getpid()}\n")


def kill_uncounted(folder: Path, process) -> float:
    """SIGKILL `process`, the one whose bodies run, under the bodies' lock (none counts
    meanwhile), and take its bodies off the count: they died without counting out.
    Returns the time of the kill."""
    with open(folder / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        killed = time.time()
        process.kill()
        process.wait()
        (folder / "running").write_text("0")
    return killed


@task(tags=["web"])
def hit(i: int, seconds: float) -> int:
    counted(+1)
    try:
        time.sleep(seconds)
    finally:
        counted(-1)
    return i


def main() -> int:
    count, seconds = int(sys.argv[2]), float(sys.argv[3])
    style = sys.argv[4] if len(sys.argv) > 4 else "graph"
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    (DIR / f"ready-{os.getpid()}").touch()
    if style == "graph":
        with Flow("limited") as graph:
            hit.map(list(range(count)), seconds=unmapped(seconds))
        state = graph.run(executor=ThreadExecutor(threads))
    else:

        @flow(executor=ThreadExecutor(threads))
        def limited():
            if style == "calls":
                return [hit(i, seconds) for i in range(count)]
            return hit.map(range(count), seconds=unmapped(seconds)).wait()

        state = limited(return_state=True)
    return 0 if state.is_successful() else 1


if __name__ == "__main__":
    sys.exit(main())
