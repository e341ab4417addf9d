"""How a rule names the files it declares: one convention for every rule, from the file names that
:mod:`vispipe.classify.layout` and :mod:`vispipe.segment.layout` define.

Imported by the rule files: the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable


def output_key(name: str) -> str:
    """The key of output file ``name`` in a rule: every character that cannot appear in a Python name
    becomes ``_`` (``metrics.json`` -> ``metrics_json``, ``first/mask.png`` -> ``first_mask_png``), so
    files that share a stem (``report.txt``, ``report.csv``) keep distinct keys."""
    return re.sub(r"\W", "_", name)


def outputs(folder: str, names: Iterable[str]) -> dict[str, str]:
    """A rule's named outputs: ``{output_key(name): f"{folder}/{name}"}``."""
    return {output_key(name): f"{folder}/{name}" for name in names}
