"""The package layout's rules, checked from the source's own imports (every import statement,
those under `if TYPE_CHECKING:` included):

* `slotcore/` is the contract: it imports neither `proxy` nor `dashboard`, and no asyncio;
* `proxy/` and `dashboard/` share only `slotcore/`: neither imports the other;
* no module imports in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("slotcore", "proxy", "dashboard")


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            out[module_name(path)] = path
    return out


MODULES = modules()


def imports_of(name: str, path: Path) -> set[str]:
    """The project modules `name` imports (a `from pkg import mod` names pkg.mod if it is one)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            # The longest project module the target names (pkg.mod.attr -> pkg.mod).
            parts = t.split(".")
            while parts and ".".join(parts) not in MODULES:
                parts.pop()
            if parts and ".".join(parts) != name:
                found.add(".".join(parts))
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def test_every_package_is_read() -> None:
    for pkg in PACKAGES:
        assert sum(1 for m in MODULES if m.split(".")[0] == pkg) > 3, pkg


def test_slotcore_imports_neither_side_nor_asyncio() -> None:
    for name, path in MODULES.items():
        if name.split(".")[0] != "slotcore":
            continue
        assert all(d.split(".")[0] == "slotcore" for d in GRAPH[name]), (name, GRAPH[name])
        tree = ast.parse(path.read_text())
        used = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        used |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {u for u in used if u.split(".")[0] == "asyncio"}, f"{name} uses asyncio"


@pytest.mark.parametrize(("side", "other"), [("proxy", "dashboard"), ("dashboard", "proxy")])
def test_the_two_sides_share_only_the_contract(side: str, other: str) -> None:
    bad = {name: sorted(d for d in deps if d.split(".")[0] == other)
           for name, deps in GRAPH.items() if name.split(".")[0] == side}
    assert not {k: v for k, v in bad.items() if v}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of module names, or None (iterative DFS, white/grey/black)."""
    state: dict[str, int] = {}
    for root in graph:
        if state.get(root):
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
    return None


# What the client package (a connection, its state, modes and reply FIFO) sits below: it gets
# dispatch and the blocking engine handed in, through protocols of its own.
ABOVE_CLIENT = ("proxy.dispatch", "proxy.blocking", "proxy.handlers", "proxy.fanout",
                "proxy.server", "proxy.app", "proxy.control", "proxy.report")


def test_the_client_package_imports_nothing_above_it() -> None:
    bad = {name: sorted(d for d in deps if d.startswith(ABOVE_CLIENT))
           for name, deps in GRAPH.items() if name.startswith("proxy.client")}
    assert not {k: v for k, v in bad.items() if v}


def test_the_graph_sees_real_imports() -> None:
    assert "proxy.server" in GRAPH["proxy.app"]
    assert "proxy.client.context" in GRAPH["proxy.dispatch"]
    assert "slotcore.keyslot" in GRAPH["proxy.dispatch"]


def test_no_module_imports_in_a_circle() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle or [])


def room(name: str) -> str:
    """The package (or top-level module) a module belongs to: proxy.client.modes.auth ->
    proxy.client, proxy.dispatch -> proxy.dispatch, dashboard.model.records -> dashboard.model."""
    return ".".join(name.split(".")[:2])


def test_no_package_imports_in_a_circle() -> None:
    """Between packages too: a package never imports one that imports it back (each sits
    above what it uses), so the tree reads as layers."""
    rooms: dict[str, set[str]] = {}
    for name, deps in GRAPH.items():
        rooms.setdefault(room(name), set()).update(room(d) for d in deps if room(d) != room(name))
    cycle = find_cycle(rooms)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
