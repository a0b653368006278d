"""Building graph flows: nodes, edges, constants, and the errors that name the culprit."""

import pytest

from headrace import Flow, Parameter, Task, case, tags, task, unmapped
from headrace.errors import CycleError, FlowBuildError, MappingError


@task
def add(x, y=1):
    return x + y


@task
def total(xs):
    return sum(xs)


@task(nout=2)
def split(pair):
    return pair[0], pair[1]


def test_calls_inside_flow_add_nodes_and_run_nothing():
    calls = []

    @task
    def record(x):
        calls.append(x)
        return x

    with Flow("f") as flow:
        a = record(1)
        b = record(a)
    assert calls == []
    assert flow.tasks == [a, b]
    assert a is not record and a.template is record
    assert [(e.upstream, e.downstream, e.key) for e in flow.edges] == [(a, b, "x")]
    assert a.constants == {"x": 1}
    assert flow.terminal_tasks() == [b]
    assert a.slug == "record-1" and b.slug == "record-2"


def test_task_called_outside_a_flow_is_a_plain_call():
    assert add(2, y=3) == 5
    assert add.map([1, 2], y=unmapped(10)) == [11, 12]


def test_with_flow_extends_an_existing_flow():
    with Flow("f") as flow:
        a = add(1)
    with flow:
        b = add(a)
    assert flow.upstream_tasks(b) == {a}
    assert flow.run()[b].result() == 3


def test_parameters_join_the_flow_and_default_rules():
    with Flow("f") as flow:
        url = Parameter("url")
        bypass = Parameter("bypass", default=False, required=False)
        add(url)
    assert url.required and not bypass.required and bypass.default is False
    assert {p.name for p in flow.parameters()} == {"url", "bypass"}


def test_duplicate_parameter_names_are_refused():
    with Flow("f"):
        Parameter("x")
        with pytest.raises(FlowBuildError, match="already has a Parameter named 'x'"):
            Parameter("x")


def test_unknown_argument_names_the_task_and_its_signature():
    with Flow("f"), pytest.raises(FlowBuildError, match=r"'add'.*'z'.*add\(x, y=1\)"):
        add(1, z=2)


def test_missing_argument_names_it():
    with Flow("f"), pytest.raises(FlowBuildError, match="missing argument 'x'"):
        add()


def test_cycle_names_the_tasks_in_it():
    with Flow("f") as flow:
        a = add(1)
        b = add(a)
        c = add(b)
    with pytest.raises(CycleError) as info:
        flow.add_edge(c, a)
    assert [t for t in info.value.cycle] == [c, a, b, c]
    assert "'add-3' -> 'add-1' -> 'add-2' -> 'add-3'" in str(info.value)


def test_self_dependency_is_a_cycle():
    with Flow("f") as flow:
        a = add(1)
    with pytest.raises(CycleError):
        flow.set_dependencies(a, upstream_tasks=[a])


def test_a_node_of_one_flow_is_refused_in_another():
    with Flow("first"):
        a = add(1)
    with Flow("second"), pytest.raises(FlowBuildError, match="belongs to flow 'first'"):
        add(a)


def test_set_dependencies_and_keyword_tasks():
    one = Task(lambda: 1, name="one")
    plus = Task(lambda x: x + 1, name="plus")
    flow = Flow("imperative")
    flow.set_dependencies(plus, keyword_tasks={"x": one})
    assert flow.tasks == [plus, one]
    assert flow.run()[plus].result() == 2


def test_chain_orders_groups():
    with Flow("f") as flow:
        a, b, c, d = (add(i) for i in range(4))
        flow.chain(a, [b, c], d)
    assert flow.upstream_tasks(d) == {b, c}
    assert flow.upstream_tasks(b) == {a} == flow.upstream_tasks(c)


def test_getitem_and_nout_unpacking():
    with Flow("f") as flow:
        first, second = split((3, 4))
        whole = add(first, y=second)
        picked = total([first, second])
    state = flow.run()
    assert state[whole].result() == 7
    assert state[picked].result() == 7


def test_unpacking_without_nout_says_how():
    with Flow("f"), pytest.raises(TypeError, match="nout=N"):
        a, b = add(1)


