"""Seed 002 in graph flows: mapping over a list, branches (case, switch, ifelse,
merge) and `flow.chain`.
"""

import threading

import pytest

from headrace import Flow, Parameter, case, context, ifelse, merge, switch, task, triggers
from headrace.errors import CycleError, FlowBuildError
from headrace.executors import LocalExecutor, ThreadExecutor
from headrace.states import MappedState

# -- shared helpers --------------------------------------------------------------

EXECUTORS = pytest.mark.parametrize(
    "make_executor",
    [LocalExecutor, lambda: ThreadExecutor(max_workers=4)],
    ids=["local", "threads"],
)


class Log:
    """Records the order in which task bodies ran (thread-safe)."""

    def __init__(self):
        self.entries = []
        self._lock = threading.Lock()

    def add(self, label):
        with self._lock:
            self.entries.append(label)


def make_record(log):
    """A task that logs its label when it runs and returns it."""

    @task
    def record(label):
        log.add(label)
        return label

    return record


@task
def identity(x):
    return x


@task
def shout(x):
    return f"{x}!"


# -- seed 002 §1: mapping over a list -----------------------------------------------


@EXECUTORS
def test_mapping_over_a_constant_list_gives_one_child_per_input(make_executor):
    @task
    def process_data(input):
        return (context.task_run_name, input * 10)

    with Flow("Data Processing Workflow") as flow:
        inputs = [1, 2, 3, 4, 5]
        processed_data = process_data.map(inputs)
    state = flow.run(executor=make_executor())
    assert isinstance(state[processed_data], MappedState)
    assert len(state[processed_data].map_states) == 5
    assert [s.name for s in state[processed_data].map_states] == ["Completed"] * 5
    assert state[processed_data].result() == [
        (f"process_data[{i}]", (i + 1) * 10) for i in range(5)
    ]
    assert state.name == "Completed"


# -- case -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "b", None, 0])
def test_case_runs_its_tasks_only_when_the_condition_matches(value):
    log = Log()
    record = make_record(log)

    with Flow("case") as flow:
        cond = identity(Parameter("which"))
        with case(cond, "a"):
            inside = record("inside")
            inside_after = shout(inside)
        after = shout(inside)  # outside the block, but downstream of the branch
        unrelated = record("unrelated")
    state = flow.run(parameters={"which": value}, return_tasks=[inside])

    assert state[unrelated].result() == "unrelated"
    if value == "a":
        assert log.entries.count("inside") == 1
        assert state[inside].result() == "inside"
        assert state[inside_after].result() == "inside!"
        assert state[after].result() == "inside!"
    else:
        assert "inside" not in log.entries
        assert state[inside].name == "Skipped"
        assert state[inside_after].name == "Skipped"
        assert state[after].name == "Skipped"
    assert state.name == "Completed"


def test_case_compares_with_equality():
    with Flow("case-eq") as flow:
        cond = identity(Parameter("n"))
        with case(cond, 1):
            one = shout("one")
    assert flow.run(parameters={"n": 1.0})[one].result() == "one!"
    assert flow.run(parameters={"n": 2})[one].name == "Skipped"


def test_case_on_a_parameter_directly():
    with Flow("case-param") as flow:
        mode = Parameter("mode")
        with case(mode, "full"):
            full = shout("full")
        with case(mode, "quick"):
            quick = shout("quick")
    state = flow.run(parameters={"mode": "quick"})
    assert state[full].name == "Skipped"
    assert state[quick].result() == "quick!"


