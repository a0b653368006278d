"""The mapping rules of DESIGN §4, run on the default executor."""

import re

import pytest

from headrace import Flow, Parameter, case, flatten, flow, task, triggers, unmapped
from headrace.errors import MappingError
from headrace.signals import SKIP
from headrace.states import MappedState


@task
def numbers(n):
    return list(range(n))


@task
def inc(x):
    return x + 1


@task
def add(x, y):
    return x + y


@task
def total(xs):
    return sum(xs)


@task
def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def test_map_over_a_runtime_list_names_children():
    from headrace import context

    @task
    def who(x):
        return context.task_run_name, context.map_index

    with Flow("f") as flow:
        n = Parameter("n")
        w = who.map(numbers(n))
    state = flow.run(parameters={"n": 3})
    assert isinstance(state[w], MappedState)
    assert state[w].result() == [("who[0]", 0), ("who[1]", 1), ("who[2]", 2)]


def test_unmapped_arguments_are_passed_whole():
    @task
    def count_in(x, xs):
        return xs.count(x)

    with Flow("f") as flow:
        m = add.map([1, 2, 3], y=unmapped(10))
        m2 = count_in.map([0, 5], xs=unmapped(numbers(2)))
    state = flow.run()
    assert state[m].result() == [11, 12, 13]
    assert state[m2].result() == [1, 0]


def test_map_over_mapped_result_is_element_wise():
    seen = []

    @task
    def slow_first(x):
        seen.append(("first", x))
        return x

    @task
    def second(x):
        seen.append(("second", x))
        return x * 10

    with Flow("f") as flow:
        a = slow_first.map([1, 2, 3])
        b = second.map(a)
        t = total(b)
    state = flow.run()
    assert state[t].result() == 60
    # Depth-first: child i's second step runs right after its first step.
    assert seen == [
        ("first", 1),
        ("second", 1),
        ("first", 2),
        ("second", 2),
        ("first", 3),
        ("second", 3),
    ]


def test_child_failure_is_isolated_and_reduce_fails():
    with Flow("f") as flow:
        a = fail_on.map([1, 2, 3], bad=unmapped(2))
        b = inc.map(a)
        t = total(b)
    state = flow.run(return_tasks=[a])
    names = [s.name for s in state[b].map_states]
    assert [s.name for s in state[a].map_states] == ["Completed", "Failed", "Completed"]
    assert names == ["Completed", "TriggerFailed", "Completed"]
    assert state[a].is_failed() and state[a].is_mapped()
    assert state[t].name == "TriggerFailed"
    assert state.is_failed()
    with pytest.raises(ValueError, match="bad item 2"):
        state[a].result()
    values = state[a].result(raise_on_failure=False)
    assert values[0] == 1 and isinstance(values[1], ValueError) and values[2] == 3


def test_empty_map_gives_mapped_with_no_children_and_reduce_gets_empty_list():
    with Flow("f") as flow:
        a = inc.map(numbers(0))
        b = inc.map(a)
        t = total(b)
    state = flow.run()
    assert state[a].is_mapped() and state[a].map_states == []
    assert state[b].map_states == []
    assert state[t].result() == 0


def test_unequal_runtime_lengths_fail_naming_each_input():
    with Flow("f") as flow:
        m = add.map(numbers(3), numbers(2))
    state = flow.run()
    assert state[m].is_failed() and not state[m].is_mapped()
    assert "unequal lengths: x=3, y=2" in state[m].message
    assert isinstance(state[m].exception, MappingError)


def test_mapping_over_a_non_sequence_fails_with_advice():
    @task
    def number():
        return 5

    with Flow("f") as flow:
        m = inc.map(number())
    state = flow.run()
    assert "int is not a sequence" in state[m].message
    assert "unmapped" in state[m].message


def test_flatten_unnests_one_level():
    @task
    def pairs(x):
        return [x, x]

    with Flow("f") as flow:
        p = pairs.map([1, 2])
        flat = inc.map(flatten(p))
        const = inc.map(flatten([[1], [2, 3]]))
    state = flow.run()
    assert state[flat].result() == [2, 2, 3, 3]
    assert state[const].result() == [2, 3, 4]


@task
def pairs_but_two(x, fail):
    """[x, x], except for 2: a failure or a skip."""
    if x == 2:
        if fail:
            raise ValueError("no pair for two")
        raise SKIP("two is skipped")
    return [x, x]


@task(skip_on_upstream_skip=False, trigger=triggers.all_finished)
def as_given(xs):
    return xs


def test_flatten_passes_an_item_that_is_not_a_list_through_with_a_warning(caplog):
    @task
    def mixed():
        return [[1, 2], 3, [4]]

    with Flow("f") as flow:
        from_task = inc.map(flatten(mixed()))
        constant = inc.map(flatten([[1, 2], 3]))
    with caplog.at_level("WARNING"):
        state = flow.run()
    assert state[from_task].result() == [2, 3, 4, 5]
    assert state[constant].result() == [2, 3, 4]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "flatten(mixed): 1 item(s) were not lists and passed through as single items."
    ]