def test_lists_and_dicts_of_tasks_are_collected():
    @task
    def describe(items, mapping):
        return items, mapping

    with Flow("f") as flow:
        a = add(1)
        b = add(2)
        d = describe([a, b, 5], {"a": a, "fixed": 0})
    assert flow.run()[d].result() == ([2, 3, 5], {"a": 2, "fixed": 0})


def test_variadic_arguments_are_separate_edges():
    @task
    def join(sep, *parts, **named):
        return sep.join(parts) + "|" + ",".join(f"{k}={v}" for k, v in sorted(named.items()))

    @task
    def word(w):
        return w

    with Flow("f") as flow:
        a = word("a")
        j = join("-", a, "b", word("c"), k=a)
    assert {e.key for e in flow.upstream_edges(j)} == {"parts[0]", "parts[2]", "k"}
    assert flow.run()[j].result() == "a-b-c|k=a"


def test_class_based_task_construction_defaults_are_overridden_by_calls():
    class Greet(Task):
        def __init__(self, greeting=None, who=None, **kwargs):
            self.greeting = greeting
            self.who = who
            super().__init__(**kwargs)

        def run(self, greeting=None, who=None):
            return f"{greeting}, {who}"

    hello = Greet(greeting="hello", who="world", name="Hello")
    with Flow("f") as flow:
        default = hello()
        override = hello(who="Scully")
    state = flow.run()
    assert default.name == "Hello"
    assert state[default].result() == "hello, world"
    assert state[override].result() == "hello, Scully"


def test_tags_context_adds_tags():
    with Flow("f") as flow:
        with tags("web", "slow"):
            a = add(1)
        b = add(a)
    assert a.tags == {"web", "slow"} and b.tags == frozenset()
    assert flow.get_tasks(tags=["web"]) == [a]


def test_mapping_a_string_constant_is_refused_at_build_time():
    with Flow("f"), pytest.raises(MappingError, match="str.*unmapped"):
        add.map("abc")


def test_unequal_constant_lengths_are_refused_at_build_time():
    with Flow("f"), pytest.raises(MappingError, match=r"unequal lengths: x=3, y=2"):
        add.map([1, 2, 3], y=[1, 2])


def test_option_validation_names_the_option():
    with pytest.raises(ValueError, match="retries"):
        task(retries=-1)(lambda: 1)
    with pytest.raises(ValueError, match="timeout"):
        task(timeout=0)(lambda: 1)
    with pytest.raises(ValueError, match="retry_delay"):
        task(retry_delay="soon")(lambda: 1)
    with pytest.raises(TypeError, match="define `run"):
        Task()


def test_copy_changes_options_and_leaves_the_original():
    flaky = add.copy(name="flaky_add", retries=2, retry_delay=[1, 5], tags=["web"])
    assert (flaky.name, flaky.retries, flaky.tags) == ("flaky_add", 2, {"web"})
    assert flaky.retry_delay_seconds(2) == 5
    assert (add.name, add.retries, add.tags) == ("add", 0, frozenset())
    with pytest.raises(TypeError, match="unknown task option 'retry'"):
        add.copy(retry=1)


# -- Prefect 1 graph semantics -------------------------------------------------------


def test_plain_values_in_upstream_tasks_are_constants():
    with Flow("f") as flow:
        a = add(1, upstream_tasks=[5, "text", None])
        b = add(a, upstream_tasks=[a, 7])
    flow.set_dependencies(b, upstream_tasks=[8])
    state = flow.run(return_tasks=flow.tasks)
    assert state.is_successful()
    assert state[a].result() == 2 and state[b].result() == 3
    assert sorted(map(repr, (state[t].result() for t in flow.upstream_tasks(a)))) == [
        "'text'",
        "5",
        "None",
    ]
    assert {state[t].result() for t in flow.upstream_tasks(b) if t is not a} == {7, 8}


def test_a_plain_list_in_a_maps_upstream_tasks_is_mapped_like_any_upstream():
    with Flow("f") as flow:
        same_length = add.map([1, 2], upstream_tasks=[[10, 20]])
        passed_whole = add.map([1, 2], upstream_tasks=[unmapped([10, 20, 30])])
        too_long = add.map([1, 2], upstream_tasks=[[10, 20, 30]])
    state = flow.run()
    assert state[same_length].result() == [2, 3]
    assert state[passed_whole].result() == [2, 3]
    assert state[too_long].is_failed() and "unequal lengths" in state[too_long].message


