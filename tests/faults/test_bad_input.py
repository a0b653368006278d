"""Bad API input gets a clear error at the call that made it, naming the argument and
what is accepted."""

from __future__ import annotations

import pytest

from headrace import Flow, flow, task
from headrace.errors import MappingError
from headrace.executors import ThreadExecutor


@task
def ident(x):
    return x


def test_an_executor_that_is_not_one_is_refused_with_what_to_pass():
    with Flow("f") as graph:
        ident(1)
    with pytest.raises(
        TypeError, match=r"got executor='threads', which is not an executor.*ThreadExecutor\(\)"
    ):
        graph.run(executor="threads")
    with pytest.raises(TypeError, match=r"executor=<class .*ThreadExecutor'>.*ThreadExecutor\(\)"):
        flow(executor=ThreadExecutor)(lambda: 1)


def test_max_workers_must_be_an_int():
    with pytest.raises(
        TypeError, match=r"max_workers of ThreadExecutor must be an int >= 1.*'4' \(str\)"
    ):
        ThreadExecutor("4")


@pytest.mark.parametrize("make", [task, flow], ids=["task", "flow"])
def test_timeout_and_retries_must_be_numbers(make):
    with pytest.raises(TypeError, match=r"timeout must be seconds .* got '5' \(str\)"):
        make(timeout="5")(lambda: 1)
    with pytest.raises(ValueError, match="retries must be an int >= 0, got True"):
        make(retries=True)(lambda: 1)


def test_start_tasks_and_task_states_say_what_they_take():
    with Flow("f") as graph:
        one = ident(1)
    with pytest.raises(
        TypeError, match=r"start_tasks must be a list of tasks.*start_tasks=\[<Task"
    ):
        graph.run(start_tasks=one)
    with pytest.raises(
        TypeError, match=r"task_states maps <Task: ident-1> to 5, which is not a State"
    ):
        graph.run(task_states={one: 5})


def test_a_set_is_not_mapped():
    with pytest.raises(MappingError, match="a set has no order.*sorted"), Flow("f"):
        ident.map({3, 1, 2})

    @flow
    def maps_a_set():
        return ident.map({3, 1, 2}).result()

    with pytest.raises(MappingError, match="a set has no order.*sorted"):
        maps_a_set()
