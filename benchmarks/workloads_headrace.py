"""headrace's side of the workloads, one function per measured run (see `_child.py`).

Each function builds its flow, runs it and checks the answer inside the timed
span: what a user waits for. Executors that own pools or clusters
(`ProcessExecutor`, `DaskExecutor`) are started before the clock with
`with executor:` and their start-up is returned separately as `startup`.
"""

from __future__ import annotations

import time

from _child import expected_map_reduce, main, make_blob, renew_blob

from headrace import Flow, Parameter, task, unmapped
from headrace.executors import LocalExecutor, ThreadExecutor


@task
def inc(x):
    return x + 1


@task
def total(xs):
    return sum(xs)


@task
def nap(i, seconds):
    time.sleep(seconds)
    return i


@task(tags=["tag"])
def tagged_nap(i, seconds):
    time.sleep(seconds)
    return i


@task
def make(i, size):
    return make_blob(size)


@task
def renew(blob):
    return renew_blob(blob)


@task
def length(blob):
    return len(blob)


@task
def total_length(blobs):
    return sum(len(b) for b in blobs)


def _executor(name: str, workers: int | None = None):
    if name == "LocalExecutor":
        return LocalExecutor()
    if name == "ThreadExecutor":
        return ThreadExecutor(workers)
    if name == "ProcessExecutor":
        from headrace.executors import ProcessExecutor

        return ProcessExecutor(workers)
    if name == "DaskExecutor":
        from headrace.executors import DaskExecutor

        return DaskExecutor()
    raise ValueError(f"unknown executor {name!r}")


def _started(name: str, workers: int | None = None):
    """The executor, started (outside any timed span), and how long starting took."""
    executor = _executor(name, workers)
    t0 = time.perf_counter()
    executor.start()
    return executor, time.perf_counter() - t0


def map_reduce(n: int, executor: str) -> dict:
    """(a) `inc` mapped over n items, then `total`."""
    items = list(range(n))
    ex, startup = _started(executor)
    try:
        t0 = time.perf_counter()
        with Flow("map-reduce") as flow:
            xs = Parameter("items")
            result = total(inc.map(xs))
        state = flow.run(parameters={"items": items}, executor=ex)
        value = state[result].result()
        seconds = time.perf_counter() - t0
    finally:
        ex.shutdown()
    return {"seconds": seconds, "check": value == expected_map_reduce(n), "startup": startup}


def chain(n: int, executor: str) -> dict:
    """(b) n dependent tasks: inc(inc(...inc(0))). Building the flow is timed too."""
    ex, startup = _started(executor)
    try:
        t0 = time.perf_counter()
        with Flow("chain") as flow:
            x = inc(0)
            for _ in range(n - 1):
                x = inc(x)
        state = flow.run(executor=ex)
        value = state[x].result()
        seconds = time.perf_counter() - t0
    finally:
        ex.shutdown()
    return {"seconds": seconds, "check": value == n, "startup": startup}


def sleepers(n: int, seconds: float, workers: int, throttle: int | None = None) -> dict:
    """(d) n tasks sleeping `seconds` on ThreadExecutor(workers), optionally throttled."""
    ex, startup = _started("ThreadExecutor", workers)
    step = tagged_nap if throttle else nap
    try:
        t0 = time.perf_counter()
        with Flow("sleepers") as flow:
            result = step.map(list(range(n)), seconds=unmapped(seconds))
        state = flow.run(executor=ex, throttle={"tag": throttle} if throttle else None)
        value = state[result].result()
        wall = time.perf_counter() - t0
    finally:
        ex.shutdown()
    return {"seconds": wall, "check": value == list(range(n)), "startup": startup}


def memory_map_reduce(n: int, size: int, executor: str) -> dict:
    """(e) n blobs of `size` bytes, reduced to their total length (all alive at the reduce)."""
    ex, startup = _started(executor)
    try:
        t0 = time.perf_counter()
        with Flow("blobs") as flow:
            result = total_length(make.map(list(range(n)), size=unmapped(size)))
        value = flow.run(executor=ex)[result].result()
        seconds = time.perf_counter() - t0
    finally:
        ex.shutdown()
    return {"seconds": seconds, "check": value == n * size, "startup": startup}


def memory_chain(n: int, size: int, executor: str) -> dict:
    """(e) make -> renew -> length chained element-wise, then a sum; blobs are not kept."""
    ex, startup = _started(executor)
    try:
        t0 = time.perf_counter()
        with Flow("blob-chain") as flow:
            blobs = make.map(list(range(n)), size=unmapped(size))
            result = total(length.map(renew.map(blobs)))
        value = flow.run(executor=ex)[result].result()
        seconds = time.perf_counter() - t0
    finally:
        ex.shutdown()
    return {"seconds": seconds, "check": value == n * size, "startup": startup}


if __name__ == "__main__":
    main(globals())
