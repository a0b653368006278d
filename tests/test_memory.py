"""Depth-first chained maps keep memory flat: intermediate results live only briefly.

`Big` objects count how many are alive. A three-step chained map over many
items whose intermediate results nobody keeps must never hold more than a
bound set by the executor's `max_in_flight`, not by the number of items.
"""

import threading

import pytest

from headrace import Flow, flow, task
from headrace.executors import LocalExecutor, ThreadExecutor


class Big:
    lock = threading.Lock()
    alive = 0
    peak = 0

    def __init__(self, n):
        self.n = n
        with Big.lock:
            Big.alive += 1
            Big.peak = max(Big.peak, Big.alive)

    def __del__(self):
        with Big.lock:
            Big.alive -= 1


@task
def load(i):
    return Big(i)


@task
def transform(big):
    return Big(big.n + 1)


@task
def size(big):
    return big.n


@task
def total(sizes):
    return sum(sizes)


@pytest.mark.parametrize("executor", [LocalExecutor(), ThreadExecutor(4)], ids=repr)
def test_chained_map_holds_a_bounded_number_of_intermediate_results(executor):
    items = list(range(2000))
    with Flow("chain") as flow:
        loaded = load.map(items)
        transformed = transform.map(loaded)
        sizes = size.map(transformed)
        t = total(sizes)
    Big.alive = Big.peak = 0
    state = flow.run(executor=executor)
    assert state[t].result() == sum(i + 1 for i in items)
    # Each unit in flight holds its input and output; a few more wait to be released.
    bound = 4 * executor.max_in_flight + 4
    assert Big.peak <= bound, f"{Big.peak} Big objects alive at once for {len(items)} items"
    assert Big.alive == 0


@pytest.mark.parametrize("executor", [LocalExecutor(), ThreadExecutor(4)], ids=repr)
def test_a_function_flows_chained_map_holds_as_few_as_a_graph_flows(executor):
    """The same bound in a function flow: futures nobody keeps hold nothing.

    A graph flow has all its nodes before it runs; a function flow adds `transform` only
    after `load.map` returns, and on a pool `load` runs meanwhile, its results held by
    the futures that still exist (as they must be). The gate opens once the chain is
    built, so the bound is about the chain, not about how long that moment lasts (with
    no gate, 584 once in about ten runs on ThreadExecutor(4), against 516)."""
    gate = threading.Event()

    @task
    def gated_load(i):
        gate.wait(10)
        return Big(i)

    @flow(executor=executor)
    def chain(n):
        sizes = size.map(transform.map(gated_load.map(range(n))))
        gate.set()
        return total(sizes)

    Big.alive = Big.peak = 0
    assert chain(2000) == sum(range(1, 2001))
    bound = 4 * executor.max_in_flight + 4
    assert Big.peak <= bound, f"{Big.peak} Big objects alive at once for 2000 items"
    assert Big.alive == 0


def test_a_function_flow_keeps_what_its_futures_still_reference():
    @flow
    def kept(n):
        loaded = load.map(range(n))  # referenced until the body returns
        return total(size.map(transform.map(loaded))), Big.alive

    Big.alive = Big.peak = 0
    assert kept(300) == (sum(range(1, 301)), 300)
    assert Big.alive == 0


def test_keeping_results_is_what_holds_them():
    """The contrast: return_tasks keeps every intermediate result alive, as asked."""
    items = list(range(300))
    with Flow("kept") as flow:
        loaded = load.map(items)
        sizes = size.map(transform.map(loaded))
        total(sizes)
    Big.alive = Big.peak = 0
    state = flow.run(return_tasks=[loaded])
    assert Big.peak >= len(items)
    assert len(state[loaded].result()) == len(items)
