"""The comparison of the evaluated models: one table (Markdown and CSV) and, when the same student
was also trained without a teacher, the knowledge-distillation gain; and the ablation table, every
variant beside the student and the teacher.

The KD gain is the student trained with distillation minus the same student (architecture, data,
recipe) trained without it: what the teacher added. Student minus teacher is not that; it compares
two different models. Each row also names the runs that made its numbers: the provenance of the
evaluation (and of the training) in the CSV's ``eval_*`` (``train_*``) columns and in one line per
input under the Markdown table. Light on purpose: pandas, no torch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..errors import UserError
from .variants import describe_overrides

# CSV column -> Markdown header, with the number format of each column in the Markdown table.
COLUMNS = {
    "model": ("Model", ""),
    "top1": ("Top-1 (%)", ".2f"),
    "top5": ("Top-5 (%)", ".2f"),
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


def row(label: str, m: dict) -> dict:
    """One model's line of the table from its evaluation metrics.json, with the provenance of its
    evaluation and training runs (empty where the file records none)."""
    runs = {"eval": m.get("provenance") or {}, "train": m.get("train_provenance") or {}}
    return {
        "model": label if label.endswith(f"({m['arch']})") else f"{label} ({m['arch']})",
        "top1": round(100 * m["top1"], 2),
        "top5": round(100 * m["top5"], 2),
        "params_M": round(m["params"] / 1e6, 2),
        "train_time_min": round(m["train_time_s"] / 60, 1) if m.get("train_time_s") is not None else math.nan,
        "device": m.get("train_device") or "",
        **{f"{run}_{key}": prov.get(key) for run, prov in runs.items() for key in PROVENANCE},
    }


def check_same_student(student: dict, no_kd: dict) -> None:
    """The no-KD run must be the same student on the same test set, or the difference is no KD gain."""
    if no_kd["arch"] != student["arch"]:
        raise UserError(
            f"the run without KD is a {no_kd['arch']!r} but the student a {student['arch']!r}: "
            "the KD gain compares the same student trained with and without distillation"
        )
    check_same_test_set(student, no_kd, "the run without KD")


def kd_gain(student: dict, no_kd: dict) -> float:
    """Top-1 points the teacher added: the student with KD minus the same student without."""
    check_same_student(student, no_kd)
    return round(100 * (student["top1"] - no_kd["top1"]), 2)


def table(teacher: dict, student: dict, no_kd: dict | None = None) -> pd.DataFrame:
    """The rows of the comparison: the student, the teacher, and the student without KD when given."""
    rows = [row(student["role"], student), row(teacher["role"], teacher)]
    if no_kd is not None:
        rows.append(row(NO_KD, no_kd))
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame, columns: dict = COLUMNS) -> str:
    """``df`` as a Markdown table with the headers and number formats of ``columns`` (a missing
    value is an empty cell)."""
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
        gain = kd_gain(student, no_kd)
        md.append(f"KD gain (student with KD minus the same student without KD): {gain:+.2f} points.")
    inputs = [m for m in (student, teacher, no_kd) if m is not None]
    md += ["", *provenance_lines(list(zip(df["model"], inputs)), own)]
    return "\n".join(md) + "\n", df


# The ablation table: the comparison's columns plus what each variant changed and its top-1
# difference from the student.
ABLATION_COLUMNS = {
    "model": ("Run", ""),
    "changes": ("Changes to the student", ""),
    "top1": COLUMNS["top1"],
    "delta_top1": ("Δ top-1 vs student (points)", "+.2f"),
    **{key: COLUMNS[key] for key in ("top5", "params_M", "train_time_min", "device")},
}


def ablation_table(teacher: dict, student: dict, variants: dict[str, dict], overrides: dict[str, dict]) -> pd.DataFrame:
    """One row per run: the student, each variant (``name -> eval metrics.json``, in name order) with
    the overrides it was trained with, then the teacher; ``delta_top1`` is top-1 minus the student's."""
    missing = set(variants) - set(overrides)
    if missing:
        raise UserError(f"variants {sorted(missing)} have metrics but no overrides: pass classify.variants whole")
    rows = [{**row("student", student), "changes": "(none: the configured student)"}]
    for name in sorted(variants):
        check_same_test_set(student, variants[name], f"variant {name}")
        rows.append(
            {**row(f"variant {name}", variants[name]), "changes": describe_overrides(overrides[name]) or "(none)"}
        )
    rows.append({**row("teacher", teacher), "changes": "(the teacher)"})
    df = pd.DataFrame(rows)
    df.insert(df.columns.get_loc("top5"), "delta_top1", (df["top1"] - df.loc[0, "top1"]).round(2))
    df.loc[df.index[-1], "delta_top1"] = math.nan  # another model: a difference would say nothing
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
    inputs = [student, *(variants[n] for n in sorted(variants)), teacher]
    md += provenance_lines(list(zip(df["model"], inputs)), own)
    return "\n".join(md) + "\n", df
