"""Tests of headrace.visualize: the DOT text of `flow.visualize()`, rendering, and a missing `dot`.

DOT tests run everywhere. They need only the `graphviz` Python package. Tests that render a
file need Graphviz's `dot` program and are skipped when it is not on PATH. The missing-`dot`
test runs for real, with PATH set to an empty directory.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import graphviz
import pytest

from headrace import Flow, Parameter, flatten, task, unmapped
from headrace.errors import HeadraceError
from headrace.signals import SKIP
from headrace.states import (
    Cached,
    Completed,
    Crashed,
    Failed,
    Mapped,
    NotRun,
    Pending,
    Retrying,
    Running,
    Skipped,
    TimedOut,
    TriggerFailed,
)
from headrace.visualize import STATE_COLORS, GraphvizNotFoundError, state_color

GREEN, RED, YELLOW, WHITE = "#8fd694", "#f28b82", "#fde68a", "#ffffff"
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="Graphviz's `dot` program is not on PATH (apt-get install graphviz); rendering needs it",
)

_ID = r'("(?:[^"\\]|\\.)*"|\S+)'
_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def _unquote(text: str) -> str:
    return text[1:-1].replace('\\"', '"') if text.startswith('"') else text


def parse(graph: graphviz.Digraph) -> tuple[dict, dict]:
    """The nodes ({id: attrs}) and edges ({(tail, head): [attrs, ...]}) of `graph`'s DOT text."""
    nodes, edges = {}, {}
    for line in graph.source.splitlines():
        if m := re.fullmatch(rf"\t{_ID} -> {_ID}(?: \[(.*)\])?", line):
            attrs = {k: _unquote(v) for k, v in _ATTR.findall(m[3] or "")}
            edges.setdefault((_unquote(m[1]), _unquote(m[2])), []).append(attrs)
        elif m := re.fullmatch(rf"\t{_ID} \[(.*)\]", line):
            nodes[_unquote(m[1])] = {k: _unquote(v) for k, v in _ATTR.findall(m[2])}
    return nodes, edges


@task
def retrieve_url(url):
    if url == "bad":
        raise ValueError("cannot retrieve 'bad'")
    return f"<html>{url}</html>"


@task
def create_episode_list(base_url, main_html, bypass):
    return ["e1", "bad", "e3"]


@task
def scrape_dialogue(episode_html):
    return ("title", [("MULDER", episode_html)])


@task
def nothing_to_do():
    raise SKIP("nothing new")


def xfiles_flow():
    """The shape of seed 000's full scrape flow, with local functions and no network."""
    with Flow("xfiles") as flow:
        url = Parameter("url")
        bypass = Parameter("bypass", default=False, required=False)
        home_page = retrieve_url(url)
        episodes = create_episode_list(url, home_page, bypass=bypass)
        episode = retrieve_url.map(episodes)
        dialogue = scrape_dialogue.map(episode)
        nothing_to_do(upstream_tasks=[home_page])
    return flow, dialogue


def test_xfiles_flow_nodes_shapes_and_edge_labels():
    flow, _ = xfiles_flow()
    graph = flow.visualize()
    assert isinstance(graph, graphviz.Digraph)
    nodes, edges = parse(graph)
    assert graph.source.startswith("digraph xfiles {")
    assert nodes["url-1"] == {"label": r"url\nParameter", "shape": "ellipse", "style": "dashed"}
    assert nodes["retrieve_url-1"] == {"label": "retrieve_url", "shape": "box"}
    assert nodes["create_episode_list-1"]["label"] == "create_episode_list"
    # The second call of retrieve_url is the map; both keep the task's name as label.
    assert nodes["retrieve_url-2"] == {"label": r"retrieve_url\nmapped", "shape": "box3d"}
    assert nodes["scrape_dialogue-1"] == {"label": r"scrape_dialogue\nmapped", "shape": "box3d"}
    assert len(nodes) == len(flow.tasks) == 7
    assert edges[("url-1", "retrieve_url-1")] == [{"label": "url"}]
    assert edges[("url-1", "create_episode_list-1")] == [{"label": "base_url"}]
    assert edges[("retrieve_url-1", "create_episode_list-1")] == [{"label": "main_html"}]
    assert edges[("bypass-1", "create_episode_list-1")] == [{"label": "bypass"}]
    assert edges[("create_episode_list-1", "retrieve_url-2")] == [
        {"label": "url [mapped]", "style": "bold"}
    ]
    assert edges[("retrieve_url-2", "scrape_dialogue-1")] == [
        {"label": "episode_html [mapped]", "style": "bold"}
    ]
    # A state-only dependency is dashed and has no argument name.
    assert edges[("retrieve_url-1", "nothing_to_do-1")] == [{"style": "dashed"}]
    assert sum(len(v) for v in edges.values()) == len(flow.edges) == 7


