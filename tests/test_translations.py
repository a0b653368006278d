"""The translation tables of docs/coming-from-prefect.md, run row by row.

Each row's headrace form (the code spans of its "headrace form" column, as written on the
page) runs in the setting of the seed cell it translates, and what it gives is compared
with what the seed printed: seed 004's In [6] prints 2, In [10] prints 42, and so on.

- The function-flow table (seed 004): every row has a runner here, so a row cannot land
  without being run. Rows that announce a form as "coming with issue: ..." are exempt.
- The graph-flow table (seeds 000-002): the rows that run on their own, in a flow of the
  X-Files tutorial's shape (no web site needed), with the seeds' printed answers.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from headrace import Flow, context, task
from headrace.engine import logs
from headrace.signals import LOOP
from headrace.states import State
from markdown_blocks import table

ROOT = Path(__file__).resolve().parent.parent
TRANSLATION = ROOT / "docs" / "coming-from-prefect.md"
COMING = re.compile(r"coming with issue:", re.IGNORECASE)

sys.path.insert(0, str(ROOT))
from examples.functions import FACT, http_get, start_server  # noqa: E402


def _spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _rows(title: str) -> list[tuple[int, str, list[str]]]:
    """(line, the Prefect form's first span or its text, the headrace form's spans) of a
    table's rows that do not announce a coming form."""
    header, rows = table(TRANSLATION, title)
    lowered = [h.lower() for h in header]
    headrace, note = lowered.index("headrace form"), lowered.index("note")
    return [
        (line, (_spans(cells[0]) or [cells[0]])[0], _spans(cells[headrace]))
        for line, cells in rows
        if not COMING.search(cells[note])
    ]


def run(code: str, namespace: dict) -> None:
    """Run `code` as a notebook cell would: top-level `await` runs in an event loop."""
    compiled = compile(
        inspect.cleandoc(code), str(TRANSLATION), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    if compiled.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(compiled, namespace))
    else:
        exec(compiled, namespace)


def indented(code: str, by: str = "    ") -> str:
    return "\n".join(by + line for line in code.splitlines())


@pytest.fixture(scope="module")
def api():
    server, base = start_server()  # the example's stand-in for the notebook's web APIs
    yield base
    server.shutdown()
    server.server_close()


# == seed 004: the function-flow table ========================================================

FUNCTION_ROWS = _rows("Function flows (Prefect 2.x)")
Runner = Callable[[list[str], dict, pytest.CaptureFixture], None]
FUNCTION_RUNNERS: dict[str, Runner] = {}


def translates(prefect_form: str, runners: dict = FUNCTION_RUNNERS):
    """Register the runner of the row whose Prefect form starts with `prefect_form`."""

    def register(fn):
        runners[prefect_form] = fn
        return fn

    return register


# The notebook's cells, as headrace runs them (`requests.get` is the example's `http_get`).
ADD_ONE = """
@task
def add_one(x):
    return x + 1
"""
MY_ADD_ONE_FLOW = """
@flow
def my_add_one_flow():
    state = add_one(1, return_state=True)
    return state
"""
MY_FAVORITE_FUNCTION_FLOW = """
@flow
def my_favorite_function():
    print("This function doesn't do much")
    return 42

@flow
def my_favorite_function_flow():
    return my_favorite_function(return_state=True)
"""
API_FLOW = """
@task
def call_api(url):
    return http_get(url).json()

@flow
def api_flow(url):
    return call_api(url, return_state=True)
"""


@pytest.fixture
def notebook(api):
    """The namespace of seed 004's notebook after In [1]."""
    namespace = {"http_get": http_get, "time_url": f"{api}/time", "fact_url": f"{api}/fact"}
    run("from headrace import flow, task\nimport asyncio", namespace)
    return namespace


@translates("from prefect import flow, task")
def _(form, ns, capsys):
    fresh = {}
    run(form[0], fresh)
    run(ADD_ONE + "\n@flow\ndef my_flow():\n    return add_one(1)", fresh)  # In [3]
    assert fresh["my_flow"]() == 2


