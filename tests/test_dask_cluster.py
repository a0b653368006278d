"""DaskExecutor against a real `dask scheduler` and `dask worker` started as processes
(dask_processes.py). An unreachable scheduler and a result that cannot be pickled are
tested in faults/test_dask.py.
"""

import os
import sys
import time

import cloudpickle

from dask_processes import dask_cluster_fixture  # noqa: F401  (a fixture)
from headrace import Flow, task
from headrace.executors import DaskExecutor

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@task
def where(x):
    return os.getpid(), x * 2


@task
def total(pairs):
    return sum(v for _, v in pairs)


def test_runs_on_the_external_workers(dask_cluster):
    with Flow("remote") as flow:
        w = where.map(list(range(40)))
        t = total(w)
    state = flow.run(executor=DaskExecutor(address=dask_cluster), return_tasks=[w])
    assert state[t].result() == 2 * sum(range(40))
    pids = {pid for pid, _ in state[w].result()}
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2


def test_a_dying_worker_is_crashed_not_failed(dask_cluster):
    @task
    def die():
        os._exit(1)  # the worker process disappears mid-task

    with Flow("crash") as flow:
        d = die()
    started = time.monotonic()
    state = flow.run(executor=DaskExecutor(address=dask_cluster))
    assert time.monotonic() - started < 120
    assert state[d].name == "Crashed"
    assert state[d].is_failed() and state.is_failed()
    assert "executor failed" in state[d].message


def test_a_crashed_run_is_retried_per_its_retries(dask_cluster, tmp_path):
    marker = tmp_path / "died-once"

    @task(retries=1)
    def die_once():
        if not marker.exists():
            marker.write_text("x")
            os._exit(1)
        return "survived"

    with Flow("crash-retry") as flow:
        d = die_once()
    state = flow.run(executor=DaskExecutor(address=dask_cluster))
    assert state[d].result() == "survived"


class Tracked:
    """Notes, in a file, the pid of every process that unpickles it."""

    def __init__(self, log, value):
        self.log, self.value = str(log), value

    def __setstate__(self, state):
        self.__dict__.update(state)
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")


def test_intermediate_results_stay_on_the_workers(dask_cluster, tmp_path):
    log = tmp_path / "unpickled"

    @task
    def make(i):
        return Tracked(log, i)

    @task
    def grow(t):
        return Tracked(log, t.value * 10)

    @task
    def total(ts):
        return sum(t.value for t in ts)

    with Flow("locality") as flow:
        made = make.map([1, 2, 3])
        grown = grow.map(made)
        t = total(grown)
    state = flow.run(executor=DaskExecutor(address=dask_cluster))
    assert state[t].result() == 60
    pids = set(log.read_text().split()) if log.exists() else set()
    assert str(os.getpid()) not in pids  # no intermediate Tracked came back here