@pytest.mark.parametrize(
    "outer, inner, expect_outer, expect_inner",
    [
        ("x", "y", "Completed", "Completed"),
        ("x", "other", "Completed", "Skipped"),
        ("other", "y", "Skipped", "Skipped"),  # the inner case needs the outer one too
        ("other", "other", "Skipped", "Skipped"),
    ],
)
def test_nested_case(outer, inner, expect_outer, expect_inner):
    log = Log()
    record = make_record(log)
    with Flow("nested") as flow:
        c1 = identity(Parameter("outer"))
        c2 = identity(Parameter("inner"))
        with case(c1, "x"):
            o = record("outer body")
            with case(c2, "y"):
                i = record("inner body")
            o2 = record("outer again")
    state = flow.run(parameters={"outer": outer, "inner": inner})
    assert state[o].name == expect_outer
    assert state[o2].name == expect_outer  # the inner block's end restores the outer one
    assert state[i].name == expect_inner
    assert ("inner body" in log.entries) == (expect_inner == "Completed")
    assert ("outer body" in log.entries) == (expect_outer == "Completed")
    assert state.name == "Completed"


def test_case_outside_a_flow_is_an_error():
    with pytest.raises(RuntimeError, match="Flow"), case(identity, "a"):
        pass


def test_a_failed_condition_fails_the_branch():
    log = Log()
    record = make_record(log)

    @task
    def decide():
        raise ConnectionError("cannot decide")

    with Flow("failed-condition") as flow:
        cond = decide()
        with case(cond, "a"):
            a = record("a")
        with case(cond, "b"):
            b = record("b")
        m = merge(a, b)
    state = flow.run()
    assert state[cond].name == "Failed"
    assert state[a].name == "TriggerFailed"
    assert state[b].name == "TriggerFailed"
    assert state[m].name == "TriggerFailed"
    assert log.entries == []
    assert state.name == "Failed"


# -- switch ------------------------------------------------------------------------------


@pytest.mark.parametrize("value, ran", [("a", "t1"), ("b", "t2"), ("c", None)])
def test_switch_runs_only_the_matching_task(value, ran):
    log = Log()
    record = make_record(log)
    with Flow("switch") as flow:
        cond = identity(Parameter("v"))
        t1 = record("t1")
        t2 = record("t2")
        switch(cond, {"a": t1, "b": t2})
        d1 = shout(t1)
        d2 = shout(t2)
    state = flow.run(parameters={"v": value}, return_tasks=[t1, t2])
    assert log.entries == ([ran] if ran else [])
    for t, d, label in ((t1, d1, "t1"), (t2, d2, "t2")):
        if label == ran:
            assert state[t].result() == label
            assert state[d].result() == f"{label}!"
        else:
            assert state[t].name == "Skipped"
            assert state[d].name == "Skipped"
    assert state.name == "Completed"


# -- ifelse -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, truthy",
    [(1, True), ("yes", True), ([0], True), (0, False), ("", False), ([], False), (None, False)],
)
def test_ifelse_follows_the_truth_of_the_condition(value, truthy):
    log = Log()
    record = make_record(log)
    with Flow("ifelse") as flow:
        cond = identity(Parameter("v"))
        yes = record("yes")
        no = record("no")
        ifelse(cond, yes, no)
        m = merge(yes, no)
    state = flow.run(parameters={"v": value})
    assert log.entries == (["yes"] if truthy else ["no"])
    assert state[yes].name == ("Completed" if truthy else "Skipped")
    assert state[no].name == ("Skipped" if truthy else "Completed")
    assert state[m].result() == ("yes" if truthy else "no")


# -- merge ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["first", "second", "third"])
def test_merge_returns_the_result_of_the_branch_that_ran(value):
    with Flow("merge") as flow:
        cond = identity(Parameter("v"))
        branches = {}
        for name in ("first", "second", "third"):
            with case(cond, name):
                branches[name] = shout(name)
        m = merge(*branches.values())
        final = identity(m)
    state = flow.run(parameters={"v": value}, return_tasks=[m])
    assert state[m].name == "Completed"
    assert state[m].result() == f"{value}!"
    assert state[final].result() == f"{value}!"


def test_merge_takes_a_branch_result_even_when_an_earlier_branch_ran_empty():
    @task
    def nothing():
        return None

    with Flow("merge-none") as flow:
        cond = identity(Parameter("v"))
        with case(cond, "a"):
            a = nothing()
        with case(cond, "b"):
            b = shout("b")
        m = merge(a, b)
    assert flow.run(parameters={"v": "b"})[m].result() == "b!"


