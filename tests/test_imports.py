"""The import graph of src/vispipe: no cycle, and the segmentation package's layers as its docstring
says (the vocabulary imports nothing of the package; detectors and trackers no step; trackers no
detector family)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src"


def module_name(file: Path) -> str:
    parts = file.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(file: Path) -> set[str]:
    """The vispipe modules ``file`` imports, anywhere in it (function-level imports too), resolved
    to modules that exist (``from pkg import name`` is the module pkg.name where there is one)."""
    module, is_package = module_name(file), file.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names |= {f"{stem}.{a.name}" if f"{stem}.{a.name}" in MODULES else stem for a in node.names}
    return {n for n in names if n in MODULES and n != module}


MODULES = {module_name(f): f for f in SRC.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    return {name: imports(file) for name, file in MODULES.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_in_the_package():
    found = cycle(graph())
    assert found is None, "import cycle: " + " -> ".join(found)


def test_the_cycle_finder_finds_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_the_segmentation_layers_import_downwards_only():
    edges = graph()
    seg = "vispipe.segment"
    below = {
        # the vocabulary: NumPy only, and geometry
        f"{seg}.types": {f"{seg}.geometry"},
        f"{seg}.geometry": set(),
        # the workflow layer: no ML
        f"{seg}.registry": set(),
        f"{seg}.layout": {"vispipe.config", "vispipe.errors", f"{seg}.registry", seg},
    }
    for module, allowed in below.items():
        assert edges[module] <= allowed | {seg}, (module, edges[module] - allowed)
    for module, targets in edges.items():
        if module.startswith((f"{seg}.detect", f"{seg}.track", f"{seg}.models", f"{seg}.files", f"{seg}.evaluation")):
            assert not {t for t in targets if t.startswith(f"{seg}.steps")}, (module, "imports a step")
        if module.startswith(f"{seg}.track"):  # a tracker takes a detector as a Protocol, never a family
            assert not {t for t in targets if t.startswith(f"{seg}.detect") and t != f"{seg}.detect.sam3"}, module
        if module.startswith(f"{seg}.detect"):
            assert not {t for t in targets if t.startswith(f"{seg}.track")}, (module, "imports a tracker")
