"""The bare baseline: the same workloads in plain Python on `concurrent.futures`.

What a user writes without an orchestrator: one `ThreadPoolExecutor` with its
default size (the same default as headrace's `ThreadExecutor`), `submit` per
item, `result()` to collect. Standard library only, but for the engines under
`ProcessExecutor` and `DaskExecutor`, driven the same way: a bare
`ProcessPoolExecutor` and raw `client.submit` on the cluster `DaskExecutor`
starts by default (both started before the clock, as headrace's are).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from _child import expected_map_reduce, main, make_blob, renew_blob


def inc(x):
    return x + 1


def total(xs):
    return sum(xs)


def map_reduce(n: int) -> dict:
    """(a) inc over n items, then total, on one pool."""
    items = list(range(n))
    t0 = time.perf_counter()
    with ThreadPoolExecutor() as pool:
        futures = [pool.submit(inc, x) for x in items]
        value = pool.submit(total, [f.result() for f in futures]).result()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": value == expected_map_reduce(n)}


def process_map_reduce(n: int) -> dict:
    """(a) the same on a bare ProcessPoolExecutor of one worker per core."""
    items = list(range(n))
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        t0 = time.perf_counter()
        pool.submit(inc, 0).result()  # the workers are started, as headrace's are
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        futures = [pool.submit(inc, x) for x in items]
        value = pool.submit(total, [f.result() for f in futures]).result()
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": value == expected_map_reduce(n), "startup": startup}


def dask_map_reduce(n: int) -> dict:
    """(a) the same with raw `client.submit` per item on the LocalCluster DaskExecutor
    starts: one single-threaded worker process per core."""
    from distributed import Client, LocalCluster

    items = list(range(n))
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1,
                           processes=True, dashboard_address=None, host="127.0.0.1")  # fmt: skip
    client = Client(cluster)
    startup = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        futures = [client.submit(inc, x, pure=False) for x in items]
        value = client.submit(total, futures).result()
        seconds = time.perf_counter() - t0
    finally:
        client.close()
        cluster.close()
    return {"seconds": seconds, "check": value == expected_map_reduce(n), "startup": startup}


def chain(n: int) -> dict:
    """(b) n dependent submissions: each waits for the one before."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor() as pool:
        x = 0
        for _ in range(n):
            x = pool.submit(inc, x).result()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": x == n}


def sleepers(n: int, seconds: float, workers: int, throttle: int | None = None) -> dict:
    """(d) n sleeps on `workers` threads; a semaphore of `throttle` stands in for a tag limit."""
    gate = threading.Semaphore(throttle) if throttle else None

    def nap(i):
        if gate is None:
            time.sleep(seconds)
        else:
            with gate:
                time.sleep(seconds)
        return i

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        value = [f.result() for f in [pool.submit(nap, i) for i in range(n)]]
    wall = time.perf_counter() - t0
    return {"seconds": wall, "check": value == list(range(n))}


def memory_map_reduce(n: int, size: int) -> dict:
    """(e) n blobs kept as futures' results, then their total length."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor() as pool:
        futures = [pool.submit(make_blob, size) for _ in range(n)]
        value = sum(len(f.result()) for f in futures)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": value == n * size}


def memory_chain(n: int, size: int) -> dict:
    """(e) the three steps composed per item, the way plain Python keeps memory flat."""

    def item(i):
        blob = make_blob(size)
        blob = renew_blob(blob)
        return len(blob)

    t0 = time.perf_counter()
    with ThreadPoolExecutor() as pool:
        value = sum(f.result() for f in [pool.submit(item, i) for i in range(n)])
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": value == n * size}


if __name__ == "__main__":
    main(globals())