@translates("!prefect version")
def _(form, ns, capsys):
    # In [2]: the version table, with a line per item, the database's among them.
    (path,) = (span for span in form if span.startswith("headrace."))
    module, name = path.rsplit(".", 1)
    main = getattr(__import__(module, fromlist=[name]), name)
    out = CliRunner().invoke(main, ["version"]).output
    for label in ("Version:", "Python version:", "OS/Arch:", "Database:"):
        assert re.search(rf"^{re.escape(label)} +\S", out, re.M), out


@translates("!prefect orion start")
def _(form, ns, capsys):
    # The last cell: the UI over this notebook's runs, where "the subflow shows up".
    import json
    import urllib.request

    run(
        "from headrace import flow\n"
        "@flow\ndef child():\n    return 1\n"
        "@flow\ndef parent():\n    return child()\n"
        "parent_state = parent(return_state=True)",
        ns,
    )
    run(form[0], ns)
    from headrace.store import get_store
    from ui_helpers import serving

    get_store().flush()
    with serving(ns["create_app"]()) as base:
        parent_id = ns["parent_state"].flow_run_id
        with urllib.request.urlopen(f"{base}/api/runs/{parent_id}") as r:
            shown = json.loads(r.read())
        assert [s["flow_name"] for s in shown["subflows"]] == ["child"]


@translates("@flow")
def _(form, ns, capsys):
    run(ADD_ONE + MY_ADD_ONE_FLOW.replace("@flow", form[0]), ns)  # In [3], In [4]
    assert ns["my_add_one_flow"].name == "my-add-one-flow"
    assert ns["my_add_one_flow"]() == 2


@translates("@task")
def _(form, ns, capsys):
    run(ADD_ONE.replace("@task", form[0]), ns)
    assert ns["add_one"](1) == 2  # outside a flow: a plain call


@translates('@task(name="cat-url")')
def _(form, ns, capsys):
    run(
        f"""
        {form[0]}
        def call_api(url):
            response = http_get(url)
            print(f"Response: {{response.status_code}}")
            return response.json()

        @flow(name="cat")
        def api_flow(url):
            fact_json = call_api(url)
            return

        state = api_flow(fact_url)
        """,
        ns,
    )
    assert capsys.readouterr().out == "Response: 200\n"  # In [21]
    assert [r.name for r in ns["api_flow"].last_run.records] == ["cat-url-0"]


@translates('@flow(name="cat")')
def _(form, ns, capsys):
    run(f"@task\ndef call_api(url):\n    return 1\n\n{form[0]}\ndef api_flow(url):\n    return", ns)
    assert ns["api_flow"].name == "cat"
    assert ns["api_flow"]("x") is None


@translates("result = add_one(1)")
def _(form, ns, capsys):
    run(ADD_ONE + f"\n@flow\ndef my_flow():\n{indented(form[0])}\n    return result", ns)
    assert type(ns["my_flow"]()) is int and ns["my_flow"]() == 2  # In [3]: "return int"


@translates("state = add_one(1, return_state=True)")
def _(form, ns, capsys):
    run(ADD_ONE + f"\n@flow\ndef my_add_one_flow():\n{indented(form[0])}\n    return state", ns)
    state = ns["my_add_one_flow"](return_state=True)
    (record,) = ns["my_add_one_flow"].last_run.records
    assert isinstance(record.state, State) and record.state.result() == 2  # In [4]
    assert state.result() == 2


@translates("state = my_add_one_flow()")
def _(form, ns, capsys):
    run(ADD_ONE + MY_ADD_ONE_FLOW, ns)  # In [3], In [4]
    run(form[0], ns)  # In [5]
    assert ns["state"].result() == 2  # In [6]


