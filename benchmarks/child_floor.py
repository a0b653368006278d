"""The floor of a map child's work in plain Python, against which the engine's is read.

    python benchmarks/child_floor.py          # a few seconds; not run by `make bench`

A bare loop does, for each of 1,000,000 items, what a recorded map child must
at least do: call the function, pickle its result (persisted inline), append
the bytes to one buffer (its compact state), make its run id and name, base64
its result's reference, build its history row and queue it. Nothing is
written: the writer process does that beside the flow. The engine's figure
for the same child is (j) in RESULTS.md; docs/scale.md compares the two.
"""

from __future__ import annotations

import binascii
import pickle
import queue
import statistics
import time

N = 1_000_000


def inc(x):
    return x + 1


def one_pass() -> float:
    rows: queue.SimpleQueue = queue.SimpleQueue()
    data, starts, sizes = bytearray(), [], []
    parent = "abcdef0123456789abcdef0123456789-3"
    t0 = time.perf_counter()
    for i in range(N):
        value = pickle.dumps(inc(i), protocol=pickle.HIGHEST_PROTOCOL)
        starts.append(len(data))
        sizes.append(len(value))
        data += value
        run_id, name = f"{parent}.{i}", f"inc[{i}]"
        ref = "inline:pickle:" + binascii.b2a_base64(value, newline=False).decode()
        rows.put(("task_run", (run_id, "flow", "inc", name, "inc-1", i, parent, "[]", "[]",
                               "COMPLETED", "Completed", None, 1.0, 2.0, 1, None, ref)))  # fmt: skip
        if i % 5000 == 4999:  # the writer's thread takes a batch
            while not rows.empty():
                rows.get_nowait()
    return time.perf_counter() - t0


def main() -> None:
    seconds = statistics.median(one_pass() for _ in range(3))
    print(
        f"a map child's essential work, bare: {seconds / N * 1e6:.2f} µs ({seconds:.2f} s a million)"
    )


if __name__ == "__main__":
    main()
