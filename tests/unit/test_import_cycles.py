"""No import cycles between our modules.

A cycle makes the import order matter (a name read before its module has finished loading) and
leaves no obvious home for new code; the HTTP layer once had six modules in one (issue 11).
Imports inside functions count too: they are how a cycle usually hides.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Set

import grimp

PACKAGES = ("contracts", "edge", "storage", "ingest", "dispatch", "civicwatch", "models", "loadgen")


def _imports() -> dict[str, set[str]]:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    return {
        module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules
    }


def strongly_connected(edges: Mapping[str, Set[str]]) -> Iterator[list[str]]:
    """Tarjan's algorithm, without recursion: every group of modules that import each other
    (directly or through others), sorted; a module importing itself is a group of one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in edges.get(node, ()):
                    yield sorted(group)


def test_the_finder_sees_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(strongly_connected(edges)) == [["a", "b", "c"], ["e"]]


def test_no_module_imports_itself_back() -> None:
    cycles = list(strongly_connected(_imports()))
    assert cycles == [], "modules that import each other (directly or in a ring): " + "; ".join(
        " <-> ".join(group) for group in cycles
    )
