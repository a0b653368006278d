"""Throttle limits hold under faults: a timed-out body keeps its slots.

A task body that outlives its timeout on a thread is abandoned, not stopped: it
keeps running, and the throttle slots it took stay taken until it returns, so a
limit is never exceeded by the runs started after it timed out.
"""

import threading

import pytest

from headrace import Flow, task
from headrace.executors import ThreadExecutor


@pytest.mark.parametrize("style", ["graph", "function"])
def test_a_timed_out_body_on_a_thread_holds_its_throttle_slot_until_it_returns(style):
    from headrace import flow

    lock, running, peak = threading.Lock(), [0], [0]

    @task(tags=["web"], timeout=0.05)
    def slow(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        threading.Event().wait(0.3)  # runs on past its timeout, abandoned
        with lock:
            running[0] -= 1

    if style == "graph":
        with Flow("capped") as graph:
            slow.map(list(range(6)))
        state = graph.run(executor=ThreadExecutor(6), throttle={"web": 2})
    else:

        @flow(executor=ThreadExecutor(6), throttle={"web": 2})
        def capped():
            return slow.map(range(6)).wait()

        state = capped(return_state=True)
    assert state.is_failed()  # every run timed out
    assert peak[0] == 2  # but never more than two bodies ran at once