@translates("state.result()")
def _(form, ns, capsys):
    run(MY_FAVORITE_FUNCTION_FLOW + "\nstate = my_favorite_function_flow(return_state=True)", ns)
    assert eval(form[0], ns) == 42  # In [10]
    run(API_FLOW + "\nstate = api_flow(time_url, return_state=True)", ns)
    answer = eval(form[0], ns)  # In [14]
    assert set(answer) == {"date", "milliseconds_since_epoch", "time"}


@translates("Completed(message=None, type=COMPLETED, result=42)")
def _(form, ns, capsys):
    run(MY_FAVORITE_FUNCTION_FLOW + "\nstate = my_favorite_function_flow(return_state=True)", ns)
    assert capsys.readouterr().out == "This function doesn't do much\n"  # In [8]
    assert repr(ns["state"]) == form[0]  # In [9]


@translates('state_bad = api_flow("foo")')
def _(form, ns, capsys):
    run(API_FLOW, ns)
    run(form[0], ns)  # In [16]: never raises with return_state
    assert ns["state_bad"].is_failed()
    with pytest.raises(ValueError, match="unknown url type: 'foo'"):
        run('api_flow("foo")', ns)


@translates("state_bad")
def _(form, ns, capsys):
    run(API_FLOW + '\nstate_bad = api_flow("foo", return_state=True)', ns)
    error = eval(form[0], ns)  # In [19]
    assert isinstance(error, ValueError)
    assert ns["state_bad"].is_failed() and "ValueError" in ns["state_bad"].message


@translates("print(state)")
def _(form, ns, capsys):
    run(
        """
        @task(name="t-example3-1")
        def call_api(url):
            response = http_get(url)
            print(response.status_code)
            return response.json()

        @task(name="t-example3-2")
        def parse_fact(response):
            print(response["fact"])
            return

        @flow(name="f-example3")
        def api_flow(url):
            fact_json = call_api(url)
            parse_fact(fact_json)
            return

        state = api_flow(fact_url)
        """,
        ns,
    )
    assert capsys.readouterr().out == f"200\n{FACT}\n"  # In [23]
    assert ns["state"] is None
    records = eval(form[0], ns)  # In [24]: two Completed states, the first with the fact
    assert [r.state.is_successful() for r in records] == [True, True]
    assert [r.state.result() for r in records] == [{"fact": FACT, "length": len(FACT)}, None]


@translates("data = common_flow(config={})")
def _(form, ns, capsys):
    run(
        f"""
        @flow
        def common_flow(config: dict):
            print("I am a subgraph that shows up in lots of places!")
            intermediate_result = 42
            return intermediate_result

        @flow
        def main_flow():
        {indented(form[0])}
            return data

        flow_state = main_flow()
        """,
        ns,
    )
    assert ns["flow_state"] == 42
    assert capsys.readouterr().out == "I am a subgraph that shows up in lots of places!\n"
    assert ns["common_flow"].last_run.parent is ns["main_flow"].last_run


@translates("add_one.submit(1)")
def _(form, ns, capsys):
    run(ADD_ONE + f"\n@flow\ndef submits():\n{indented(form[0])}\n    return future.result()", ns)
    assert ns["submits"]() == 2


@translates("add_one.map([1, 2, 3])")
def _(form, ns, capsys):
    run(ADD_ONE + f"\n@flow\ndef maps():\n{indented(form[0])}\n    return futures.result()", ns)
    assert ns["maps"]() == [2, 3, 4]


@translates("add_one(1, wait_for=[future])")
def _(form, ns, capsys):
    body = f"future = add_one.submit(0)\nreturn {form[0]}"
    run(ADD_ONE + f"\n@flow\ndef waits():\n{indented(body)}", ns)
    assert ns["waits"]() == 2
    (first, second) = ns["waits"].last_run.records
    assert second.upstream == [first.id]


@translates("add_one.with_options(name=..., retries=..., timeout=None)")
def _(form, ns, capsys):
    run(ADD_ONE, ns)
    fast = eval(form[0], ns)
    assert (fast.name, fast.retries, fast.timeout) == ("add-one-fast", 2, None)
    assert ns["add_one"].name == "add_one" and fast(1) == 2


