"""flow.run keywords: parameters, task_states, start_tasks, return_tasks; results and context."""

import ast
import inspect
import re
import threading

import pytest

from headrace import Flow, Parameter, context, task
from headrace.errors import ContextError, FlowBuildError, ParameterError, ResultReleasedError
from headrace.executors import LocalExecutor, ThreadExecutor
from headrace.states import Completed, FlowState, Mapped, Pending, StateType


@task
def inc(x):
    return x + 1


@task
def numbers(n):
    return list(range(n))


@task
def total(xs):
    return sum(xs)


def counting_task(counter, name):
    @task(name=name)
    def counted(*args):
        counter[name] = counter.get(name, 0) + 1
        return sum(a for a in args if isinstance(a, int))

    return counted


# -- parameters ------------------------------------------------------------------


def flow_with_params():
    with Flow("params") as flow:
        url = Parameter("url")
        Parameter("bypass", default=False, required=False)
        inc(url)
    return flow


def test_unknown_and_missing_parameters_are_named_before_anything_runs():
    ran = []

    @task
    def side_effect():
        ran.append(1)

    flow = flow_with_params()
    with flow:
        side_effect()
    with pytest.raises(ParameterError) as info:
        flow.run(parameters={"ulr": 1})
    message = str(info.value)
    assert "unknown parameter(s) 'ulr'" in message
    assert "missing required parameter(s) 'url'" in message
    assert "'url', 'bypass'" in message
    assert ran == []


def test_parameter_values_and_defaults_reach_tasks_and_context():
    @task
    def show(url, bypass):
        return url, bypass, context.parameters

    with Flow("p") as flow:
        url = Parameter("url")
        bypass = Parameter("bypass", default=False)
        s = show(url, bypass)
    state = flow.run(parameters={"url": "u"})
    assert state[s].result() == ("u", False, {"url": "u", "bypass": False})
    assert state[url].result() == "u"


# -- flow state ----------------------------------------------------------------------


def test_flow_state_shape_and_repr():
    with Flow("f") as flow:
        a = inc(1)
    state = flow.run()
    assert isinstance(state, FlowState)
    assert state.type is StateType.COMPLETED and state.is_successful()
    assert repr(state) == "Completed(message='All reference tasks succeeded.')"
    assert state.task_states == {a: state[a]}
    assert state.result() == state.task_states
    assert repr(state[a]) == "Completed(message='Task run succeeded.', result=2)"


def test_flow_fails_when_a_terminal_task_fails_and_result_says_which():
    @task
    def boom():
        raise KeyError("k")

    with Flow("f") as flow:
        inc(1)
        b = boom()
    state = flow.run()
    assert state.is_failed()
    assert "'boom'" in state.message
    with pytest.raises(Exception, match="Failed tasks: 'boom'"):
        state.result()
    assert state.result(raise_on_failure=False) is state.task_states
    assert isinstance(state[b].exception, KeyError)


@task
def maybe_fail(x):
    if x == 3:
        raise ValueError("three is bad")
    return x


def test_failed_flow_message_names_the_task_runs_that_failed_first():
    with Flow("f") as flow:
        t = total(maybe_fail.map([1, 2, 3, 4]))
    state = flow.run()
    assert state[t].name == "TriggerFailed"
    assert state.message == (
        "1 task run failed: 'maybe_fail[2]' (ValueError: three is bad); "
        "downstream: 'total' TriggerFailed."
    )
    assert str(state.exception) == "three is bad"


def test_failed_flow_message_is_bounded_for_large_maps():
    @task
    def always_fail(x):
        raise RuntimeError("x" * 500)

    with Flow("f") as flow:
        total(always_fail.map(range(44)))
    message = flow.run().message
    assert message.startswith("44 task runs failed: 'always_fail[0]' (RuntimeError: xxx")
    assert "'always_fail[2]'" in message and "'always_fail[3]'" not in message
    assert message.endswith(" and 41 more; downstream: 'total' TriggerFailed.")
    assert len(message) < 500


def test_reference_tasks_decide_the_flow_state():
    with Flow("f") as flow:
        bad = maybe_fail(3)
        good = inc(1)
    assert flow.reference_tasks() == [bad, good]
    flow.set_reference_tasks([good])
    assert flow.reference_tasks() == [good]
    state = flow.run()
    assert state.is_successful() and state[bad].is_failed()
    assert state.message == "All reference tasks succeeded."
    flow.set_reference_tasks([bad])
    assert flow.run().message == "1 task run failed: 'maybe_fail' (ValueError: three is bad)."
    with pytest.raises(FlowBuildError, match="not a task of flow 'f'"):
        flow.set_reference_tasks([inc])


def test_unknown_task_lookup_explains():
    with Flow("f") as flow:
        inc(1)
    with pytest.raises(KeyError, match="not a task of this flow run"):
        flow.run()[inc]


# -- results release ------------------------------------------------------------------------


