"""Ablation variants: ``classify.variants`` maps a name to overrides of ``classify.student``.

Each variant is the student's block with its overrides merged in, trained and evaluated by the
student's own rules under ``results/classify/variants/NAME/`` (one Snakemake wildcard value, so one
job each). The rule files import this module: the standard library and vispipe.config only.
"""

from __future__ import annotations

from ..config import deep_merge, params_json, validate
from .layout import train_blocks

STUDENT = "student"
VARIANTS = "variants"  # results/classify/variants/NAME/
NAME_PATTERN = "[A-Za-z0-9_-]+"


def names(cfg: dict) -> list[str]:
    """The configured variants, sorted."""
    return sorted(cfg["classify"].get("variants") or {})


def run_dir(name: str) -> str:
    """A variant's folder below results/classify/ (the ``student`` wildcard's value for it)."""
    return f"{VARIANTS}/{name}"


def name_of(student_run: str) -> str:
    """The variant's name from its folder (``variants/no_kd`` -> ``no_kd``); the student is itself."""
    return student_run.split("/", 1)[1] if student_run.startswith(f"{VARIANTS}/") else student_run


def student_block(cfg: dict, student_run: str) -> dict:
    """The ``classify.student`` block that trains ``student_run`` ("student" or "variants/NAME")."""
    base = cfg["classify"][STUDENT]
    if student_run == STUDENT:
        return base
    name = name_of(student_run)
    overrides = (cfg["classify"].get("variants") or {}).get(name)
    if overrides is None:
        raise KeyError(f"no variant {name!r} in classify.variants")
    return deep_merge(base, overrides)


def config_for(cfg: dict, student_run: str) -> dict:
    """``cfg`` with classify.student replaced by ``student_run``'s block: what its training reads."""
    classify = {**cfg["classify"], STUDENT: student_block(cfg, student_run)}
    return {**cfg, "classify": classify}


def train_params(cfg: dict, student_run: str) -> str:
    """The config blocks ``student_run``'s training reads, as its rule's ``params`` JSON."""
    return params_json(config_for(cfg, student_run), *train_blocks(STUDENT))


def validate_variants(cfg: dict) -> None:
    """Each variant, merged over the student, must be a valid student block; errors name the key
    inside the variant (``classify.variants.NAME.model.depth``)."""
    for name in names(cfg):
        validate(student_block(cfg, run_dir(name)), f"classify.{STUDENT}", where=f"classify.{VARIANTS}.{name}")


def uses_teacher(block: dict) -> bool:
    """Training with ``kd.alpha`` 0 needs no teacher: the student learns the labels alone."""
    return block["kd"]["alpha"] > 0


def kd_control(cfg: dict) -> str | None:
    """The variant that is the student without knowledge distillation, if one is configured: it
    sets ``kd.alpha`` to 0 and changes nothing else but (optionally) ``model.distill_token``.
    Its top-1 is what the student's KD gain is measured against."""
    for name in names(cfg):
        overrides = cfg["classify"]["variants"][name]
        kd, model = overrides.get("kd") or {}, overrides.get("model") or {}
        if (
            set(overrides) <= {"kd", "model"}
            and kd.get("alpha") == 0
            and set(kd) <= {"alpha", "temperature"}
            and set(model) <= {"distill_token"}
        ):
            return name
    return None


def describe_overrides(overrides: dict, prefix: str = "") -> str:
    """Overrides in words: ``kd.alpha=0, model.distill_token=false``."""
    parts = []
    for key, value in sorted(overrides.items()):
        if isinstance(value, dict):
            parts.append(describe_overrides(value, f"{prefix}{key}."))
        else:
            text = str(value).lower() if isinstance(value, bool) or value is None else str(value)
            parts.append(f"{prefix}{key}={text}")
    return ", ".join(p for p in parts if p)