def test_flatten_keeps_a_skipped_childs_position_as_none():
    with Flow("f") as flow:
        p = pairs_but_two.map([1, 2, 3], fail=unmapped(False))
        each = inc.map(flatten(p))
        whole = as_given(flatten(p))
    state = flow.run()
    assert [s.name for s in state[each].map_states] == [
        "Completed", "Completed", "Skipped", "Completed", "Completed",
    ]  # fmt: skip
    assert state[whole].result() == [1, 1, None, 3, 3]


def test_flatten_of_a_failed_child_fails_only_the_children_that_depend_on_it():
    with Flow("f") as flow:
        p = pairs_but_two.map([1, 2, 3], fail=unmapped(True))
        each = inc.map(flatten(p))
        again = inc.map(each)
    state = flow.run()
    assert [s.name for s in state[each].map_states] == [
        "Completed", "Completed", "TriggerFailed", "Completed", "Completed",
    ]  # fmt: skip
    assert [s.name for s in state[again].map_states][2] == "TriggerFailed"
    assert state[again].result(raise_on_failure=False)[:2] == [3, 3]
    assert state.message.startswith("1 task run failed: 'pairs_but_two[1]' (ValueError")


@pytest.mark.parametrize("wrapped", [flatten(1), unmapped(flatten(1))], ids=repr)
def test_flatten_of_a_value_that_is_not_a_list_names_the_input(wrapped):
    with (
        pytest.raises(MappingError, match=r"flatten\(x\) needs a list of lists, but x is a int"),
        Flow("f"),
    ):
        add.map(wrapped, y=[1])


def test_flatten_of_an_upstream_that_is_not_a_list_fails_naming_it():
    with Flow("f") as flow:
        m = inc.map(flatten(inc(1)))
    state = flow.run()
    assert "flatten(inc) needs a list of lists, but inc is a int" in state[m].message


def test_a_map_with_nothing_to_map_over_is_refused_at_the_call():
    @task
    def ping():
        return "pong"

    every_input_unmapped = re.escape("add.map() has nothing to map over: every input is unmapped")

    @flow
    def function_flow():
        add.map(unmapped(1), y=unmapped(2))

    with Flow("f") as graph:
        with pytest.raises(MappingError, match=every_input_unmapped):
            add.map(unmapped(1), y=unmapped(2))
        with pytest.raises(MappingError, match="every input is unmapped"):
            ping.map(upstream_tasks=[unmapped(inc(1))])
        with pytest.raises(MappingError, match=r"ping.map\(\) has nothing to map over: it got no"):
            ping.map()
    assert [t.name for t in graph.tasks] == ["inc"]  # nothing half-added
    with pytest.raises(MappingError, match=every_input_unmapped):
        function_flow()
    with pytest.raises(MappingError, match=every_input_unmapped):  # outside a flow, the same
        add.map(unmapped(1), y=unmapped(2))
    with Flow("g") as fine:  # one mapped upstream task is something to map over
        mapped_after = ping.map(upstream_tasks=[inc.map([1, 2])])
    assert fine.run()[mapped_after].result() == ["pong", "pong"]


def test_upstream_tasks_are_mapped_unless_unmapped():
    order = []

    @task
    def setup():
        order.append("setup")

    @task
    def step(x):
        order.append(x)
        return x

    with Flow("f") as flow:
        s = setup()
        a = step.map([1, 2])
        b = step.map([3, 4], upstream_tasks=[a, unmapped(s)])
    state = flow.run()
    assert state[b].result() == [3, 4]
    assert order.index("setup") < order.index(3)
    assert order.index(1) < order.index(3) and order.index(2) < order.index(4)


def test_upstream_task_child_failure_affects_same_index_only():
    with Flow("f") as flow:
        a = fail_on.map([1, 2], bad=unmapped(1))
        b = inc.map([10, 20], upstream_tasks=[a])
    state = flow.run()
    assert [s.name for s in state[b].map_states] == ["TriggerFailed", "Completed"]


def test_failed_source_of_a_map_fails_the_map_as_a_whole():
    @task
    def broken():
        raise RuntimeError("no list today")

    with Flow("f") as flow:
        a = inc.map(broken())
        b = inc.map(a)
    state = flow.run()
    assert state[a].name == "TriggerFailed" and state[b].name == "TriggerFailed"


def test_map_with_element_wise_and_whole_inputs_together():
    with Flow("f") as flow:
        a = inc.map([1, 2, 3])
        b = add.map(a, y=numbers(3))
    assert flow.run()[b].result() == [2, 4, 6]


@pytest.mark.parametrize("value, expect", [(1, "Mapped"), (2, "Skipped")])
def test_a_mapped_task_in_a_case_branch_is_skipped_as_a_whole_when_untaken(value, expect):
    with Flow("f") as flow:
        condition = Parameter("condition")
        with case(condition, 1):
            m = inc.map([1, 2, 3])
            after = inc.map(m)
            summed = total(m)
    state = flow.run(parameters={"condition": value})
    assert [state[t].name for t in (m, after, summed)] == [
        expect,
        expect,
        expect.replace("Mapped", "Completed"),
    ]
    assert state[m].is_skipped() is (value == 2)
    assert state.is_successful()