def test_merge_when_every_branch_skipped_is_skipped():
    with Flow("merge-skipped") as flow:
        cond = identity(Parameter("v"))
        with case(cond, "a"):
            a = shout("a")
        with case(cond, "b"):
            b = shout("b")
        m = merge(a, b)
        after = shout(m)
    state = flow.run(parameters={"v": "neither"})
    assert state[a].name == "Skipped"
    assert state[b].name == "Skipped"
    assert state[m].name == "Skipped"
    assert state[after].name == "Skipped"
    assert state.name == "Completed"


def test_merge_of_a_failed_branch_fails():
    @task
    def broken():
        raise ValueError("branch broke")

    with Flow("merge-failed") as flow:
        cond = identity(Parameter("v"))
        with case(cond, "a"):
            a = broken()
        with case(cond, "b"):
            b = shout("b")
        m = merge(a, b)
    state = flow.run(parameters={"v": "a"})
    assert state[b].name == "Skipped"
    assert state[m].name == "TriggerFailed"
    assert state.name == "Failed"


# -- flow.chain ------------------------------------------------------------------------------


@EXECUTORS
def test_chain_orders_execution(make_executor):
    log = Log()
    record = make_record(log)
    with Flow("chain") as flow:
        # added in reverse so that only the chain's edges can put them in order
        final = record("final")
        t4, t3, t2 = record("t4"), record("t3"), record("t2")
        t1 = record("t1")
        flow.chain(t1, [t2, t3, t4], final)
    state = flow.run(executor=make_executor())
    assert state.name == "Completed"
    assert log.entries[0] == "t1"
    assert sorted(log.entries[1:4]) == ["t2", "t3", "t4"]
    assert log.entries[4] == "final"
    assert flow.upstream_tasks(final) == {t2, t3, t4}
    assert flow.upstream_tasks(t3) == {t1}
    # ordering-only edges carry no argument
    assert all(e.key is None for e in flow.upstream_edges(final))


def test_chain_of_plain_tasks_is_a_sequence():
    log = Log()
    record = make_record(log)
    with Flow("chain") as flow:
        nodes = [record(f"step {i}") for i in range(6)]
        flow.chain(*reversed(nodes))
    flow.run()
    assert log.entries == [f"step {i}" for i in reversed(range(6))]


def test_chain_with_lists_on_both_sides_links_every_pair():
    log = Log()
    record = make_record(log)
    with Flow("chain") as flow:
        a, b, c, d = record("a"), record("b"), record("c"), record("d")
        flow.chain([c, d], [a, b])
    flow.run()
    assert flow.upstream_tasks(a) == {c, d}
    assert flow.upstream_tasks(b) == {c, d}
    assert set(log.entries[:2]) == {"c", "d"}
    assert set(log.entries[2:]) == {"a", "b"}


def test_chain_outside_the_with_block_extends_the_flow():
    log = Log()
    record = make_record(log)
    with Flow("chain") as flow:
        b = record("b")
        a = record("a")
    flow.chain(a, b)
    flow.run()
    assert log.entries == ["a", "b"]


def test_chain_that_would_make_a_cycle_raises_cycle_error_naming_the_tasks():
    @task
    def load():
        return 1

    @task
    def transform():
        return 2

    with Flow("cycle") as flow:
        e, t, lo = identity(0), transform(), load()
        flow.chain(e, t, lo)
        edges_before = list(flow.edges)
        with pytest.raises(CycleError) as info:
            flow.chain(lo, e)
    message = str(info.value)
    assert "'load-1'" in message and "'identity-1'" in message and "'transform-1'" in message
    assert info.value.cycle[0] is lo and info.value.cycle[-1] is lo
    assert set(info.value.cycle) == {e, t, lo}
    assert flow.edges == edges_before  # the refused edge was not added


def test_chain_through_itself_is_a_cycle():
    with Flow("cycle") as flow:
        a, b = shout("a"), shout("b")
        with pytest.raises(CycleError, match="shout"):
            flow.chain(a, b, a)