@translates("Failed(message=..., data=...)")
def _(form, ns, capsys):
    run(f"from headrace.states import Failed\n@flow\ndef bad_rows():\n    return {form[0]}", ns)
    state = ns["bad_rows"](return_state=True)
    assert state.is_failed() and state.message == "3 rows were bad"
    assert state.result(raise_on_failure=False) == ["a", "b", "c"]


@translates("common_flow(config={}, wait_for=[future])")
def _(form, ns, capsys):
    body = f"future = add_one.submit(0)\nreturn {form[0]}"
    common = "@flow\ndef common_flow(config: dict):\n    return add_one(41)"
    run(f"{ADD_ONE}\n{common}\n@flow\ndef waits():\n{indented(body)}", ns)
    assert ns["waits"]() == 42
    (first, second) = ns["waits"].last_run.records
    assert second.kind == "flow" and second.upstream == [first.id]


@translates("from prefect import get_run_logger")
def _(form, ns, capsys):
    run(form[0] + '\n@flow\ndef logs_a_line():\n    get_run_logger().info("hello")', ns)
    with _console():
        ns["logs_a_line"]()
    name = ns["logs_a_line"].last_run.name
    assert re.search(rf"\| INFO    \| Flow run '{name}' - hello$", capsys.readouterr().err, re.M)


@translates("@flow(log_prints=True)")
def _(form, ns, capsys):
    run(f'{form[0]}\ndef prints():\n    print("to the log")', ns)
    with _console():
        ns["prints"]()
    captured = capsys.readouterr()
    assert captured.out == "" and "- to the log\n" in captured.err


ASYNC_FLOW = """
@task(name="async-url")
async def call_api(url):
    response = http_get(url)
    print(response.status_code)
    return response.json()

@flow(name="async-flow")
async def async_flow(url):
    {fact_json}
    return fact_json["fact"]
"""


@translates("fact_json = await call_api(url)")
def _(form, ns, capsys):
    run(ASYNC_FLOW.format(fact_json=form[0]), ns)  # In [29]
    assert asyncio.run(ns["async_flow"](ns["fact_url"])) == FACT
    assert capsys.readouterr().out == "200\n"


@translates("asyncio.run(async_flow(url))")
def _(form, ns, capsys):
    run(ASYNC_FLOW.format(fact_json="fact_json = await call_api(url)"), ns)
    run(f"url = fact_url\nanswer = {form[0]}", ns)  # In [30], in a script
    assert ns["answer"] == FACT


@translates("asyncio.run(...)")
def _(form, ns, capsys):
    run(ASYNC_FLOW.format(fact_json="fact_json = await call_api(url)"), ns)
    # In [30] in Jupyter: a cell already runs in an event loop.
    run(f"url = fact_url\nanswer = {form[0]}", ns)
    assert ns["answer"] == FACT


class _console:
    """headrace's console handler at INFO for a block, as the notebook shows its logs."""

    def __enter__(self):
        logs.configure()
        self.level = logs.ROOT.level
        logs.ROOT.setLevel("INFO")

    def __exit__(self, *exc):
        logs.ROOT.setLevel(self.level)


@pytest.mark.parametrize(
    ("key", "form"),
    [pytest.param(key, form, id=f"L{line}-{key}") for line, key, form in FUNCTION_ROWS],
)
def test_function_table_row_runs_and_gives_the_seeds_answer(key, form, notebook, capsys):
    assert key in FUNCTION_RUNNERS, f"the row translating `{key}` has no runner in this file"
    FUNCTION_RUNNERS[key](form, notebook, capsys)


def test_every_function_runner_has_its_row():
    keys = {key for _, key, _ in FUNCTION_ROWS}
    stale = sorted(set(FUNCTION_RUNNERS) - keys)
    assert not stale, f"runners for rows the page no longer has: {stale}"


# == seeds 000-002: the graph-flow table =========================================================

