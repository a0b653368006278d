"""Draw a graph flow as a Graphviz `Digraph`: `flow.visualize()`.

Contract of `visualize(flow, filename=None, format="svg", flow_state=None)`:

- It returns a `graphviz.Digraph`. Building it needs only the `graphviz` Python
  package, never Graphviz's `dot` program: `.source` is the DOT text, and Jupyter
  displays the object itself. No viewer is ever opened.
- One node per flow node, with `node.slug` as its DOT id and `node.name` as its label.
  Plain tasks are boxes. Mapped tasks are stacked boxes (`shape=box3d`) labelled
  "mapped". Parameters are dashed ellipses labelled "Parameter".
- One edge per `flow.edges` entry, labelled with its argument name (`Edge.key`).
  State-only edges (`key is None`, from `upstream_tasks=`) are dashed and get no
  argument name. A mapped edge is bold and its label ends in "[mapped]". A flattened
  edge's label ends in "[flattened]". When an edge is both, the label ends in
  "[flattened, mapped]".
- With `flow_state` (a `FlowState`, or a plain `{node: State}` dict), each node
  that has a state is filled with the colour `STATE_COLORS[state.name]` and
  labelled with that name. A mapped node's label counts its children by state,
  e.g. "200 mapped: 198 Completed, 2 Failed", or reads "mapped: TriggerFailed" when
  the map never split into children. Nodes with no state are drawn uncoloured.
- With `filename`, the graph is also rendered in `format` ("svg", "png",
  "pdf", ...) and written to `filename`. If `filename` has no suffix,
  ".<format>" is added (`"flow"` -> `"flow.svg"`). Rendering needs `dot`; when it
  is missing, `GraphvizNotFoundError` says how to install it.

This module only reads the flow and the states. It never runs anything.
"""

from __future__ import annotations

import os
from collections import Counter

from headrace.errors import HeadraceError

# Fill colour for each state name. Colours are fixed so one picture reads the same way
# every time: green is success, red is failure, yellow is skipped, white is not run,
# blue means in progress and orange means waiting to retry.
# | state name                                  | colour           |
# |---------------------------------------------|------------------|
# | Completed, Cached, Mapped (no failed child) | green  #8fd694   |
# | Mapped with a failed child                  | red    #f28b82   |
# | Failed, TriggerFailed, TimedOut, Crashed    | red    #f28b82   |
# | Skipped                                     | yellow #fde68a   |
# | NotRun                                      | white  #ffffff   |
# | Retrying                                    | orange #ffcc80   |
# | Running, Looped                             | blue   #9ecbff   |
# | Pending, Scheduled                          | grey   #e0e0e0   |
# | Cancelled, Paused                           | grey   #bdbdbd   |
GREEN, RED, YELLOW, WHITE = "#8fd694", "#f28b82", "#fde68a", "#ffffff"
STATE_COLORS: dict[str, str] = {
    "Completed": GREEN,
    "Cached": GREEN,
    "Mapped": GREEN,
    "Failed": RED,
    "TriggerFailed": RED,
    "TimedOut": RED,
    "Crashed": RED,
    "Skipped": YELLOW,
    "NotRun": WHITE,
    "Retrying": "#ffcc80",
    "Running": "#9ecbff",
    "Looped": "#9ecbff",
    "Pending": "#e0e0e0",
    "Scheduled": "#e0e0e0",
    "Cancelled": "#bdbdbd",
    "Paused": "#bdbdbd",
}
# A state name not in the table, for example a custom `Completed(name="Done")`, is
# coloured by its type.
_TYPE_COLORS = {"COMPLETED": GREEN, "FAILED": RED, "CRASHED": RED}

_INSTALL_HELP = (
    "Install Graphviz, which provides `dot`: Debian/Ubuntu `apt-get install graphviz`, "
    "macOS `brew install graphviz`, conda `conda install graphviz`. The Python package "
    "`graphviz` is not enough. Without `dot`, `flow.visualize()` with no filename still "
    "returns the graphviz.Digraph, and its `.source` is the DOT text."
)


class GraphvizNotFoundError(HeadraceError, RuntimeError):
    """Rendering to a file needs Graphviz's `dot` program, and it is not on PATH."""


def state_color(state) -> str | None:
    """The fill colour of `state` (see `STATE_COLORS`), or None if it has no colour."""
    if state.is_mapped() and state.is_failed():
        return RED
    return STATE_COLORS.get(state.name) or _TYPE_COLORS.get(state.type.value)


def _state_text(node, state) -> str:
    """The state line of a node's label: the state name, or child counts for a map."""
    children = getattr(state, "map_states", None)
    if children is None:
        # A map whose upstream failed or was skipped never split into children.
        return f"mapped: {state.name}" if node.mapped else state.name
    counts = Counter(s.name for s in children).most_common()
    detail = ", ".join(f"{n} {name}" for name, n in counts)
    return f"{len(children)} mapped" + (f": {detail}" if detail else "")


def _edge_label(edge) -> str:
    marks = [m for m, on in (("flattened", edge.flat), ("mapped", edge.mapped)) if on]
    suffix = f"[{', '.join(marks)}]" if marks else ""
    return " ".join(p for p in (edge.key, suffix) if p)


def build_graph(flow, flow_state=None):
    """The `graphviz.Digraph` of `flow`, coloured by `flow_state` if given (no `dot` needed)."""
    import graphviz  # imported here so that `import headrace` does not load graphviz

    from headrace.parameters import Parameter

    states = getattr(flow_state, "task_states", flow_state) or {}
    graph = graphviz.Digraph(name=flow.name)
    for node in flow.tasks:
        lines = [graphviz.escape(node.name)]
        attrs = {"shape": "box"}
        styles = []
        if isinstance(node, Parameter):
            lines.append("Parameter")
            attrs["shape"] = "ellipse"
            styles.append("dashed")
        elif node.mapped:
            attrs["shape"] = "box3d"
        state = states.get(node)
        if state is not None:
            lines.append(graphviz.escape(_state_text(node, state)))
            color = state_color(state)
            if color is not None:
                styles.append("filled")
                attrs["fillcolor"] = color
        elif node.mapped:
            lines.append("mapped")
        if styles:
            attrs["style"] = ",".join(styles)
        graph.node(node.slug, label=r"\n".join(lines), **attrs)
    for edge in flow.edges:
        styles = (["dashed"] if edge.key is None else []) + (["bold"] if edge.mapped else [])
        attrs = {"style": ",".join(styles)} if styles else {}
        label = _edge_label(edge)
        if label:
            attrs["label"] = graphviz.escape(label)
        graph.edge(edge.upstream.slug, edge.downstream.slug, **attrs)
    return graph


def visualize(flow, filename=None, format: str = "svg", flow_state=None):
    """Return the flow's `graphviz.Digraph`. With `filename`, also write it in `format`.

    Raises `GraphvizNotFoundError` if a file is asked for and `dot` is missing.
    """
    import graphviz

    graph = build_graph(flow, flow_state)
    if filename is None:
        return graph
    path = os.fspath(filename)
    if not os.path.splitext(path)[1]:
        path = f"{path}.{format}"
    try:
        # Render to bytes ourselves, so graphviz leaves no stray DOT source file next to
        # the picture and nothing opens a viewer.
        data = graph.pipe(format=format)
    except graphviz.ExecutableNotFound as exc:
        raise GraphvizNotFoundError(
            f"Cannot render flow {flow.name!r} to {path!r}: Graphviz's `dot` program was "
            f"not found on PATH. {_INSTALL_HELP}"
        ) from exc
    with open(path, "wb") as f:
        f.write(data)
    return graph
