"""Triggers and skip propagation (DESIGN §4 failure precedence; seed 002 §2).

Each trigger is tested twice: as a pure function of a list of upstream
states, and inside a running flow, where a downstream task with that
trigger sits below upstream tasks that succeed, fail or skip.
"""

import pytest

from headrace import Flow, task, triggers
from headrace.signals import SKIP
from headrace.states import (
    Cached,
    Completed,
    Crashed,
    Failed,
    MappedState,
    Pending,
    Running,
    Skipped,
    TimedOut,
    TriggerFailed,
)

# -- shared helpers --------------------------------------------------------------

C = Completed("ok", 1)
F = Failed("boom", exception=ValueError("boom"))
S = Skipped("skipped")


@task
def succeed():
    return "ok"


@task
def fail():
    raise ValueError("upstream broke")


@task
def skip():
    raise SKIP("nothing to do")


UPSTREAM = {"ok": succeed, "fail": fail, "skip": skip}


def run_below(outcomes, trigger=None, skip_on_upstream_skip=True):
    """Run a flow where `probe` (with `trigger`) depends on one upstream per outcome.

    Returns (flow state, probe node, list of argument tuples the probe's body saw).
    """
    calls = []

    @task(trigger=trigger, skip_on_upstream_skip=skip_on_upstream_skip)
    def probe(*values):
        calls.append(values)
        return "probe ran"

    with Flow("triggers") as flow:
        ups = [UPSTREAM[o]() for o in outcomes]
        node = probe(*ups)
    return flow.run(), node, calls


# -- triggers as pure functions ----------------------------------------------------


@pytest.mark.parametrize(
    "trigger, states, expected",
    [
        (triggers.all_successful, [C, C], True),
        (triggers.all_successful, [C, S], True),  # Skipped counts as a success
        (triggers.all_successful, [C, Cached("c", 2)], True),
        (triggers.all_successful, [C, F], False),
        (triggers.all_successful, [C, TriggerFailed("t")], False),
        (triggers.all_successful, [Crashed("c")], False),
        (triggers.all_successful, [], True),
        (triggers.all_finished, [C, F, S], True),
        (triggers.all_finished, [C, Running("r")], False),
        (triggers.all_finished, [Pending("p")], False),
        (triggers.always_run, [F, TimedOut("t")], True),
        (triggers.all_failed, [F, TriggerFailed("t"), TimedOut("t")], True),
        (triggers.all_failed, [F, C], False),
        (triggers.all_failed, [F, S], False),
        (triggers.any_successful, [F, C], True),
        (triggers.any_successful, [F, S], True),
        (triggers.any_successful, [F, F], False),
        (triggers.any_successful, [], True),
        (triggers.any_failed, [C, F], True),
        (triggers.any_failed, [C, Crashed("c")], True),
        (triggers.any_failed, [C, S], False),
        (triggers.any_failed, [], True),
        (triggers.not_all_skipped, [S, C], True),
        (triggers.not_all_skipped, [C, C], True),
        (triggers.not_all_skipped, [S, F], False),  # a failure still fails it
    ],
)
def test_trigger_functions(trigger, states, expected):
    assert trigger(states) is expected


def test_not_all_skipped_skips_when_every_upstream_skipped():
    from headrace.signals import SKIP

    with pytest.raises(SKIP, match="Every upstream task was skipped"):
        triggers.not_all_skipped([S, S])


def test_always_run_is_all_finished():
    assert triggers.always_run is triggers.all_finished


def test_a_mapped_state_with_a_failed_child_counts_as_one_failure():
    mapped = MappedState([C, F, C])
    assert triggers.all_successful([mapped]) is False
    assert triggers.any_failed([C, mapped]) is True
    assert triggers.all_successful([MappedState([C, C])]) is True


