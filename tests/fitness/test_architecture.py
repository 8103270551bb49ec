"""Architecture rules a newcomer can rely on: no import cycles between copyscope's modules, imports only down
the layers docs/ARCHITECTURE.md lists, the tree that document draws, and no module over 400 lines. They walk
the source with ast (imports inside functions count: a lazy import still ties two modules together), so they
need nothing installed and run in well under a second."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from helpers.paths import REPO

PACKAGE = REPO / "copyscope"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The copyscope module that defines ``name`` (the longest known prefix)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> the copyscope modules it imports (anywhere in its body). ``from pkg import sub`` counts
    as importing ``pkg.sub`` when that is a module; importing a package counts as importing its __init__."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_package, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                owner = _owner(t, modules)
                if owner is not None and owner != mod:
                    graph[mod].add(owner)
    return graph


def _is_ancestor_package(a: str, b: str) -> bool:
    return b.startswith(a + ".")


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan). An edge from a submodule up to
    its own package's __init__ is ignored: Python runs a package's __init__ before any submodule, so a
    submodule using a name its package defines is ordinary, not a cycle."""
    edges = {m: {t for t in ts if not _is_ancestor_package(t, m)} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def shortest_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle through the component's first module (what to break), by breadth-first search."""
    start, inside = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & inside):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return component


def test_cycle_finder_sees_a_cycle_and_ignores_package_parents():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"p": {"p.x"}, "p.x": {"p"}}) == []  # p.x -> p is its own package
    assert find_cycles({"p.x": {"p.y"}, "p.y": {"p.x"}}) == [["p.x", "p.y"]]


def test_import_graph_sees_imports_inside_functions():
    graph = import_graph()
    # copyscope.demo.cli imports build_demo_zoo lazily, inside a command function
    assert any(t.startswith("copyscope.demo.") for t in graph["copyscope.demo.cli"])
    assert "copyscope.common.errors" in graph["copyscope.estimate.shapley.estimators"]


def test_no_import_cycles():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles between copyscope modules (one cycle shown per tangle):\n" + "\n".join(
        f"{len(c)} modules, e.g. " + " -> ".join(shortest_cycle(graph, c)) for c in cycles)


def test_no_module_over_400_lines():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them): " + ", ".join(
        f"{m} ({n})" for m, n in sorted(long.items(), key=lambda kv: -kv[1]))


# -- the layers of docs/ARCHITECTURE.md ---------------------------------------------------------------

ARCHITECTURE = PACKAGE.parent / "docs" / "ARCHITECTURE.md"


def documented_layers() -> list[list[str]]:
    """The numbered list under "## Layers" in docs/ARCHITECTURE.md: per layer, its entries (`pkg/`, `pkg/mod.py`)."""
    text = ARCHITECTURE.read_text()
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    layers = []
    for line in section.splitlines():
        m = re.match(r"^(\d+)\. (.*)$", line)
        if m:
            assert int(m.group(1)) == len(layers) + 1, f"docs/ARCHITECTURE.md: layer {m.group(1)} out of order"
            layers.append(re.findall(r"`([^`]+)`", m.group(2)))
    return layers


def _entry_module(entry: str) -> tuple[str, bool]:
    """`score/` -> ("copyscope.score", True: a package prefix); `plan/games.py` -> ("copyscope.plan.games", False)."""
    if entry.endswith("/"):
        return "copyscope." + entry.rstrip("/").replace("/", "."), True
    name = entry.removesuffix(".py").replace("/", ".")
    return ("copyscope" if name == "__init__" else "copyscope." + name), False


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    """The layer of the longest entry that names ``module`` (a package entry names its whole subtree)."""
    best, best_len = None, -1
    for i, entries in enumerate(layers, start=1):
        for entry in entries:
            name, is_pkg = _entry_module(entry)
            if module == name or (is_pkg and module.startswith(name + ".")):
                if len(name) > best_len:
                    best, best_len = i, len(name)
    return best


def test_every_documented_entry_exists_and_every_module_has_a_layer():
    layers = documented_layers()
    assert len(layers) >= 5
    modules = _modules()
    for entries in layers:
        for entry in entries:
            name, is_pkg = _entry_module(entry)
            assert name in modules or any(m.startswith(name + ".") for m in modules), f"ARCHITECTURE.md names {entry}: no such module"
    unplaced = sorted(m for m in modules if layer_of(m, layers) is None)
    assert not unplaced, "modules the layer list of docs/ARCHITECTURE.md does not place: " + ", ".join(unplaced)


def test_imports_only_go_down_the_documented_layers():
    layers = documented_layers()
    graph = import_graph()
    upward = []
    for mod, targets in graph.items():
        for t in targets:
            if _is_ancestor_package(t, mod):
                continue  # a submodule using its own package's names (Python runs the __init__ first anyway)
            if layer_of(t, layers) > layer_of(mod, layers):
                upward.append(f"{mod} (layer {layer_of(mod, layers)}) imports {t} (layer {layer_of(t, layers)})")
    assert not upward, "imports up the layers of docs/ARCHITECTURE.md:\n" + "\n".join(sorted(upward))


def test_the_top_level_holds_only_the_cli_the_face_and_packages():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "cli.py"], top
    assert (PACKAGE / "audit" / "__init__.py").is_file()  # the audit entry point
    documented = set(re.findall(r"^  (\w+)/ ", ARCHITECTURE.read_text(), flags=re.M))
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert documented == packages, f"the tree in docs/ARCHITECTURE.md and copyscope/ differ: {documented ^ packages}"


def test_layer_of_takes_the_longest_entry():
    layers = [["common/", "plan/coalitions.py"], ["plan/"], ["__init__.py"]]
    assert layer_of("copyscope.common.errors", layers) == 1
    assert layer_of("copyscope.plan.coalitions", layers) == 1  # the module's own entry beats its package's
    assert layer_of("copyscope.plan.games", layers) == 2
    assert layer_of("copyscope", layers) == 3
    assert layer_of("copyscope.score.scorer", layers) is None
