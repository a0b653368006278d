"""dask.distributed's side of the workloads (run in benchmarks/.peers/dask).

What a dask user writes: a `LocalCluster` (started before the clock; its
start-up is returned as `startup`), `client.map` for the map and
`client.submit(sum, futures)` for the reduce. The cluster is the one headrace's
`DaskExecutor` starts by default: one single-threaded worker process per core,
no dashboard, on 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from _child import expected_map_reduce, main, make_blob, renew_blob  # noqa: E402


def inc(x):
    return x + 1


def make(i, size):
    return make_blob(size)


def renew(blob):
    return renew_blob(blob)


def total_length(blobs):
    return sum(len(b) for b in blobs)


def _cluster(**options):
    from distributed import Client, LocalCluster

    settings = {
        "n_workers": os.cpu_count() or 1,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "host": "127.0.0.1",
    }
    settings.update(options)
    t0 = time.perf_counter()
    cluster = LocalCluster(**settings)
    client = Client(cluster)
    return cluster, client, time.perf_counter() - t0


def map_reduce(n: int) -> dict:
    items = list(range(n))
    cluster, client, startup = _cluster()
    try:
        t0 = time.perf_counter()
        futures = client.map(inc, items)
        value = client.submit(sum, futures).result()
        seconds = time.perf_counter() - t0
    finally:
        client.close()
        cluster.close()
    return {"seconds": seconds, "check": value == expected_map_reduce(n), "startup": startup}


def chain(n: int) -> dict:
    cluster, client, startup = _cluster()
    try:
        t0 = time.perf_counter()
        x = client.submit(inc, 0)
        for _ in range(n - 1):
            x = client.submit(inc, x)
        value = x.result()
        seconds = time.perf_counter() - t0
    finally:
        client.close()
        cluster.close()
    return {"seconds": seconds, "check": value == n, "startup": startup}


def sleepers(n: int, seconds: float, workers: int, throttle: int | None = None) -> dict:
    """One worker process with `workers` threads. The throttle is dask's own mechanism
    for it: the worker declares `throttle` units of a resource and each task needs one."""

    def nap(i):
        time.sleep(seconds)
        return i

    options = {"n_workers": 1, "threads_per_worker": workers}
    if throttle:
        options["resources"] = {"tag": throttle}
    cluster, client, startup = _cluster(**options)
    try:
        t0 = time.perf_counter()
        extra = {"resources": {"tag": 1}} if throttle else {}
        value = client.gather(client.map(nap, range(n), **extra))
        wall = time.perf_counter() - t0
    finally:
        client.close()
        cluster.close()
    return {"seconds": wall, "check": value == list(range(n)), "startup": startup}


def memory_map_reduce(n: int, size: int) -> dict:
    cluster, client, startup = _cluster()
    try:
        t0 = time.perf_counter()
        futures = client.map(make, range(n), size=size)
        value = client.submit(total_length, futures).result()
        seconds = time.perf_counter() - t0
    finally:
        client.close()
        cluster.close()
    return {"seconds": seconds, "check": value == n * size, "startup": startup}


def memory_chain(n: int, size: int) -> dict:
    """The intermediate futures are dropped at once, so dask may release each blob
    as soon as its successor has run."""
    cluster, client, startup = _cluster()
    try:
        t0 = time.perf_counter()
        blobs = client.map(make, range(n), size=size)
        blobs = client.map(renew, blobs)
        sizes = client.map(len, blobs)
        del blobs
        value = client.submit(sum, sizes).result()
        seconds = time.perf_counter() - t0
    finally:
        client.close()
        cluster.close()
    return {"seconds": seconds, "check": value == n * size, "startup": startup}


if __name__ == "__main__":
    main(globals())