@pytest.mark.parametrize(
    "make, states, expected",
    [
        # counts
        (lambda: triggers.some_successful(at_least=2), [C, C, F], True),
        (lambda: triggers.some_successful(at_least=2), [C, F, F], False),
        (lambda: triggers.some_successful(at_most=1), [C, F, F], True),
        (lambda: triggers.some_successful(at_most=1), [C, C, F], False),
        (lambda: triggers.some_successful(at_least=1, at_most=2), [C, C, F], True),
        (lambda: triggers.some_successful(at_least=1, at_most=2), [C, C, C], False),
        (lambda: triggers.some_successful(at_least=1, at_most=2), [F, F, F], False),
        (lambda: triggers.some_failed(at_least=2), [F, F, C], True),
        (lambda: triggers.some_failed(at_least=2), [F, C, C], False),
        (lambda: triggers.some_failed(at_most=0), [C, C, S], True),
        (lambda: triggers.some_failed(at_most=0), [C, F], False),
        # fractions of the upstream count
        (lambda: triggers.some_successful(at_least=0.5), [C, C, F, F], True),
        (lambda: triggers.some_successful(at_least=0.5), [C, F, F, F], False),
        (lambda: triggers.some_successful(at_most=0.25), [C, F, F, F], True),
        (lambda: triggers.some_successful(at_most=0.25), [C, C, F, F], False),
        (lambda: triggers.some_failed(at_least=0.5), [F, C], True),
        (lambda: triggers.some_failed(at_least=0.5), [F, C, C], False),
        (lambda: triggers.some_failed(at_most=0.5), [F, C, C, C], True),
        (lambda: triggers.some_failed(at_most=0.5), [F, F, F, C], False),
        # an int 1 is one upstream; a float 1.0 is all of them
        (lambda: triggers.some_successful(at_least=1), [C, F, F], True),
        (lambda: triggers.some_successful(at_least=1.0), [C, F, F], False),
        (lambda: triggers.some_successful(at_least=1.0), [C, C, C], True),
    ],
)
def test_bounded_triggers(make, states, expected):
    assert make()(states) is expected


@pytest.mark.parametrize("factory", [triggers.some_successful, triggers.some_failed])
@pytest.mark.parametrize("states", [[C, C], [F, F], [C, F, S], []])
def test_bounded_triggers_without_bounds_accept_any_count(factory, states):
    # Prefect 1: some_successful(at_least=None, at_most=None) runs whatever the count.
    assert factory()(states) is True


# Prefect 1.4's answers on an empty upstream collection: every trigger passes, except
# not_all_skipped, for which "all upstreams were skipped" holds vacuously.
@pytest.mark.parametrize(
    "trigger",
    [
        triggers.all_successful,
        triggers.all_finished,
        triggers.always_run,
        triggers.all_failed,
        triggers.any_successful,
        triggers.any_failed,
        triggers.some_successful(),
        triggers.some_successful(at_least=2),
        triggers.some_successful(at_least=0.5, at_most=0.9),
        triggers.some_failed(),
        triggers.some_failed(at_least=1),
        triggers.some_failed(at_most=0),
    ],
    ids=lambda t: t.__name__,
)
def test_triggers_on_no_upstream_states_pass(trigger):
    assert trigger([]) is True


def test_not_all_skipped_on_no_upstream_states_skips():
    with pytest.raises(SKIP, match="Every upstream task was skipped"):
        triggers.not_all_skipped([])


def test_bounded_trigger_names_its_bounds():
    assert "some_successful" in triggers.some_successful(at_least=2).__name__
    assert "at_least=2" in triggers.some_successful(at_least=2).__name__


# -- triggers inside running flows ---------------------------------------------------


@pytest.mark.parametrize(
    "trigger, outcomes, runs",
    [
        (None, ["ok", "ok"], True),
        (None, ["ok", "fail"], False),
        (triggers.all_successful, ["ok", "ok"], True),
        (triggers.all_successful, ["ok", "fail"], False),
        (triggers.all_finished, ["ok", "fail"], True),
        (triggers.always_run, ["fail", "fail"], True),
        (triggers.all_failed, ["fail", "fail"], True),
        (triggers.all_failed, ["fail", "ok"], False),
        (triggers.any_successful, ["fail", "ok"], True),
        (triggers.any_successful, ["fail", "fail"], False),
        (triggers.any_failed, ["ok", "fail"], True),
        (triggers.any_failed, ["ok", "ok"], False),
        (triggers.some_successful(at_least=2), ["ok", "ok", "fail"], True),
        (triggers.some_successful(at_least=2), ["ok", "fail", "fail"], False),
        (triggers.some_successful(at_most=1), ["ok", "fail", "fail"], True),
        (triggers.some_successful(at_most=1), ["ok", "ok", "fail"], False),
        (triggers.some_successful(at_least=0.5), ["ok", "ok", "fail", "fail"], True),
        (triggers.some_successful(at_least=0.5), ["ok", "fail", "fail", "fail"], False),
        (triggers.some_failed(at_least=1), ["ok", "fail"], True),
        (triggers.some_failed(at_least=1), ["ok", "ok"], False),
        (triggers.some_failed(at_most=0.5), ["ok", "ok", "fail"], True),
        (triggers.some_failed(at_most=0.5), ["ok", "fail", "fail"], False),
        (triggers.some_successful(), ["fail", "fail"], True),
        (triggers.some_failed(), ["ok", "ok"], True),
    ],
)
def test_trigger_decides_whether_the_downstream_runs(trigger, outcomes, runs):
    state, probe, calls = run_below(outcomes, trigger)
    if runs:
        assert state[probe].name == "Completed"
        assert state[probe].result() == "probe ran"
        assert len(calls) == 1
    else:
        assert state[probe].name == "TriggerFailed"
        assert state[probe].is_failed()
        assert calls == []


