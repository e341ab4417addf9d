"""Ablation variants and seed replicates: what each training run is, by its folder below results/classify/.

``classify.variants`` maps a name to overrides of ``classify.student``. Each variant is the
student's block with its overrides merged in, trained and evaluated by the student's own rules
under ``results/classify/variants/NAME/`` (one Snakemake wildcard value, so one job each).

``classify.seeds`` (null: ``[classify.seed]``) replicates every run, the teacher, the student and
each variant, once per seed: the first seed's runs keep their folders (``teacher``, ``student``,
``variants/NAME``), each further seed's live under ``seedN/`` (``seed1/student``), and each seed's
student learns from that seed's teacher. A run's seed is its rule's ``classify.seed``; the list
itself is no param, so adding a seed reruns nothing that exists.

The rule files import this module: the standard library and vispipe.config only.
"""

from __future__ import annotations

import re

from ..config import deep_merge, params_json, validate
from .layout import CLS, EVAL, EVALUATED, METRICS, train_blocks

TEACHER, STUDENT = "teacher", "student"
VARIANTS = "variants"  # results/classify/variants/NAME/
NAME_PATTERN = "[A-Za-z0-9_-]+"


SEED_DIR = re.compile(r"seed(\d+)/(.+)")  # seed1/student -> 1, student


def seeds(cfg: dict) -> list[int]:
    """Every run's seeds, the first one's runs at the plain folders."""
    return list(cfg["classify"].get("seeds") or [cfg["classify"]["seed"]])


def seed_prefix(cfg: dict, seed: int) -> str:
    """The folder prefix of ``seed``'s runs: none for the first seed, ``seedN/`` for the others."""
    return "" if seed == seeds(cfg)[0] else f"seed{seed}/"


def seed_pattern(cfg: dict) -> str:
    """A regular expression for the optional seed prefix of a run's folder (for wildcard constraints)."""
    extra = seeds(cfg)[1:]
    return f"(seed({'|'.join(map(str, extra))})/)?" if extra else ""


def split_run(cfg: dict, run: str) -> tuple[int, str]:
    """``run``'s seed and its run without the prefix: ``seed1/variants/no_kd`` -> (1, ``variants/no_kd``)."""
    m = SEED_DIR.fullmatch(run)
    return (int(m[1]), m[2]) if m else (seeds(cfg)[0], run)


def role_of(cfg: dict, run: str) -> str:
    """``teacher`` for a teacher's run (of any seed), ``student`` for the student's and every variant's."""
    return TEACHER if split_run(cfg, run)[1] == TEACHER else STUDENT


def checkpoint(cfg: dict, run: str) -> str:
    """The checkpoint ``run`` (seed prefix included) is evaluated by: a teacher's model.pt, a student's best.pt."""
    return f"{CLS}/{run}/{EVALUATED[role_of(cfg, run)]}"


def teacher_of(cfg: dict, student_run: str) -> str:
    """The checkpoint of the teacher ``student_run`` learns from: its own seed's."""
    return checkpoint(cfg, f"{seed_prefix(cfg, split_run(cfg, student_run)[0])}{TEACHER}")


def every_seed(cfg: dict, run: str, name: str = f"{EVAL}/{METRICS}") -> list[str]:
    """``run``'s file ``name`` (below its folder) for every seed, in the order of classify.seeds."""
    return [f"{CLS}/{seed_prefix(cfg, seed)}{run}/{name}" for seed in seeds(cfg)]


def names(cfg: dict) -> list[str]:
    """The configured variants, sorted."""
    return sorted(cfg["classify"].get("variants") or {})


def run_dir(name: str) -> str:
    """A variant's folder below results/classify/ (the ``student`` wildcard's value for it)."""
    return f"{VARIANTS}/{name}"


def name_of(student_run: str) -> str:
    """The variant's name from its folder (``variants/no_kd``, ``seed1/variants/no_kd`` -> ``no_kd``); the
    student is itself."""
    m = SEED_DIR.fullmatch(student_run)  # the seed prefix aside (split_run without a config)
    student_run = m[2] if m else student_run
    return student_run.split("/", 1)[1] if student_run.startswith(f"{VARIANTS}/") else student_run


def student_block(cfg: dict, student_run: str) -> dict:
    """The ``classify.student`` block that trains ``student_run`` ("student" or "variants/NAME")."""
    base = cfg["classify"][STUDENT]
    student_run = split_run(cfg, student_run)[1]
    if student_run == STUDENT:
        return base
    name = name_of(student_run)
    overrides = (cfg["classify"].get("variants") or {}).get(name)
    if overrides is None:
        raise KeyError(f"no variant {name!r} in classify.variants")
    return deep_merge(base, overrides)


def config_for(cfg: dict, run: str) -> dict:
    """``cfg`` as ``run`` (any run, seed prefix included) trains with: its seed as classify.seed, and
    for a student or variant classify.student replaced by its block."""
    seed, run = split_run(cfg, run)
    classify = {**cfg["classify"], "seed": seed}
    if run != TEACHER:
        classify[STUDENT] = student_block(cfg, run)
    return {**cfg, "classify": classify}


def train_params(cfg: dict, run: str) -> str:
    """The config blocks ``run``'s training reads, as its rule's ``params`` JSON."""
    return params_json(config_for(cfg, run), *train_blocks(role_of(cfg, run)))


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
