"""The comparison of the evaluated models: one table (Markdown and CSV) and, when the same student
was also trained without a teacher, the knowledge-distillation gain; and the ablation table, every
variant beside the student and the teacher.

The KD gain is the student trained with distillation minus the same student (architecture, data,
recipe) trained without it: what the teacher added. Student minus teacher is not that; it compares
two different models. Each row also names the runs that made its numbers: the provenance of the
evaluation (and of the training) in the CSV's ``eval_*`` (``train_*``) columns and in one line per
input under the Markdown table. Light on purpose: pandas, no torch.

Seeds (``classify.seeds``): every model may come as several runs, one per seed (a list of
metrics.json dicts; one dict is one run). Each row then holds the mean, the sample standard deviation
(ddof 1) and n of top-1 and top-5, and the KD gain and each variant's Δ are differences paired by
seed (the same seed's student against the same seed's control), with their mean and spread.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd

from ..errors import UserError
from .variants import describe_overrides

# CSV column -> Markdown header, with the number format of each column in the Markdown table.
COLUMNS = {
    "model": ("Model", ""),
    "top1": ("Top-1 (%)", ".2f"),
    "top5": ("Top-5 (%)", ".2f"),
    "n_seeds": ("Seeds", ""),
    "params_M": ("Parameters (M)", ".2f"),
    "train_time_min": ("Training time (min)", ".1f"),
    "device": ("Device", ""),
}
NO_KD = "student without KD"
PROVENANCE = ("vispipe", "git_commit", "git_dirty", "python", "torch", "torchvision", "transformers", "device",
              "config_sha256")  # fmt: skip


def read_metrics(path: Path) -> dict:
    """An evaluation metrics.json, checked for what the tables need."""
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; run the evaluate rule first") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}); rerun the evaluate rule") from None
    missing = {"role", "arch", "top1", "top5", "params"} - set(m)
    if missing:
        raise UserError(f"{path} lacks {sorted(missing)}; it must be an eval/metrics.json written by evaluate")
    return m


def replicates(runs: dict | list[dict]) -> list[dict]:
    """One model's evaluations, one per seed: a single metrics dict is one run."""
    return [runs] if isinstance(runs, dict) else list(runs)