def test_intermediate_results_are_released_terminal_and_return_tasks_kept():
    with Flow("f") as flow:
        a = inc(1)
        b = inc(a)
        c = inc(b)
    state = flow.run(return_tasks=[a])
    assert state[a].result() == 2 and not state[a].is_released()
    assert state[c].result() == 4 and not state[c].is_released()
    assert state[b].is_successful() and state[b].is_released()
    assert state[b].result() == 3  # persisted: read again
    flow.persist_result = False
    unpersisted = flow.run(return_tasks=[a])
    with pytest.raises(ResultReleasedError, match="return_tasks"):
        unpersisted[b].result()


def test_the_released_result_advice_names_only_options_that_work():
    """Every `option=value` the error's advice names is accepted, and following a
    `flow.run` option's advice keeps the result readable."""
    with Flow("f", persist_result=False) as flow:
        a = inc(1)
        inc(a)
    with pytest.raises(ResultReleasedError) as info:
        flow.run()[a].result()
    quoted = " ".join(re.findall(r"`([^`]*)`", str(info.value)))
    options = re.findall(r"(\w+)=([^,)\s]+)", quoted)
    assert options, f"the advice names no option: {info.value}"
    run_keywords = inspect.signature(Flow.run).parameters
    for option, value in options:
        if option in run_keywords:
            assert flow.run(**{option: [a]})[a].result() == 2
        else:
            kept = task(inc.fn, **{option: ast.literal_eval(value)})  # TypeError if none
            with Flow("f", persist_result=False) as following:
                b = kept(1)
                inc(b)
            assert following.run()[b].result() == 2


def test_released_map_children_and_kept_map():
    with Flow("f") as flow:
        a = inc.map([1, 2])
        b = inc.map(a)
    state = flow.run()
    assert state[b].result() == [3, 4]
    assert all(child.is_released() for child in state[a].map_states)
    assert state[a].result() == [2, 3]  # each child read again
    flow.persist_result = False
    with pytest.raises(ResultReleasedError, match=r"'inc\[0\]'"):
        flow.run()[a].result()
    assert flow.run(return_tasks=[a])[a].result() == [2, 3]


def test_return_tasks_must_belong_to_the_flow():
    with Flow("f") as flow:
        inc(1)
    with pytest.raises(ValueError, match="not a task of flow 'f'"):
        flow.run(return_tasks=[inc])


# -- task_states and start_tasks -------------------------------------------------------------


def test_task_states_reuse_finished_states_without_rerunning():
    counter = {}
    first = counting_task(counter, "first")
    second = counting_task(counter, "second")
    with Flow("f") as flow:
        a = first(1)
        b = second(a)
    state1 = flow.run()
    with flow:
        c = inc(b)
    state2 = flow.run(task_states=state1.task_states)
    assert counter == {"first": 1, "second": 1}
    assert state2[c].result() == 2
    assert state2[b] is state1[b]


def test_reused_states_are_never_mutated_by_release():
    with Flow("f") as flow:
        a = inc(1)
    state1 = flow.run()
    with flow:
        inc(a)
    flow.run(task_states=state1.task_states)
    assert state1[a].result() == 2


def test_unfinished_given_states_run_again():
    from headrace.states import Pending

    counter = {}
    first = counting_task(counter, "first")
    with Flow("f") as flow:
        a = first(1)
    flow.run(task_states={a: Pending()})
    assert counter == {"first": 1}


def test_reused_mapped_state_feeds_element_wise_map():
    counter = {}

    @task
    def fetch(x):
        counter[x] = counter.get(x, 0) + 1
        return x * 2

    with Flow("f") as flow:
        fetched = fetch.map([1, 2, 3])
    state1 = flow.run()
    with flow:
        doubled = inc.map(fetched)
    state2 = flow.run(task_states=state1.task_states, start_tasks=[doubled])
    assert state2[doubled].result() == [3, 5, 7]
    assert counter == {1: 1, 2: 1, 3: 1}


def test_a_partly_finished_mapped_state_reuses_its_finished_children_and_runs_the_rest():
    calls = []

    @task
    def work(x):
        calls.append(x)
        return x * 10

    with Flow("f") as flow:
        m = work.map([1, 2, 3, 4])
        after = inc.map(m)
    first = flow.run(return_tasks=[m])
    done = first[m].map_states
    given_m = Mapped([done[0], Pending(), done[2], Pending("interrupted")])
    given_after = Mapped([first[after].map_states[0], Pending(), Pending(), Pending()])
    calls.clear()

    second = flow.run(task_states={m: given_m, after: given_after}, return_tasks=[m])

    assert sorted(calls) == [2, 4]
    assert second[m].result() == [10, 20, 30, 40]
    assert second[after].result() == [11, 21, 31, 41]
    assert second[m].map_states[0] is not done[0]  # copies: the given states stay as they were
    assert given_m.map_states[1].is_pending() and done[0].result() == 10