def test_an_edge_into_a_parameter_is_refused_naming_it():
    with Flow("f") as flow:
        url = Parameter("url")
        a = add(1)
        for build in (
            lambda: flow.chain(a, url),
            lambda: flow.add_edge(a, url),
            lambda: flow.set_dependencies(url, upstream_tasks=[a]),
            lambda: flow.set_dependencies(a, downstream_tasks=[url]),
        ):
            with pytest.raises(FlowBuildError, match="Parameter 'url'.*'add'"):
                build()
    assert flow.edges == [] and flow.upstream_tasks(url) == set()
    assert flow.run(parameters={"url": "x"})[url].result() == "x"


def test_chain_returns_the_edges_it_added():
    with Flow("f") as flow:
        a, b, c, d = (add(i) for i in range(4))
        edges = flow.chain(a, [b, c], d)
    assert [(e.upstream, e.downstream) for e in edges] == [(a, b), (a, c), (b, d), (c, d)]
    assert edges == flow.edges
    assert all(e.key is None for e in edges)
    assert flow.chain(a) == []


# -- task operators build tasks, as in Prefect 1 --------------------------------------


@task
def number(x):
    return x


def test_operators_on_tasks_build_nodes_that_compute_them():
    with Flow("operators") as flow:
        a, b = number(7), number(2)
        built = [
            (a + 1, 8),
            (1 + a, 8),
            (a - b, 5),
            (10 - a, 3),
            (a * 2, 14),
            (2 * a, 14),
            (a / b, 3.5),
            (14 / a, 2.0),
            (a // b, 3),
            (15 // a, 2),
            (a % b, 1),
            (15 % a, 1),
            (a**2, 49),
            (2**b, 4),
            (a > 2, True),
            (a < b, False),
            (a >= 7, True),
            (a <= b, False),
            (a & b, 2),  # Prefect 1: `a & b` is `a and b`
            (0 & a, 0),
            (a.is_equal(b), False),
            (a.is_equal(7), True),
            (a.is_not_equal(b), True),
            (a.not_(), False),
            (a.and_(0), 0),
            (a.or_(b), 7),
            (((a + b) * 2).is_equal(18), True),  # operators chain
        ]
    nodes = [node for node, _ in built]
    assert all(isinstance(node, Task) and node in flow for node in nodes)
    assert flow.upstream_tasks(nodes[2]) == {a, b} and flow.upstream_tasks(nodes[0]) == {a}
    state = flow.run(return_tasks=nodes)
    assert [state[node].result() for node in nodes] == [expected for _, expected in built]


def test_operators_leave_tasks_hashable_and_compared_by_identity():
    with Flow("identity") as flow:
        a = number(1)
        b = number(1)
    assert a != b and a == a and len({a, b}) == 2
    assert {a: "x"}[a] == "x"
    assert a in flow and len(flow) == 2  # comparing tasks built no node


def test_a_task_used_as_a_state_dependency_with_or():
    order = []

    @task
    def step(label):
        order.append(label)
        return label

    with Flow("pipes") as flow:
        first, second, third = step("first"), step("second"), step("third")
        assert (third | second) is second and (first | third) is third
    flow.run()
    assert order == ["first", "third", "second"]
    assert flow.upstream_tasks(second) == {third} and flow.upstream_tasks(third) == {first}


def test_operators_inside_a_case_block_are_gated_by_it():
    with Flow("gated") as flow:
        mode = Parameter("mode")
        a = number(3)
        with case(mode, "on"):
            bigger = a + 1
    assert flow.run(parameters={"mode": "on"})[bigger].result() == 4
    assert flow.run(parameters={"mode": "off"})[bigger].is_skipped()


def test_an_operator_after_the_block_extends_the_tasks_flow():
    with Flow("later") as flow:
        a = number(3)
    doubled = a * 2
    assert doubled in flow and flow.run()[doubled].result() == 6


@pytest.mark.parametrize(
    "use",
    [
        lambda t: t + 1,
        lambda t: 1 - t,
        lambda t: t > 2,
        lambda t: t | t,
        lambda t: t.is_equal(1),
        lambda t: t.not_(),
        lambda t: Parameter("p") + 1,
    ],
)
def test_operators_outside_any_flow_say_where_they_work(use):
    with pytest.raises(TypeError, match="inside `with Flow"):
        use(number)