def mean_std(values: list[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (ddof 1; NaN for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def by_seed(runs: list[dict]) -> dict:
    """The runs keyed by their training seed (by position where a file records none)."""
    if all(m.get("seed") is not None for m in runs):
        return {m["seed"]: m for m in runs}
    return dict(enumerate(runs))


def paired(a: list[dict], b: list[dict], what_a: str, what_b: str) -> list[float]:
    """Top-1 points of ``a`` minus ``b``, seed by seed (the seeds of ``a``'s order)."""
    a_by, b_by = by_seed(a), by_seed(b)
    if set(a_by) != set(b_by):
        raise UserError(
            f"{what_a} was trained with seeds {sorted(a_by)}, {what_b} with {sorted(b_by)}: "
            "a paired difference needs both runs for every seed (rerun with the same classify.seeds)"
        )
    return [100 * (a_by[seed]["top1"] - b_by[seed]["top1"]) for seed in a_by]


def row(label: str, runs: dict | list[dict]) -> dict:
    """One model's line of the table from its evaluation metrics.json (one per seed): mean, std and
    n of top-1 and top-5, and the provenance of its (first seed's) evaluation and training runs
    (empty where the file records none)."""
    runs = replicates(runs)
    m = runs[0]
    prov = {"eval": m.get("provenance") or {}, "train": m.get("train_provenance") or {}}
    (top1, top1_std), (top5, top5_std) = (mean_std([100 * r[k] for r in runs]) for k in ("top1", "top5"))
    times = [r["train_time_s"] for r in runs if r.get("train_time_s") is not None]
    return {
        "model": label if label.endswith(f"({m['arch']})") else f"{label} ({m['arch']})",
        "top1": round(top1, 2),
        "top1_std": round(top1_std, 2),
        "top5": round(top5, 2),
        "top5_std": round(top5_std, 2),
        "n_seeds": len(runs),
        "seeds": " ".join(str(r.get("seed")) for r in runs),
        "params_M": round(m["params"] / 1e6, 2),
        "train_time_min": round(sum(times) / len(times) / 60, 1) if times else math.nan,
        "device": m.get("train_device") or "",
        **{f"{run}_{key}": p.get(key) for run, p in prov.items() for key in PROVENANCE},
    }


def check_same_student(student: dict, no_kd: dict) -> None:
    """The no-KD run must be the same student on the same test set, or the difference is no KD gain."""
    if no_kd["arch"] != student["arch"]:
        raise UserError(
            f"the run without KD is a {no_kd['arch']!r} but the student a {student['arch']!r}: "
            "the KD gain compares the same student trained with and without distillation"
        )
    check_same_test_set(student, no_kd, "the run without KD")


def kd_gains(student: dict | list[dict], no_kd: dict | list[dict]) -> list[float]:
    """Top-1 points the teacher added, seed by seed: the student with KD minus the same student
    without, trained with the same seed."""
    student, no_kd = replicates(student), replicates(no_kd)
    for s, n in zip(student, no_kd):
        check_same_student(s, n)
    return paired(student, no_kd, "the student", "the run without KD")


def spread(points: list[float], unit: str = "points") -> str:
    """``+2.78 points`` for one seed; ``+2.10 ± 0.50 points (mean ± std of 3 seeds: +2.5, ...)`` for more."""
    mean, std = mean_std(points)
    if len(points) == 1:
        return f"{mean:+.2f} {unit}"
    each = ", ".join(f"{p:+.2f}" for p in points)
    return f"{mean:+.2f} ± {std:.2f} {unit} (mean ± std of {len(points)} seeds, paired by seed: {each})"


def table(teacher, student, no_kd=None) -> pd.DataFrame:
    """The rows of the comparison: the student, the teacher, and the student without KD when given
    (each a metrics dict, or a list of them, one per seed)."""
    teacher, student = replicates(teacher), replicates(student)
    rows = [row(student[0]["role"], student), row(teacher[0]["role"], teacher)]
    if no_kd is not None:
        rows.append(row(NO_KD, no_kd))
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame, columns: dict = COLUMNS) -> str:
    """``df`` as a Markdown table with the headers and number formats of ``columns`` (a missing
    value is an empty cell). With several seeds a value with a ``<column>_std`` is shown as
    ``mean ± std``; with one seed everywhere the Seeds column is left out."""
    columns = dict(columns)
    if "n_seeds" in df and (df["n_seeds"] == 1).all():
        columns.pop("n_seeds", None)
    df = df.copy()
    for key, (_, fmt) in columns.items():
        if f"{key}_std" in df and df[f"{key}_std"].notna().any():
            df[key] = [
                "" if pd.isna(v) else f"{v:{fmt}}" + ("" if pd.isna(sd) else f" ± {sd:.2f}")
                for v, sd in zip(df[key], df[f"{key}_std"])
            ]
    shown = df[list(columns)].astype(object)
    shown = shown.where(shown.notna(), None)
    shown.columns = [header for header, _ in columns.values()]
    return shown.to_markdown(index=False, floatfmt=[fmt or "g" for _, fmt in columns.values()], missingval="")


def describe(prov: dict | None) -> str:
    """A run's provenance in words: its commit (or vispipe version outside a checkout) and device."""
    if not prov:
        return "no provenance recorded"
    if prov.get("git_commit"):
        code = f"commit {prov['git_commit'][:12]}" + (" (dirty)" if prov.get("git_dirty") else "")
    else:
        code = f"vispipe {prov.get('vispipe')} (not a git checkout)"
    return code + (f" on {prov['device']}" if prov.get("device") else "")


def provenance_lines(inputs: list[tuple[str, dict]], own: dict | None) -> list[str]:
    """One line per input (its row's name, its metrics.json) naming the runs that made it, then this table's."""
    lines = ["Provenance:", ""]
    for model, m in inputs:
        line = f"- {model}: evaluation {describe(m.get('provenance'))}"
        if "train_provenance" in m:
            line += f"; training {describe(m['train_provenance'])}"
        lines.append(line)
    if own is not None:
        lines.append(f"- this comparison: {describe(own)}")
    return lines


def compare(
    teacher: dict, student: dict, no_kd: dict | None = None, own: dict | None = None
) -> tuple[str, pd.DataFrame]:
    """The comparison as Markdown and as a table (the CSV's rows); ``own`` is the provenance of this
    comparison run."""
    df = table(teacher, student, no_kd)
    md = [to_markdown(df), ""]
    if no_kd is None:
        md.append("KD gain: not measured (no run of the same student without KD was given).")
    else:
        md.append(f"KD gain (student with KD minus the same student without KD): {spread(kd_gains(student, no_kd))}.")
    inputs = [replicates(m)[0] for m in (student, teacher, no_kd) if m is not None]
    md += ["", *provenance_lines(list(zip(df["model"], inputs)), own)]
    return "\n".join(md) + "\n", df


# The ablation table: the comparison's columns plus what each variant changed and its top-1
# difference from the student.
ABLATION_COLUMNS = {
    "model": ("Run", ""),
    "changes": ("Changes to the student", ""),
    "top1": COLUMNS["top1"],
    "delta_top1": ("Δ top-1 vs student (points)", "+.2f"),
    **{key: COLUMNS[key] for key in ("top5", "n_seeds", "params_M", "train_time_min", "device")},
}


def ablation_table(teacher, student, variants: dict, overrides: dict[str, dict]) -> pd.DataFrame:
    """One row per run: the student, each variant (``name -> eval metrics.json``, or a list of them
    per seed, in name order) with the overrides it was trained with, then the teacher;
    ``delta_top1`` is top-1 minus the student's, paired by seed (``delta_top1_std`` its spread)."""
    missing = set(variants) - set(overrides)
    if missing:
        raise UserError(f"variants {sorted(missing)} have metrics but no overrides: pass classify.variants whole")
    student = replicates(student)
    deltas = [[0.0] * len(student)]
    rows = [{**row("student", student), "changes": "(none: the configured student)"}]
    for name in sorted(variants):
        runs = replicates(variants[name])
        for m in runs:
            check_same_test_set(student[0], m, f"variant {name}")
        deltas.append(paired(runs, student, f"variant {name}", "the student"))
        rows.append({**row(f"variant {name}", runs), "changes": describe_overrides(overrides[name]) or "(none)"})
    rows.append({**row("teacher", teacher), "changes": "(the teacher)"})
    df = pd.DataFrame(rows)
    stats = [mean_std(d) for d in deltas] + [(math.nan, math.nan)]  # the teacher: another model, no Δ
    df.insert(df.columns.get_loc("top5"), "delta_top1", [round(m, 2) for m, _ in stats])
    df.insert(df.columns.get_loc("top5"), "delta_top1_std", [round(sd, 2) for _, sd in stats])
    return df[list(ABLATION_COLUMNS) + [c for c in df.columns if c not in ABLATION_COLUMNS]]


def check_same_test_set(student: dict, other: dict, what: str) -> None:
    if {"n_test"} <= other.keys() & student.keys() and other["n_test"] != student["n_test"]:
        raise UserError(
            f"{what} was evaluated on {other['n_test']} test images, the student on {student['n_test']}: "
            "evaluate both on the same test split"
        )


def ablation(
    teacher: dict, student: dict, variants: dict[str, dict], overrides: dict[str, dict], own: dict | None = None
) -> tuple[str, pd.DataFrame]:
    """The ablation table as Markdown and as a DataFrame (the CSV's rows)."""
    df = ablation_table(teacher, student, variants, overrides)
    md = [
        "Ablations: each variant is the student trained with the listed changes, on the same data and "
        "test split; Δ is its top-1 minus the student's.",
        "",
        to_markdown(df, ABLATION_COLUMNS),
        "",
    ]
    inputs = [replicates(m)[0] for m in (student, *(variants[n] for n in sorted(variants)), teacher)]
    md += provenance_lines(list(zip(df["model"], inputs)), own)
    return "\n".join(md) + "\n", df