def test_not_all_skipped_in_a_flow():
    state, probe, calls = run_below(
        ["skip", "ok"], triggers.not_all_skipped, skip_on_upstream_skip=False
    )
    assert state[probe].name == "Completed"
    assert calls == [(None, "ok")]

    state, probe, calls = run_below(
        ["skip", "fail"], triggers.not_all_skipped, skip_on_upstream_skip=False
    )
    assert state[probe].name == "TriggerFailed"
    assert calls == []

    state, probe, calls = run_below(
        ["skip", "skip"], triggers.not_all_skipped, skip_on_upstream_skip=False
    )
    assert state[probe].name == "Skipped"
    assert calls == []


def test_a_task_that_runs_despite_a_failure_receives_the_exception():
    state, probe, calls = run_below(["ok", "fail"], triggers.all_finished)
    assert state[probe].name == "Completed"
    (values,) = calls
    assert values[0] == "ok"
    assert isinstance(values[1], ValueError)
    assert str(values[1]) == "upstream broke"


def test_trigger_failed_message_names_the_failed_upstream():
    @task
    def extract():
        raise RuntimeError("source down")

    @task
    def load(x, y):
        return x, y

    with Flow("etl") as flow:
        good = succeed()
        bad = extract()
        out = load(good, bad)
    state = flow.run()
    assert state[out].name == "TriggerFailed"
    assert "'extract'" in state[out].message
    assert "'succeed'" not in state[out].message
    # reading the result raises an error that says the same
    with pytest.raises(Exception, match="extract"):
        state[out].result()


def test_a_trigger_that_raises_fails_only_its_task():
    def picky(states):
        raise KeyError("no opinion")

    state, probe, calls = run_below(["ok"], picky)
    assert state[probe].name == "TriggerFailed"
    assert "picky" in state[probe].message
    assert "no opinion" in state[probe].message
    assert isinstance(state[probe].exception, KeyError)
    assert calls == []
    assert state.is_failed()  # probe is terminal, so the flow failed; it did not crash


def test_a_trigger_receives_every_upstream_state():
    seen = []

    def spy(states):
        seen.append(sorted(s.name for s in states))
        return True

    state, probe, _ = run_below(["ok", "fail", "ok"], spy)
    assert seen == [["Completed", "Completed", "Failed"]]
    assert state[probe].name == "Completed"


def test_a_map_child_sees_only_the_state_of_its_own_index():
    @task
    def fragile(x):
        if x == 1:
            raise ValueError("one")
        return x

    @task(trigger=triggers.all_finished)
    def tolerant(x):
        return ("got", x if not isinstance(x, Exception) else "error")

    @task
    def strict(x):
        return x * 10

    with Flow("map-triggers") as flow:
        f = fragile.map([0, 1, 2])
        t = tolerant.map(f)
        s = strict.map(f)
    state = flow.run()
    assert [c.name for c in state[t].map_states] == ["Completed"] * 3
    assert state[t].result() == [("got", 0), ("got", "error"), ("got", 2)]
    assert [c.name for c in state[s].map_states] == ["Completed", "TriggerFailed", "Completed"]
    assert state[s].result(raise_on_failure=False)[0] == 0