def test_start_tasks_skip_tasks_above_them_which_pass_none():
    counter = {}
    home = counting_task(counter, "home")

    @task
    def episodes(url, main_html, bypass):
        return [url] if bypass else ["from-home"]

    with Flow("f") as flow:
        url = Parameter("url")
        bypass = Parameter("bypass", default=False)
        page = home(url)
        eps = episodes(url, page, bypass)
        out = inc.map(numbers(2, upstream_tasks=[eps]))
    state = flow.run(
        parameters={"url": "u", "bypass": True},
        start_tasks=[bypass, eps, url],
        return_tasks=[eps],
    )
    assert counter == {}
    assert state[page].name == "NotRun"
    assert state[eps].result() == ["u"]
    assert state.is_successful() and state[out].is_mapped()


def test_a_listed_parameter_starts_the_tasks_below_it():
    counter = {}
    setup = counting_task(counter, "setup")

    with Flow("f") as flow:
        target = Parameter("target")
        ready = setup(target)
        out = inc(2, upstream_tasks=[ready])
    state = flow.run(parameters={"target": "t"}, start_tasks=[target])
    assert counter == {"setup": 1}
    assert state[ready].name == "Completed" and state[out].result() == 3


def test_a_task_between_two_start_tasks_runs():
    counter = {}
    middle = counting_task(counter, "middle")

    with Flow("f") as flow:
        first = inc(1)
        between = middle(first)
        last = inc(between)
    state = flow.run(start_tasks=[first, last])
    assert counter == {"middle": 1}
    assert state[last].result() == 3


def test_start_task_triggers_are_not_checked():
    @task
    def boom():
        raise RuntimeError("x")

    @task
    def after(x):
        return "ran"

    with Flow("f") as flow:
        b = boom()
        a = after(b)
    state1 = flow.run()
    assert state1[a].name == "TriggerFailed"
    state2 = flow.run(task_states=state1.task_states, start_tasks=[a])
    assert state2[a].result() == "ran"


def test_start_tasks_must_belong_to_the_flow():
    with Flow("f") as flow:
        inc(1)
    with pytest.raises(ValueError, match="start_tasks"):
        flow.run(start_tasks=[inc])


# -- context ------------------------------------------------------------------------------------


def test_context_inside_a_task_run():
    @task
    def where():
        return (
            context.flow_name,
            context.task_name,
            context.task_run_name,
            context.map_index,
            context.task_run_count,
            context.get("nope", "default"),
        )

    with Flow("ctx") as flow:
        w = where()
    assert flow.run()[w].result() == ("ctx", "where", "where", None, 1, "default")


def test_context_outside_a_run_is_empty_and_says_so():
    assert repr(context) == "<context: empty (no flow or task is running)>"
    assert context.get("task_name") is None
    with pytest.raises(ContextError, match="only inside a task run"):
        _ = context.task_name
    with pytest.raises(AttributeError, match="has no field 'nonsense'"):
        _ = context.nonsense
    with pytest.raises(AttributeError, match="read-only"):
        context.task_name = "x"


# -- throttle -----------------------------------------------------------------------------------


class ConcurrencyProbe:
    """Counts concurrent entries; each entry waits until `release` lets it go."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def enter(self):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self):
        with self.lock:
            self.now -= 1


@pytest.mark.parametrize("executor", [LocalExecutor(), ThreadExecutor(8)], ids=repr)
def test_throttle_caps_running_runs_per_tag(executor):
    web, db = ConcurrencyProbe(), ConcurrencyProbe()
    barrier = threading.Barrier(2, timeout=5)

    @task(tags=["web"])
    def fetch(i):
        web.enter()
        try:
            if isinstance(executor, ThreadExecutor) and i < 2:
                barrier.wait()  # proves two web runs overlap under a cap of 2
            return i
        finally:
            web.leave()

    @task(tags=["web", "db"])
    def store(i):
        web.enter()
        db.enter()
        web.leave()
        db.leave()
        return i

    with Flow("throttled") as flow:
        f = fetch.map(list(range(20)))
        s = store.map(f)
    state = flow.run(executor=executor, throttle={"web": 2, "db": 1})
    assert state[s].result() == list(range(20))
    assert web.peak <= 2 and db.peak == 1
    if isinstance(executor, ThreadExecutor):
        assert web.peak == 2


def test_throttle_values_are_checked():
    with Flow("f") as flow:
        inc(1)
    with pytest.raises(ValueError, match=r"throttle\['web'\]"):
        flow.run(throttle={"web": 0})


def test_executor_reusable_across_runs():
    executor = ThreadExecutor(2)
    with Flow("f") as flow:
        a = inc.map([1, 2, 3])
    assert flow.run(executor=executor)[a].result() == [2, 3, 4]
    assert flow.run(executor=executor)[a].result() == [2, 3, 4]


def test_state_constructors_and_predicates():
    done = Completed(result=1)
    assert done.is_successful() and done.is_finished() and not done.is_failed()
    assert not done.is_skipped() and not done.is_mapped() and not done.is_cached()
