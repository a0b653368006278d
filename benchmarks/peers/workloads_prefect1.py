"""Prefect 1.4.1's side of the workloads (run in benchmarks/.peers/prefect1).

Graph flows as in Prefect 1's docs: `with Flow(...)`, `task.map`, `flow.run`
with `LocalExecutor` (the default) or `LocalDaskExecutor` (dask's threaded
scheduler, no cluster). The harness sets PREFECT__LOGGING__LEVEL=WARNING so its
per-task INFO console lines are not part of what is timed.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from _child import expected_map_reduce, main, make_blob, renew_blob  # noqa: E402
from prefect import Flow, Parameter, task, unmapped  # noqa: E402
from prefect.executors import LocalDaskExecutor, LocalExecutor  # noqa: E402


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
    if name == "LocalDaskExecutor":
        return LocalDaskExecutor(scheduler="threads", num_workers=workers)
    raise ValueError(f"unknown executor {name!r}")


def _result(state, node):
    if not state.is_successful():
        raise RuntimeError(f"flow run failed: {state!r} {state.result[node]!r}")
    return state.result[node].result


def map_reduce(n: int, executor: str) -> dict:
    items = list(range(n))
    t0 = time.perf_counter()
    with Flow("map-reduce") as flow:
        xs = Parameter("items")
        result = total(inc.map(xs))
    state = flow.run(parameters={"items": items}, executor=_executor(executor))
    value = _result(state, result)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": value == expected_map_reduce(n)}


def chain(n: int, executor: str) -> dict:
    t0 = time.perf_counter()
    with Flow("chain") as flow:
        x = inc(0)
        for _ in range(n - 1):
            x = inc(x)
    state = flow.run(executor=_executor(executor))
    value = _result(state, x)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": value == n}


def sleepers(n: int, seconds: float, workers: int, throttle: int | None = None) -> dict:
    if throttle:
        raise NotImplementedError(
            "Prefect 1 enforces task tag concurrency limits only through Prefect Cloud / "
            "Server orchestration, not in a local flow.run()"
        )
    t0 = time.perf_counter()
    with Flow("sleepers") as flow:
        result = nap.map(list(range(n)), seconds=unmapped(seconds))
    state = flow.run(executor=_executor("LocalDaskExecutor", workers))
    value = _result(state, result)
    wall = time.perf_counter() - t0
    return {"seconds": wall, "check": value == list(range(n))}


def memory_map_reduce(n: int, size: int, executor: str) -> dict:
    t0 = time.perf_counter()
    with Flow("blobs") as flow:
        result = total_length(make.map(list(range(n)), size=unmapped(size)))
    value = _result(flow.run(executor=_executor(executor)), result)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": value == n * size}


def memory_chain(n: int, size: int, executor: str) -> dict:
    t0 = time.perf_counter()
    with Flow("blob-chain") as flow:
        blobs = make.map(list(range(n)), size=unmapped(size))
        result = total(length.map(renew.map(blobs)))
    value = _result(flow.run(executor=_executor(executor)), result)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": value == n * size}


if __name__ == "__main__":
    main(globals())