def test_a_reduce_with_any_failed_runs_when_one_child_failed():
    @task
    def fragile(x):
        if x == 2:
            raise ValueError("two")
        return x

    @task(trigger=triggers.any_failed)
    def alert(xs):
        return "alerted"

    @task
    def total(xs):
        return sum(xs)

    with Flow("reduce") as flow:
        f = fragile.map([1, 2, 3])
        a = alert(f)
        t = total(f)
    state = flow.run()
    assert state[a].result() == "alerted"
    assert state[t].name == "TriggerFailed"
    assert "'fragile'" in state[t].message


def test_flow_state_is_judged_by_terminal_tasks():
    # A failure cleaned up by an always_run terminal task leaves the flow Completed
    # (DESIGN §4: the flow is Failed if any reference task failed).
    @task(trigger=triggers.always_run)
    def cleanup(x):
        return "cleaned"

    with Flow("cleanup") as flow:
        cleanup(fail())
    assert flow.run().name == "Completed"

    with Flow("failing") as flow:
        succeed()
        fail()
    state = flow.run()
    assert state.name == "Failed"
    assert "'fail'" in state.message


# -- skip_on_upstream_skip and precedence ----------------------------------------------


def test_downstream_of_a_skipped_task_is_skipped_by_default():
    state, probe, calls = run_below(["skip", "ok"])
    assert state[probe].name == "Skipped"
    assert state[probe].is_skipped()
    assert calls == []


def test_skip_propagates_down_a_chain():
    @task
    def double(x):
        return 2 * x

    with Flow("chain") as flow:
        s = skip()
        d1 = double(s)
        d2 = double(d1)
    state = flow.run()
    assert [state[t].name for t in (s, d1, d2)] == ["Skipped"] * 3


def test_skip_is_checked_before_the_trigger():
    # a skipped upstream skips even a task whose trigger would run it ...
    state, probe, calls = run_below(["skip", "ok"], triggers.always_run)
    assert state[probe].name == "Skipped"
    assert calls == []
    # ... unless an upstream failed: then the trigger decides (Failed beats Skipped)
    state, probe, calls = run_below(["skip", "fail"], triggers.always_run)
    assert state[probe].name == "Completed"
    assert len(calls) == 1


def test_skip_on_upstream_skip_false_runs_the_task_with_none():
    state, probe, calls = run_below(["skip", "ok"], skip_on_upstream_skip=False)
    assert state[probe].name == "Completed"
    assert calls == [(None, "ok")]


def test_failed_beats_skipped():
    state, probe, calls = run_below(["skip", "fail"])
    assert state[probe].name == "TriggerFailed"
    assert "'fail'" in state[probe].message
    assert calls == []


def test_failed_beats_skipped_when_skip_on_upstream_skip_is_false():
    state, probe, calls = run_below(["skip", "fail"], skip_on_upstream_skip=False)
    assert state[probe].name == "TriggerFailed"
    assert calls == []


def test_a_flow_whose_terminal_task_skipped_is_completed():
    state, probe, _ = run_below(["skip"])
    assert state[probe].name == "Skipped"
    assert state.name == "Completed"
    assert state.is_successful()


def test_a_flow_whose_terminal_task_failed_is_failed():
    state, probe, _ = run_below(["fail"])
    assert state[probe].name == "TriggerFailed"
    assert state.name == "Failed"
    assert state.is_failed()


def test_a_skipped_map_child_skips_only_its_own_downstream_child():
    @task
    def maybe(x):
        if x == 1:
            raise SKIP("odd one")
        return x

    @task
    def plus(x):
        return x + 100

    @task(skip_on_upstream_skip=False)
    def describe(x):
        return repr(x)

    with Flow("map-skip") as flow:
        m = maybe.map([0, 1, 2])
        p = plus.map(m)
        d = describe.map(m)
    state = flow.run()
    assert [c.name for c in state[p].map_states] == ["Completed", "Skipped", "Completed"]
    assert state[d].result() == ["0", "None", "2"]
    assert state.name == "Completed"


def test_a_root_task_asks_its_trigger_with_no_upstream_states():
    @task(trigger=triggers.not_all_skipped)
    def lonely():
        return "ran"

    @task(trigger=triggers.any_failed)
    def alarm():
        return "ran"

    with Flow("roots") as flow:
        skipped, ran = lonely(), alarm()
    state = flow.run()
    assert state[skipped].is_skipped() and state[ran].result() == "ran"
