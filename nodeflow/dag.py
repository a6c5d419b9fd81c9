"""Directed graphs of node ids, without recursion: order, ancestors and every cycle.

Graph files, plans and validation need three things of the links: a topological order
that keeps the file's order where the links allow it, the ancestors of some nodes, and
every cycle (so validation reports them all, self-links included). These loops are
iterative so a 3,000-node chain is just a longer list, and they import nothing heavy, so
`nodeflow validate` starts fast.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

Edges = Mapping[str, Iterable[str]]
"""For each node, the nodes it reads from (its producers)."""


def topological_order(nodes: list[str], producers: Edges) -> list[str]:
    """`nodes` so that every producer comes before its consumers; ties keep `nodes`' order.

    Producers outside `nodes` are ignored. Raises ValueError when the links form a cycle.
    """
    position = {node: i for i, node in enumerate(nodes)}
    consumers: dict[str, list[str]] = {node: [] for node in nodes}
    waiting = dict.fromkeys(nodes, 0)
    for node in nodes:
        for producer in set(producers.get(node, ())):
            if producer in position:
                consumers[producer].append(node)
                waiting[node] += 1
    ready = [position[node] for node in nodes if waiting[node] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for consumer in consumers[node]:
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                heapq.heappush(ready, position[consumer])
    if len(order) != len(nodes):
        raise ValueError("the links form a cycle")
    return order


def ancestors(starts: Iterable[str], producers: Edges) -> set[str]:
    """`starts` and every node they read from, directly or through others."""
    found: set[str] = set()
    pending = list(starts)
    while pending:
        node = pending.pop()
        if node in found:
            continue
        found.add(node)
        pending.extend(producers.get(node, ()))
    return found


def cycles(nodes: list[str], producers: Edges) -> list[list[str]]:
    """One cycle per strongly connected group of nodes, each as a path in link order.

    A node linked to itself is a cycle of one. Each path starts at its group's first node
    in `nodes`' order and follows links from producer to consumer.
    """
    known = set(nodes)
    consumers: dict[str, list[str]] = {node: [] for node in nodes}
    for node in nodes:
        for producer in producers.get(node, ()):
            if producer in known:
                consumers[producer].append(node)
    found = []
    for group in _strong_components(nodes, consumers):
        members = set(group)
        if len(group) == 1 and group[0] not in consumers[group[0]]:
            continue
        start = min(group, key=nodes.index)
        found.append(_cycle_through(start, members, consumers))
    found.sort(key=lambda path: nodes.index(path[0]))
    return found


def _strong_components(nodes: list[str], consumers: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm with an explicit stack."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, next_child = work.pop()
            if next_child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            children = consumers[node]
            if next_child < len(children):
                work.append((node, next_child + 1))
                child = children[next_child]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(group)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return groups


def _cycle_through(start: str, members: set[str], consumers: dict[str, list[str]]) -> list[str]:
    """A shortest path from `start` back to itself inside one strongly connected group."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in consumers[node]:
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1])] if node != start else [start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    return [start]
