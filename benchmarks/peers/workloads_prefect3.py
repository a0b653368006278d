"""Prefect 3.9.1's side of the workloads (run in benchmarks/.peers/prefect3).

Function flows as in Prefect 3's docs: `@flow`, `@task`, `task.map` on the
default `ThreadPoolTaskRunner`. With PREFECT_API_URL unset Prefect starts a
temporary API server on 127.0.0.1 in a subprocess; each measured function
first runs an empty flow (untimed) so that server's start-up, returned as
`startup`, is not counted as per-task time. The harness gives every run a
fresh PREFECT_HOME and sets PREFECT_LOGGING_LEVEL=WARNING.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from _child import expected_map_reduce, main, make_blob, renew_blob  # noqa: E402
from prefect import flow, task, unmapped  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402


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


@flow
def warm_up():
    return None


def _start_server() -> float:
    t0 = time.perf_counter()
    warm_up()
    return time.perf_counter() - t0


@flow
def map_reduce_flow(items):
    return total(inc.map(items))


def map_reduce(n: int) -> dict:
    items = list(range(n))
    startup = _start_server()
    t0 = time.perf_counter()
    value = map_reduce_flow(items)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": value == expected_map_reduce(n), "startup": startup}


@flow
def chain_flow(n):
    x = inc.submit(0)
    for _ in range(n - 1):
        x = inc.submit(x)
    return x.result()


def chain(n: int) -> dict:
    startup = _start_server()
    t0 = time.perf_counter()
    value = chain_flow(n)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": value == n, "startup": startup}


def sleepers(n: int, seconds: float, workers: int, throttle: int | None = None) -> dict:
    """On ThreadPoolTaskRunner(workers); the throttle is a tag concurrency limit that
    the temporary server holds (`prefect concurrency-limit create tag 3`)."""
    startup = _start_server()
    if throttle:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.create_concurrency_limit(tag="tag", concurrency_limit=throttle)
    step = tagged_nap if throttle else nap

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=workers))
    def sleepers_flow():
        return [f.result() for f in step.map(range(n), seconds=unmapped(seconds))]

    t0 = time.perf_counter()
    value = sleepers_flow()
    wall = time.perf_counter() - t0
    return {"seconds": wall, "check": value == list(range(n)), "startup": startup}


@flow
def blobs_flow(n, size):
    return total_length(make.map(range(n), size=unmapped(size)))


def memory_map_reduce(n: int, size: int) -> dict:
    startup = _start_server()
    t0 = time.perf_counter()
    value = blobs_flow(n, size)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": value == n * size, "startup": startup}


@flow
def blob_chain_flow(n, size):
    return total(length.map(renew.map(make.map(range(n), size=unmapped(size)))))


def memory_chain(n: int, size: int) -> dict:
    startup = _start_server()
    t0 = time.perf_counter()
    value = blob_chain_flow(n, size)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "check": value == n * size, "startup": startup}


def server_startup() -> dict:
    """The temporary server alone: start it, wait until it answers, stop it."""
    from prefect.server.api.server import SubprocessASGIServer

    t0 = time.perf_counter()
    server = SubprocessASGIServer()
    server.start()
    seconds = time.perf_counter() - t0
    server.stop()
    return {"seconds": seconds, "check": True}


if __name__ == "__main__":
    main(globals())