GRAPH_ROWS = _rows("Graph flows (Prefect 0.3 / 1.x)")
GRAPH_RUNNERS: dict[str, Runner] = {}
EPISODES = ["BABYLON - 1AYW04", "Pilot - 1X79", "Deep Throat - 1X01"]


@task
def episode_list():
    return EPISODES


@task
def scrape_dialogue(episode):
    """A scraped episode, as seed 000's tasks return it: (name, [(speaker, words)])."""
    return episode, [("MULDER", f"In {episode}."), ("SCULLY", "Mulder.")]


@pytest.fixture
def xfiles():
    """The tutorial's flow shape: one episode's dialogue, and every episode's mapped."""
    with Flow("xfiles") as flow:
        dialogue = scrape_dialogue(EPISODES[0])
        every = scrape_dialogue.map(episode_list())
    return {
        "flow": flow,
        "outer_space": flow.run(),
        "dialogue": dialogue,
        "flow_state": flow.run(return_tasks=[every]),
        "every": every,
    }


def graph_row(prefect_form: str):
    return translates(prefect_form, GRAPH_RUNNERS)


@graph_row("outer_space.result[dialogue]")
def _(form, ns, capsys):
    state = eval(form[0], ns)
    assert isinstance(state, State) and state.is_successful()


@graph_row("state.result[1]")
def _(form, ns, capsys):
    ns["state"] = ns["outer_space"][ns["dialogue"]]
    first_five_spoken_lines = eval(form[0], ns)[:5]
    assert first_five_spoken_lines[0] == ("MULDER", "In BABYLON - 1AYW04.")


@graph_row("flow_state.result[task]")
def _(form, ns, capsys):
    ns["dialogue"] = ns["every"]
    map_states = eval(form[0], ns)
    assert [s.is_successful() for s in map_states] == [True] * len(EPISODES)


@graph_row("mapped_state.result")
def _(form, ns, capsys):
    ns["dialogue"] = ns["every"]
    assert [name for name, _ in eval(form[0], ns)] == EPISODES


@graph_row("[s.result[0] for s in dialogue_state.map_states]")
def _(form, ns, capsys):
    ns["dialogue"] = ns["every"]
    assert eval(form[0], ns) == EPISODES  # "BABYLON - 1AYW04: ...", "Pilot - 1X79: ..."


@graph_row('Success("Task run succeeded.")')
def _(form, ns, capsys):
    # 'BABYLON - 1AYW04: Success("Task run succeeded.")', in headrace's words.
    child = ns["flow_state"][ns["every"]].map_states[0]
    shown = form[0].replace("result=...)", "result=")
    assert repr(child).startswith(shown)


@graph_row("raise LOOP(result=...)")
def _(form, ns, capsys):
    @task
    def count_to_three():
        n = context.get("task_loop_result", 0)
        if n < 3:
            raise LOOP(result=n + 1)
        return n

    assert form[0] == "raise LOOP(result=...)"
    with Flow("loop") as flow:
        counted = count_to_three()
    assert flow.run()[counted].result() == 3


@graph_row("prefect.context.task_loop_result")
def _(form, ns, capsys):
    seen = []

    @task
    def twice():
        seen.append(eval(form[0], {"context": context}))
        if context.task_loop_count < 2:
            raise LOOP(result="first pass")

    with Flow("loop") as flow:
        twice()
    assert flow.run().is_successful()
    assert seen == [None, "first pass"]


@pytest.mark.parametrize(
    ("key", "form"),
    [
        pytest.param(key, form, id=f"L{line}-{key}")
        for line, key, form in GRAPH_ROWS
        if key in GRAPH_RUNNERS
    ],
)
def test_graph_table_row_runs_and_gives_the_seeds_answer(key, form, xfiles, capsys):
    GRAPH_RUNNERS[key](form, xfiles, capsys)


def test_every_graph_runner_has_its_row():
    keys = {key for _, key, _ in GRAPH_ROWS}
    stale = sorted(set(GRAPH_RUNNERS) - keys)
    assert not stale, f"runners for rows the page no longer has: {stale}"