def test_flattened_unmapped_and_state_only_mapped_edges_are_marked():
    @task
    def nested():
        return [[1, 2], [3]]

    @task
    def add(x, y):
        return x + y

    @task
    def total(xs):
        return sum(xs)

    with Flow("marks") as flow:
        n = nested()
        a = add.map(flatten(n), y=unmapped(n))
        add.map(a, y=unmapped(1), upstream_tasks=[a])
        total(flatten(n))
    _, edges = parse(flow.visualize())
    assert edges[("nested-1", "add-1")] == [
        {"label": "x [flattened, mapped]", "style": "bold"},
        {"label": "y"},  # unmapped: passed whole, so not marked
    ]
    assert edges[("add-1", "add-2")] == [
        {"label": "x [mapped]", "style": "bold"},
        {"label": "[mapped]", "style": "dashed,bold"},
    ]
    assert edges[("nested-1", "total-1")] == [{"label": "xs [flattened]"}]


def test_run_flow_colours_failed_map_child_and_skipped_task():
    flow, dialogue = xfiles_flow()
    state = flow.run(parameters={"url": "home"})
    assert state.is_failed()  # a child of the map failed
    nodes, _ = parse(flow.visualize(flow_state=state))
    assert nodes["retrieve_url-1"] == {
        "label": r"retrieve_url\nCompleted",
        "shape": "box",
        "style": "filled",
        "fillcolor": GREEN,
    }
    assert nodes["url-1"]["style"] == "dashed,filled"
    assert nodes["url-1"]["fillcolor"] == GREEN
    assert nodes["retrieve_url-2"]["label"] == r"retrieve_url\n3 mapped: 2 Completed, 1 Failed"
    assert nodes["retrieve_url-2"]["fillcolor"] == RED
    assert nodes["retrieve_url-2"]["shape"] == "box3d"
    assert nodes["scrape_dialogue-1"]["label"] == (
        r"scrape_dialogue\n3 mapped: 2 Completed, 1 TriggerFailed"
    )
    assert nodes["scrape_dialogue-1"]["fillcolor"] == RED
    assert nodes["nothing_to_do-1"]["label"] == r"nothing_to_do\nSkipped"
    assert nodes["nothing_to_do-1"]["fillcolor"] == YELLOW
    # A plain {node: State} dict is accepted too and gives the same picture.
    assert flow.visualize(flow_state=state.task_states).source == (
        flow.visualize(flow_state=state).source
    )


def test_successful_map_is_green_and_not_run_task_is_white():
    flow, _ = xfiles_flow()
    by_slug = {t.slug: t for t in flow.tasks}
    state = flow.run(
        parameters={"url": "home", "bypass": True},
        start_tasks=[by_slug["bypass-1"], by_slug["create_episode_list-1"], by_slug["url-1"]],
    )
    nodes, _ = parse(flow.visualize(flow_state=state))
    # The run started below the home page, so it was never fetched.
    assert nodes["retrieve_url-1"]["label"] == r"retrieve_url\nNotRun"
    assert nodes["retrieve_url-1"]["fillcolor"] == WHITE

    @task
    def double(x):
        return 2 * x

    with Flow("ok") as ok:
        double.map([1, 2])
    ok_nodes, _ = parse(ok.visualize(flow_state=ok.run()))
    assert ok_nodes["double-1"]["label"] == r"double\n2 mapped: 2 Completed"
    assert ok_nodes["double-1"]["fillcolor"] == GREEN


