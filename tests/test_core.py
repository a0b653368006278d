"""The core's state after each event, stepped by hand (as dask's test_local does).

Each test builds `Node`s for the core directly, then takes one ready unit
at a time: `prepare` it, `submit` it to a real LocalExecutor (which runs it
at once and puts its event), `handle` the event, and asserts the whole
state that the event changed: ready stack, children, holds, waiting
counts, timers, throttle.
"""

import pytest

from headrace import task
from headrace.engine.clock import ManualClock
from headrace.engine.context import FlowRunContext
from headrace.engine.core import Core, StalledError
from headrace.engine.nodes import ELEMENT, WHOLE, Input, Node
from headrace.engine.throttle import Throttle
from headrace.executors import LocalExecutor
from headrace.states import Completed, _Released
from headrace.store import NULL


@task
def double(x):
    return 2 * x


@task
def total(xs):
    return sum(xs)


@task(tags=["web"])
def fetch(x):
    return x


attempts = []


@task(retries=2, retry_delay=5)
def flaky(x):
    attempts.append(x)
    if len(attempts) < 3:
        raise ConnectionError(f"attempt {len(attempts)}")
    return x


def make_core(throttle=None, clock=None):
    ctx = FlowRunContext("run", "brave-otter", "core", {})
    return Core(LocalExecutor(), Throttle(throttle), clock or ManualClock(), ctx, NULL)


def step(core):
    """Take the next ready unit and run it to its event; return the unit."""
    node, index = core.ready.pop_unit()
    attempt = core.prepare(node, index)
    if attempt is not None:
        core.submit(attempt)
        core.handle(core.events.get_nowait())
    return node, index


def names(units):
    return [(node.key, index) for node, index in units]


def test_a_chained_map_runs_depth_first_and_releases_each_input_once_consumed():
    a = Node(double, "a", "r-0", iterated={"x": [1, 2, 3]}, mapped=True)
    b = Node(double, "b", "r-1", inputs=[Input("x", a, mapped=True)], mapped=True)
    c = Node(total, "c", "r-2", inputs=[Input("xs", b)])
    c.keep = True
    core = make_core()

    core.add([a, b, c])
    assert a.ups == () and a.downs == [(b, ELEMENT)]
    assert b.ups == [(a, ELEMENT)] and b.downs == [(c, WHOLE)] and c.ups == [(b, WHOLE)]
    # a expanded at once; b expanded with it, each child waiting for a's child.
    assert a.children == [None, None, None] and a.holds == [1, 1, 1]
    assert b.children == [None, None, None] and b.child_wait == [1, 1, 1]
    assert c.waiting == 1 and core.unfinished == 3
    assert names(core.ready.units()) == [("a", 2), ("a", 1), ("a", 0)]
    assert len(core.ready) == 1  # one entry for all of a's children, however many

    assert names([step(core)]) == [("a", 0)]
    assert a.children[0].result() == 2 and a.remaining == 2
    assert b.child_wait == [0, 1, 1]
    assert names(core.ready.units()) == [("a", 2), ("a", 1), ("b", 0)]  # b[0] next: depth-first

    assert names([step(core)]) == [("b", 0)]
    assert b.children[0].result() == 4
    assert a.holds == [0, 1, 1] and a.children[0]._value.__class__ is _Released
    assert names(core.ready.units()) == [("a", 2), ("a", 1)]

    while core.ready.units()[-1][0] is not c:
        step(core)
    assert [s.result() for s in b.children] == [4, 8, 12]
    assert b.state.is_mapped() and a.state.is_mapped() and c.state is None
    assert c.waiting == 0 and names(core.ready.units()) == [("c", None)]
    assert core.unfinished == 1

    step(core)
    assert c.state.result() == 24 and core.unfinished == 0 and core.running == 0
    assert all(s._value.__class__ is _Released for s in b.children)


def test_presets_finish_first_and_wake_what_waits_for_them():
    given = Node(double, "given", "r-0")
    after = Node(double, "after", "r-1", inputs=[Input("x", given)])
    core = make_core()

    core.add([given, after], presets={given: Completed("reused", 21)})
    assert given.preset and given.state.result() == 21
    assert after.waiting == 0 and names(core.ready.units()) == [("after", None)]
    step(core)
    assert after.state.result() == 42 and core.unfinished == 0


def test_a_retry_waits_on_the_clock_holding_no_worker():
    attempts.clear()
    clock = ManualClock()
    node = Node(flaky, "flaky", "r-0", constants={"x": 7})
    node.keep = True
    core = make_core(clock=clock)
    core.add([node])

    step(core)
    assert node.state is None and core.running == 0 and core.ready == []
    [(due, _, attempt)] = core.timers
    assert due == 5 and attempt.run_count == 1 and attempt.arguments == {"x": 7}

    core.resubmit_due()  # not due yet: nothing moves
    assert core.running == 0 and len(core.timers) == 1
    clock.advance(5)
    core.resubmit_due()
    assert core.timers == [] and core.running == 1 and attempt.run_count == 2
    core.handle(core.events.get_nowait())
    assert core.running == 0 and [t[0] for t in core.timers] == [10]

    core.run()  # the manual clock moves to the next due time; no sleeping
    assert node.state.result() == 7 and attempts == [7, 7, 7]
    assert clock.sleeps == [5.0] and clock.monotonic() == 10  # moved, never slept


def test_a_full_tag_parks_the_unit_until_a_holder_finishes():
    one = Node(fetch, "one", "r-0", constants={"x": 1})
    two = Node(fetch, "two", "r-1", constants={"x": 2})
    core = make_core(throttle={"web": 1})
    core.add([one, two])
    assert names(core.ready.units()) == [("one", None), ("two", None)]

    node, index = core.ready.pop_unit()
    assert core.throttle.take(node.task.tags, (core, "ready", (node, index)), (node, index))
    attempt = core.prepare(node, index)
    core.submit(attempt)
    # While `two` holds the only slot, `one` is parked behind the tag.
    parked = core.ready.pop_unit()
    assert not core.throttle.take(parked[0].task.tags, (core, "ready", parked), parked)
    assert core.ready == [] and core.throttle.in_use == {"web": 1}
    core.handle(core.events.get_nowait())
    assert two.state.result() == 2 and names(core.ready.units()) == [("one", None)]
    assert core.throttle.in_use == {"web": 0}


def test_a_core_with_unfinished_nodes_and_nothing_to_run_says_it_stalled():
    waiting = Node(total, "waiting", "r-0", inputs=[Input("xs", Node(double, "gone", "r-1"))])
    core = make_core()
    core.add([waiting])  # its upstream was never added, so nothing can finish it
    with pytest.raises(StalledError, match=r"unfinished tasks: \['total'\]"):
        core.run()