def test_chain_of_a_task_to_itself_is_a_cycle():
    with Flow("self") as flow:
        a = shout("a")
        with pytest.raises(CycleError, match="'shout-1' -> 'shout-1'"):
            flow.chain(a, a)


# -- seed 002 §2 as a whole ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["x", "y", "z"])
def test_seed_002_conditional_branches_then_chain(kind):
    """Seed 002 §2: a task, one branch of a switch, then a final task, chained."""
    log = Log()
    record = make_record(log)

    @task(trigger=triggers.all_successful)
    def process_data(data, label):
        log.add(label)
        return f"{label}:{data}"

    @task(skip_on_upstream_skip=False, trigger=triggers.not_all_skipped)
    def final_task():
        log.add("final")
        return "final"

    with Flow("Data Processing Workflow") as flow:
        data = Parameter("data", default="rows")
        condition = identity(Parameter("kind"))
        task_1 = record("task_1")
        task_2 = process_data(data, "task_2")
        task_3 = process_data(data, "task_3")
        task_4 = process_data(data, "task_4")
        switch(condition, {"x": task_2, "y": task_3, "z": task_4})
        final = final_task()
        flow.chain(task_1, [task_2, task_3, task_4], final)
    state = flow.run(parameters={"kind": kind}, return_tasks=[task_2, task_3, task_4])

    chosen = {"x": "task_2", "y": "task_3", "z": "task_4"}[kind]
    assert log.entries == ["task_1", chosen, "final"]
    branch = {"task_2": task_2, "task_3": task_3, "task_4": task_4}
    for label, node in branch.items():
        expected = "Completed" if label == chosen else "Skipped"
        assert state[node].name == expected
    assert state[branch[chosen]].result() == f"{chosen}:rows"
    assert state[final].result() == "final"
    assert state.name == "Completed"


# -- seed 002 §2's loose forms: a hint instead of a puzzle ------------------------------------


def test_a_task_used_as_a_block_points_to_case_and_switch():
    with Flow("loose") as flow:
        condition = identity(True)
        with pytest.raises(FlowBuildError) as info, condition:
            shout("never built")
    message = str(info.value)
    assert "with case(" in message and "switch" in message and "ifelse" in message
    assert "'identity'" in message
    assert flow.tasks == [condition]  # nothing was built inside the refused block


def test_a_flow_entered_inside_another_flow_is_an_error_naming_both():
    with Flow("Data Processing Workflow") as outer:
        before = identity(1)
        with pytest.raises(FlowBuildError) as info, Flow("Conditional Branch"):
            identity(2)
        after = identity(3)
    message = str(info.value)
    assert "'Conditional Branch'" in message and "'Data Processing Workflow'" in message
    assert "case(" in message
    # the outer block goes on building its own flow
    assert outer.tasks == [before, after]
    assert outer.run()[after].result() == 3


def test_reentering_a_flow_inside_its_own_block_still_extends_it():
    with Flow("again") as flow:
        first = identity(1)
        with flow:
            second = identity(first)
    assert flow.upstream_tasks(second) == {first}


# -- Prefect 1 branch semantics -----------------------------------------------------------------


@pytest.mark.parametrize("value, ran", [(True, ["yes"]), (False, [])])
def test_ifelse_with_none_as_a_branch_runs_nothing_on_that_side(value, ran):
    log = Log()
    record = make_record(log)
    with Flow("ifelse-none") as flow:
        cond = identity(Parameter("v"))
        yes = record("yes")
        ifelse(cond, yes, None)
    state = flow.run(parameters={"v": value})
    assert log.entries == ran
    assert state[yes].name == ("Completed" if value else "Skipped")
    assert len(flow.tasks) == 5  # v, cond, bool, yes, one comparison: none for None


