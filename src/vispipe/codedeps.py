"""Which source files a step runs, and a hash of them: so that editing the code reruns its steps.

Snakemake's ``code`` trigger sees only a rule's own text; our rules run ``python scripts/x.py``,
so an edit to the script or to the library it imports would otherwise rerun nothing. Each rule
passes :func:`code_hash` of its script as a param: the hash covers the script and every vispipe
module it imports, directly or through other vispipe modules (found by reading their ``import``
statements, function-level imports included, without importing anything). Editing one of
those files changes the hash, and Snakemake reruns exactly the steps whose code changed.

Standard library only: the workflow layer imports this on every dry run.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "vispipe"


def package_root() -> Path:
    """The folder holding the vispipe package that the scripts import (``src/`` in a checkout)."""
    import vispipe

    return Path(vispipe.__file__).resolve().parent.parent


def _module_file(name: str, root: Path) -> Path | None:
    path = root.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(file: Path, module: str) -> set[str]:
    """Dotted names of the vispipe modules ``file`` (module ``module``) imports, anywhere in it."""
    tree = ast.parse(file.read_text(), str(file))
    is_package = file.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                parts = module.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names.add(stem)
            names.update(f"{stem}.{a.name}" for a in node.names)  # `from pkg import module`
    return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}


@cache
def source_files(script: Path, root: Path, modules: tuple[str, ...] = ()) -> tuple[Path, ...]:
    """``script`` and every vispipe module file it reaches through imports (sorted, unique); also
    ``modules`` (dotted names) and what they reach: the modules a step imports by name
    (vispipe.segment.registry), which no ``import`` line shows."""
    seen: dict[Path, str] = {}
    todo: list[tuple[Path, str]] = [(script, "__main__")]
    for name in modules:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # the module and the packages on its way
            found = _module_file(".".join(parts[:i]), root)
            if found is None:
                raise ValueError(f"no module {'.'.join(parts[:i])} under {root}")
            todo.append((found, ".".join(parts[:i])))
    while todo:
        file, module = todo.pop()
        if file in seen:
            continue
        seen[file] = module
        for name in _imports(file, module):
            # importing pkg.mod also runs every package __init__ on the way
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                dotted = ".".join(parts[:i])
                found = _module_file(dotted, root)
                if found is not None and found not in seen:
                    todo.append((found, dotted))
    return tuple(sorted(seen))


def code_hash(script: str | Path, root: Path | None = None, modules: tuple[str, ...] = ()) -> str:
    """sha256 (16 hex) over the contents of ``script`` and the vispipe modules it runs (``modules``:
    those it imports by name, see :func:`source_files`)."""
    root = root or package_root()
    script = Path(script).resolve()
    # keyed and ordered by names that do not depend on where the checkout lies
    keyed = {(str(f.relative_to(root)) if f.is_relative_to(root) else f"<script>/{f.name}"): f
             for f in source_files(script, root, tuple(modules))}  # fmt: skip
    h = hashlib.sha256()
    for key in sorted(keyed):
        h.update(key.encode() + b"\0" + keyed[key].read_bytes() + b"\0")
    return h.hexdigest()[:16]


def script_hash(scripts_dir: str | Path, name: str, *modules: str) -> str:
    """:func:`code_hash` of ``scripts_dir/name`` and the ``modules`` it imports by name (the rules'
    ``code`` param)."""
    return code_hash(Path(scripts_dir) / name, modules=modules)
