"""Configuration: load, merge and validate against the project's JSON schema.

The schema (``config.schema.yaml`` in this package, linked from ``config/``) is the
one place that documents every key. ``config/config.yaml`` holds the full recipe;
other files (``config/demo.yaml``) only override what they change, merged in order
exactly as Snakemake's ``--configfile`` does.

Scripts receive the blocks they need as inline JSON (Snakemake passes them through
``params:``) or read whole YAML files when run by hand; either way a block is
validated against its part of the schema, and errors name the full key path.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

SCHEMA_NAME = "config.schema.yaml"
SCHEMA_HINT = "see config/config.schema.yaml for every key, its type and range"


class ConfigError(UserError, ValueError):
    """A config value is missing, unknown or out of range."""


@lru_cache(maxsize=1)
def schema() -> dict:
    """The project's JSON schema (loaded once)."""
    return yaml.safe_load(resources.files("vispipe").joinpath(SCHEMA_NAME).read_text())


def deep_merge(base: dict, override: dict) -> dict:
    """Return ``base`` updated recursively with ``override`` (dicts merge, the rest replaces)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load(sources: Iterable[str | Path | dict]) -> dict:
    """Merge config sources in order: dicts, inline JSON strings or YAML/JSON files."""
    merged: dict = {}
    for src in sources:
        if isinstance(src, dict):
            doc = src
        elif isinstance(src, str) and src.lstrip().startswith("{"):
            try:
                doc = json.loads(src)
            except json.JSONDecodeError as e:
                raise ConfigError(f"inline config is not valid JSON: {e}") from e
        else:
            path = Path(src)
            if not path.is_file():
                raise ConfigError(f"config file not found: {path}")
            try:
                doc = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{path} is not valid YAML: {e}") from e
            if not isinstance(doc, dict):
                raise ConfigError(f"{path} must hold a mapping of config keys")
        merged = deep_merge(merged, doc)
    return merged


def _subschema(path: str) -> dict:
    """The schema of the block at dotted ``path`` (``$ref``s into ``$defs`` resolved)."""
    root = schema()
    node = root
    for part in [p for p in path.split(".") if p]:
        node = _resolve(node, root)
        props = node.get("properties", {})
        if part not in props:
            raise KeyError(f"the schema has no key {path!r}")
        node = props[part]
    return {"$defs": root.get("$defs", {}), **_resolve(node, root)}


def schema_keys(path: str) -> set[str]:
    """The keys the schema allows in the block at dotted ``path``."""
    return set(_subschema(path).get("properties", {}))


def _resolve(node: dict, root: dict) -> dict:
    ref = node.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        return root["$defs"][ref.split("/")[-1]]
    return node


def _format_error(err, prefix: str) -> str:  # err: jsonschema.ValidationError
    where = ".".join([prefix, *map(str, err.absolute_path)]).strip(".") or "<root>"
    msg = err.message
    if err.validator == "additionalProperties":
        msg += " (a typo? unknown keys are rejected)"
    elif err.validator == "pattern" and isinstance(err.schema, dict) and err.schema.get("description"):
        msg = f"{err.instance!r} is not allowed: {err.schema['description']}"
    return f"config key {where}: {msg}"


def _not_finite(node: Any, where: str) -> list[str]:
    """The keys below ``where`` whose value is NaN or infinity (YAML's .nan and .inf, JSON's NaN):
    the schema's minimum and maximum let NaN through (every comparison with it is false)."""
    if isinstance(node, float) and not math.isfinite(node):
        return [
            f"config key {where or '<root>'}: {node} is not allowed (give a finite number, or null where the key takes it)"
        ]
    if isinstance(node, dict):
        return [e for k, v in node.items() for e in _not_finite(v, f"{where}.{k}".strip("."))]
    if isinstance(node, list):
        return [e for i, v in enumerate(node) for e in _not_finite(v, f"{where}.{i}".strip("."))]
    return []


def validate(block: Any, path: str = "", where: str | None = None) -> Any:
    """Validate ``block`` against the schema at dotted ``path``; raise ConfigError naming the key
    (under ``where`` instead of ``path`` when the block was merged from somewhere else)."""
    import jsonschema  # here, not at the top: loading and merging configs works without it

    validator = jsonschema.Draft202012Validator(_subschema(path))
    errors = sorted(validator.iter_errors(block), key=lambda e: list(e.absolute_path))
    lines = _not_finite(block, path if where is None else where)
    lines += [_format_error(e, path if where is None else where) for e in errors[:10]]
    if lines:
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines[:10]) + f"\n({SCHEMA_HINT})")
    return block


def block(cfg: dict, path: str) -> Any:
    """Pick and validate the block at dotted ``path`` (e.g. ``classify.student``)."""
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"config key {path} is missing ({SCHEMA_HINT})")
        node = node[part]
    return validate(node, path)


def subset(cfg: dict, *paths: str) -> dict:
    """A config holding only the blocks at ``paths``: what a rule passes to its script."""
    out: dict = {}
    for path in paths:
        parts = path.split(".")
        src: Any = cfg
        for part in parts:
            src = src[part]
        dst = out
        for part in parts[:-1]:
            dst = dst.setdefault(part, {})
        dst[parts[-1]] = copy.deepcopy(src)
    return out


def to_json(cfg: dict) -> str:
    """Compact, key-sorted JSON: stable across runs so Snakemake sees only real changes."""
    return json.dumps(cfg, sort_keys=True, separators=(",", ":"))


def params_json(cfg: dict, *paths: str) -> str:
    """The blocks of ``cfg`` at ``paths`` as stable JSON: what a Snakemake rule passes as ``params``."""
    return to_json(subset(cfg, *paths))