def test_map_that_never_split_says_mapped_and_unrun_nodes_stay_uncoloured():
    @task
    def boom():
        raise ValueError("no list")

    with Flow("never split") as flow:
        items = boom()
        retrieve_url.map(items)
    state = flow.run()
    with flow:
        late = scrape_dialogue(items)  # added after the run, so it has no state
    nodes, _ = parse(flow.visualize(flow_state=state))
    assert nodes["retrieve_url-1"]["label"] == r"retrieve_url\nmapped: TriggerFailed"
    assert nodes["retrieve_url-1"]["fillcolor"] == RED
    assert nodes[late.slug] == {"label": "scrape_dialogue", "shape": "box"}


@pytest.mark.parametrize(
    "state, colour",
    [
        (Completed(), GREEN),
        (Cached(), GREEN),
        (Mapped([Completed(), Skipped()]), GREEN),
        (Mapped([Completed(), Failed()]), RED),
        (Mapped([]), GREEN),
        (Failed(), RED),
        (TriggerFailed(), RED),
        (TimedOut(), RED),
        (Crashed(), RED),
        (Skipped(), YELLOW),
        (NotRun(), WHITE),
        (Retrying(), STATE_COLORS["Retrying"]),
        (Running(), STATE_COLORS["Running"]),
        (Pending(), STATE_COLORS["Pending"]),
        (Completed(name="Done"), GREEN),  # unknown name: coloured by its type
        (Failed(name="Rejected"), RED),
    ],
)
def test_state_colour_table(state, colour):
    assert state_color(state) == colour


def test_state_colours_are_distinct_where_the_meaning_differs():
    groups = {"Completed", "Failed", "Skipped", "NotRun", "Retrying", "Running", "Pending"}
    assert len({STATE_COLORS[name] for name in groups}) == len(groups)


def test_import_headrace_does_not_import_graphviz():
    code = "import sys, headrace; print('graphviz' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@needs_dot
def test_render_svg_to_file(tmp_path):
    flow, _ = xfiles_flow()
    with flow:
        task(lambda: 1, name='say "hi"')()  # a quote in a name must not break the DOT text
    target = tmp_path / "xfiles.svg"
    graph = flow.visualize(filename=target, flow_state=flow.run(parameters={"url": "home"}))
    assert isinstance(graph, graphviz.Digraph)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xfiles.svg"]  # no stray DOT file
    root = ET.parse(target).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    for name in ("url", "retrieve_url", "create_episode_list", "scrape_dialogue", 'say "hi"'):
        assert name in texts
    assert "3 mapped: 2 Completed, 1 Failed" in texts
    assert RED in target.read_text()


@needs_dot
def test_render_png_adds_the_format_suffix_when_filename_has_none(tmp_path):
    flow, _ = xfiles_flow()
    flow.visualize(filename=str(tmp_path / "flow"), format="png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flow.png"]
    assert (tmp_path / "flow.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_missing_dot_raises_a_clear_error_and_building_still_works(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("dot") is None
    flow, _ = xfiles_flow()
    assert "retrieve_url" in flow.visualize().source  # building never needs `dot`
    with pytest.raises(GraphvizNotFoundError) as info:
        flow.visualize(filename=tmp_path / "flow.svg")
    assert isinstance(info.value, HeadraceError)
    assert isinstance(info.value, RuntimeError)
    message = str(info.value)
    assert "`dot`" in message
    for hint in (
        "apt-get install graphviz",
        "brew install graphviz",
        "conda install graphviz",
        ".source",
    ):
        assert hint in message
    assert not (tmp_path / "flow.svg").exists()
