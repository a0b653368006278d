"""A run's graph and timeline, laid out on the server from its recorded task runs.

Nodes are tasks, by task key: a map is one node, its children counted by
state, whatever their number. Edges come from the recorded upstream ids of
every task run (a child's edge is its map's), never guessed from names, so
both flow styles draw the same way. Layers are longest paths from the roots
(a task sits right of everything it waited for); within a layer tasks keep
the order they started in. The template draws it as SVG, every label escaped.

The timeline has a lane per task: its span from first start to last end, and
for a map the share of its children in each state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NODE_W, NODE_H, GAP_X, GAP_Y = 220, 44, 50, 16  # drawings.html draws NODE_W x NODE_H


@dataclass
class Node:
    key: str
    name: str
    link: str  # the task run's id, for its page
    state: str = "Pending"
    state_type: str = "PENDING"
    counts: dict[str, int] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None
    layer: int = 0
    x: int = 0
    y: int = 0

    @property
    def size(self) -> int:
        return sum(self.counts.values())


def nodes_and_edges(task_runs: list) -> tuple[list[Node], list[tuple[Node, Node]]]:
    """One node per task key (children folded into their map), and the edges between."""
    key_of: dict[str, str] = {}
    nodes: dict[str, Node] = {}
    for t in task_runs:
        key = t.task_key or t.name
        key_of[t.id] = key
        node = nodes.get(key)
        if node is None:
            node = nodes[key] = Node(key, t.task_name, t.parent_task_run_id or t.id)
        if t.map_index is not None:
            node.counts[t.state_name] = node.counts.get(t.state_name, 0) + 1
        else:
            node.state, node.state_type, node.link = t.state_name, t.state_type, t.id
        if t.start_time is not None and (node.start is None or t.start_time < node.start):
            node.start = t.start_time
        if t.end_time is not None and (node.end is None or t.end_time > node.end):
            node.end = t.end_time
    pairs = set()
    for t in task_runs:
        for up in t.upstream:
            if up in key_of and key_of[up] != key_of[t.id]:
                pairs.add((key_of[up], key_of[t.id]))
    edges = [(nodes[a], nodes[b]) for a, b in sorted(pairs)]
    return list(nodes.values()), edges


def layout(nodes: list[Node], edges: list[tuple[Node, Node]]) -> tuple[int, int]:
    """Place the nodes (layers by longest path); the drawing's width and height."""
    ups: dict[str, list[Node]] = {n.key: [] for n in nodes}
    for a, b in edges:
        ups[b.key].append(a)
    placed: dict[str, int] = {}
    for node in sorted(nodes, key=lambda n: (n.start is None, n.start or 0.0)):
        stack = [node]
        while stack:  # iterative: a chain of thousands must not hit the recursion limit
            top = stack[-1]
            pending = [u for u in ups[top.key] if u.key not in placed and u is not top]
            if pending and not any(u in stack for u in pending):
                stack.extend(pending)
                continue
            placed[top.key] = 1 + max((placed.get(u.key, 0) for u in ups[top.key]), default=-1)
            top.layer = placed[top.key]
            stack.pop()
    rows: dict[int, int] = {}
    for node in sorted(nodes, key=lambda n: (n.layer, n.start is None, n.start or 0.0)):
        row = rows.get(node.layer, 0)
        rows[node.layer] = row + 1
        node.x = node.layer * (NODE_W + GAP_X)
        node.y = row * (NODE_H + GAP_Y)
    width = (max((n.layer for n in nodes), default=0) + 1) * (NODE_W + GAP_X)
    height = max(rows.values(), default=1) * (NODE_H + GAP_Y)
    return width, height


def timeline(nodes: list[Node], width: int = 900) -> tuple[list[dict], float | None, float]:
    """Lanes: per node, x and width of its span on a `width`-pixel axis, and a map's
    state shares; the axis's start and its length in seconds."""
    starts = [n.start for n in nodes if n.start is not None]
    ends = [n.end for n in nodes if n.end is not None]
    if not starts:
        return [], None, 0.0
    origin, last = min(starts), max(ends or starts)
    span = max(last - origin, 1e-6)
    lanes = []
    for n in sorted(nodes, key=lambda n: (n.start is None, n.start or 0.0)):
        if n.start is None:
            continue
        x = (n.start - origin) / span * width
        w = max(((n.end or last) - n.start) / span * width, 2.0)
        total = n.size
        shares, at = [], x
        for state, count in sorted(n.counts.items()):
            part = w * count / total
            shares.append({"state": state, "x": at, "w": part, "count": count})
            at += part
        lanes.append({"node": n, "x": x, "w": w, "shares": shares})
    return lanes, origin, span
