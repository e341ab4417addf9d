"""How a rule names the files it declares: one convention for every rule, from the file names that
:mod:`vispipe.classify.layout` and :mod:`vispipe.segment.layout` define.

Imported by the rule files: the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

# What a copy of the workflow needs to run elsewhere (tests and benchmarks run in such copies).
WORKFLOW_FILES = [
    "Snakefile",
    "rules",
    "config",
    "scripts",
    "envs",
    "report",
    "profiles",
    "resources/demo",
    "constraints.txt",
]


def output_key(name: str) -> str:
    """The key of output file ``name`` in a rule: every character that cannot appear in a Python name
    becomes ``_`` (``metrics.json`` -> ``metrics_json``, ``first/mask.png`` -> ``first_mask_png``), so
    files that share a stem (``report.txt``, ``report.csv``) keep distinct keys."""
    return re.sub(r"\W", "_", name)


def outputs(folder: str, names: Iterable[str], mark: dict[str, Callable] | None = None) -> dict[str, Any]:
    """A rule's named outputs: ``{output_key(name): f"{folder}/{name}"}``; a name in ``mark`` has its
    path passed through the callable given there (e.g. Snakemake's ``report`` flag)."""
    names, mark = list(names), mark or {}
    unknown = set(mark) - set(names)
    if unknown:
        raise KeyError(f"mark names {sorted(unknown)}, which are not among the outputs {list(names)}")
    return {output_key(name): mark.get(name, str)(f"{folder}/{name}") for name in names}


def report_mark(
    flag: Callable, category: str, subcategory: str | None = None, caption: str | None = None,
    caption_dir: str = "report", **labels: str,
) -> Callable[[str], Any]:  # fmt: skip
    """A mark for :func:`outputs` (or for a path): ``flag`` (Snakemake's ``report``) with this category,
    subcategory, caption file ``{caption_dir}/{caption}.rst`` and labels."""
    caption_path = f"{caption_dir}/{caption}.rst" if caption else None
    return lambda path: flag(
        path, category=category, subcategory=subcategory, caption=caption_path, labels=labels or None
    )