@pytest.mark.parametrize("value", ["a", "b"])
def test_a_list_of_tasks_is_one_branch(value):
    log = Log()
    record = make_record(log)
    with Flow("list-branch") as flow:
        cond = identity(Parameter("v"))
        a1, a2, b1 = record("a1"), record("a2"), record("b1")
        switch(cond, {"a": [a1, a2], "b": (b1,)})
        yes, no = record("yes"), record("no")
        ifelse(cond.is_equal("a"), [yes], [no])
    state = flow.run(parameters={"v": value})
    taken = {"a": {"a1", "a2", "yes"}, "b": {"b1", "no"}}[value]
    assert set(log.entries) == taken
    for node, label in ((a1, "a1"), (a2, "a2"), (b1, "b1"), (yes, "yes"), (no, "no")):
        assert state[node].name == ("Completed" if label in taken else "Skipped")


def test_a_branch_that_is_not_a_task_is_refused_naming_its_value():
    with Flow("bad-branch"):
        cond = identity(1)
        with pytest.raises(FlowBuildError, match="'b'.*'oops'"):
            switch(cond, {"a": shout("a"), "b": "oops"})


def test_a_task_as_a_case_value_is_refused_at_build_time():
    with Flow("case-task-value") as flow:
        cond = identity(1)
        other = identity(1)
        with pytest.raises(FlowBuildError, match="is_equal") as info, case(cond, other):
            shout("never built")
        with pytest.raises(FlowBuildError, match="is_equal"):
            switch(cond, {other: shout("x")})
    assert "'identity'" in str(info.value)
    assert not any(t.name.startswith("case(") for t in flow.tasks)


def test_an_empty_case_block_adds_nothing():
    with Flow("empty-case") as flow:
        cond = identity(Parameter("v"))
        before = list(flow.tasks)
        with case(cond, "a"):
            pass
        with case(cond, "b"), case(cond, "c"):
            pass
    assert flow.tasks == before and len(flow.edges) == 1
    with flow, case(cond, "a"):
        inside = shout("inside")
    assert flow.run(parameters={"v": "a"})[inside].result() == "inside!"


# -- branches over a mapped condition: chosen child by child ------------------------------------


@task
def is_even(x):
    return x % 2 == 0


@task
def half(x):
    return x // 2


@task
def triple_plus_one(x):
    return 3 * x + 1


@EXECUTORS
def test_ifelse_over_a_mapped_condition_chooses_per_child(make_executor):
    with Flow("collatz-step") as flow:
        xs = Parameter("xs")
        even = is_even.map(xs)
        halves = half.map(xs)
        triples = triple_plus_one.map(xs)
        ifelse(even, halves, triples)
        step = merge(halves, triples)
    state = flow.run(parameters={"xs": [6, 7, 8, 9]}, executor=make_executor())
    assert [s.name for s in state[halves].map_states] == [
        "Completed",
        "Skipped",
        "Completed",
        "Skipped",
    ]
    assert [s.name for s in state[triples].map_states] == [
        "Skipped",
        "Completed",
        "Skipped",
        "Completed",
    ]
    assert state[step].is_mapped() and state[step].result() == [3, 22, 4, 28]
    assert state.is_successful()


def test_switch_over_a_mapped_condition_chooses_per_child():
    @task
    def kind(x):
        return "small" if x < 10 else "big"

    with Flow("mapped-switch") as flow:
        xs = Parameter("xs")
        kinds = kind.map(xs)
        small = shout.map(xs)
        big = identity.map(xs)
        switch(kinds, {"small": small, "big": big})
        both = merge(small, big)
    state = flow.run(parameters={"xs": [1, 50, 2]})
    assert state[both].result() == ["1!", 50, "2!"]
    assert [s.name for s in state[big].map_states] == ["Skipped", "Completed", "Skipped"]


def test_a_mapped_condition_needs_mapped_branches():
    with Flow("mapped-condition") as flow:
        even = is_even.map([1, 2])
        whole = shout("whole")
        with pytest.raises(FlowBuildError, match="'shout'.*mapped") as info:
            ifelse(even, whole, None)
        with pytest.raises(FlowBuildError, match="mapped"), case(even, True):
            pass
    assert "'is_even'" in str(info.value)
    assert flow.upstream_tasks(whole) == set()
