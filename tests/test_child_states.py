"""A map's child states kept compactly: `ChildStates`, and the engine's use of it.

A plain finished child (Completed, the plain message, its own run id, its
result inline) is kept as its value and bytes, then as the bytes alone once
released; reading it gives back an equal State. Anything else stays a State.
"""

from __future__ import annotations

import tracemalloc

import pytest

from headrace import Flow, flow, task
from headrace.results.persist import persist
from headrace.states import (
    SUCCEEDED,
    Cached,
    ChildStates,
    Completed,
    Failed,
    MappedState,
    RemoteValue,
)


def finished(value, index, run_id="map-1", flow_run_id="flow-1", state=None):
    state = state or Completed(SUCCEEDED, value)
    state.ref = persist(value, None, None, f"{run_id}.{index}")
    state.flow_run_id, state.task_run_id = flow_run_id, f"{run_id}.{index}"
    return state


def fields(state):
    ref = state.ref
    return (
        state.type,
        state.name,
        state.message,
        state.flow_run_id,
        state.task_run_id,
        state.is_released(),
        ref.data if ref is not None else None,
        state.result(raise_on_failure=False),
    )


def test_a_plain_child_reads_back_equal_held_then_released():
    children = ChildStates(3, "inc", "map-1")
    original = finished([1, 2], 1)
    before = fields(original)
    children[1] = original
    children.compact(1)
    assert children.is_compact(1) and children[1] is not original  # no State kept
    assert fields(children[1]) == before
    assert children.value(1, None) is original._value  # the same object while held
    children.release(1)
    again = children[1]
    assert again.is_released() and again.result() == [1, 2]
    assert children.value(1, None) == [1, 2]
    assert children[0] is None and children[2] is None and len(children) == 3
    assert children[-2].task_run_id == "map-1.1"
    assert [s.task_run_id if s else None for s in children[0:2]] == [None, "map-1.1"]


class OnWorker(RemoteValue):
    def fetch(self):
        return "fetched"


@pytest.mark.parametrize(
    "make",
    [
        lambda: Failed("no", exception=ValueError("no")),
        lambda: Cached("from an entry", 1),
        lambda: Completed("a message of its own", 1),
        lambda: Completed(SUCCEEDED, OnWorker()),
    ],
    ids=["failed", "cached", "own message", "remote value"],
)
def test_a_child_that_carries_more_stays_its_state(make):
    children = ChildStates(1, "inc", "map-1")
    state = make()
    state.ref = persist(1, None, None, "k")
    state.flow_run_id, state.task_run_id = "flow-1", "map-1.0"
    children[0] = state
    children.compact(0)
    assert not children.is_compact(0) and children[0] is state


def test_a_child_without_an_inline_result_or_with_another_run_id_stays_its_state():
    children = ChildStates(2, "inc", "map-1")
    no_ref = Completed(SUCCEEDED, 1)
    no_ref.task_run_id = "map-1.0"
    children[0] = no_ref
    children.compact(0)
    moved = finished(1, 1, run_id="another")
    children[1] = moved
    children.compact(1)
    assert children[0] is no_ref and children[1] is moved


def test_a_mapped_state_counts_failures_without_making_states_again():
    children = ChildStates(3, "inc", "map-1")
    for i in range(3):
        children[i] = finished(i, i) if i != 1 else Failed("bad", exception=ValueError(i))
        children.compact(i)
    mapped = MappedState(children)
    assert mapped.is_failed() and mapped.message == "1 of 3 mapped runs failed."
    assert mapped.result(raise_on_failure=False)[::2] == [0, 2]


@task
def inc(x):
    return x + 1


@task
def total(xs):
    return sum(xs)


def retained_per_child(run, n: int) -> float:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = run()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return (after - before) / n


def test_a_graph_flows_released_map_keeps_tens_of_bytes_a_child(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_HISTORY", "off")
    n = 20_000
    with Flow("compact") as flow:
        children = inc.map(list(range(n)))
        out = total(children)

    def run():
        state = flow.run()
        assert state[out].result() == sum(range(1, n + 1))
        mapped = state[children]
        assert mapped.map_states[7].result() == 8  # read again from its bytes
        assert mapped.map_states[7].task_run_id.endswith(".7")
        return state

    assert retained_per_child(run, n) < 120  # with a State per child: about 460


def test_a_function_flows_map_reads_its_compacted_children(monkeypatch):
    monkeypatch.setenv("HEADRACE_HISTORY", "off")

    @flow
    def compact(n):
        futures = inc.map(range(n))
        added = total(futures)
        return added, [f.result() for f in futures[:3]], futures[2].state.task_run_id

    added, first, run_id = compact(1000)
    assert added == sum(range(1, 1001)) and first == [1, 2, 3]
    assert run_id.endswith(".2")
