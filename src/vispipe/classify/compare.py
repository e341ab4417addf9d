"""The comparison of the evaluated models: one table (Markdown and CSV) and, when the same student
was also trained without a teacher, the knowledge-distillation gain.

The KD gain is the student trained with distillation minus the same student (architecture, data,
recipe) trained without it: what the teacher added. Student minus teacher is not that; it compares
two different models. Each row also names the runs that made its numbers: the provenance of the
evaluation (and of the training) in the CSV's ``eval_*`` (``train_*``) columns and in one line per
input under the Markdown table. Light on purpose: pandas, no torch.
"""

from __future__ import annotations

import math

import pandas as pd

from ..errors import UserError

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


def row(label: str, m: dict) -> dict:
    """One model's line of the table from its evaluation metrics.json, with the provenance of its
    evaluation and training runs (empty where the file records none)."""
    runs = {"eval": m.get("provenance") or {}, "train": m.get("train_provenance") or {}}
    return {
        "model": f"{label} ({m['arch']})",
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
    if {"n_test"} <= no_kd.keys() & student.keys() and no_kd["n_test"] != student["n_test"]:
        raise UserError(
            f"the run without KD was evaluated on {no_kd['n_test']} test images, the student on "
            f"{student['n_test']}: evaluate both on the same test split"
        )


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


def to_markdown(df: pd.DataFrame) -> str:
    """``df`` as a Markdown table with the headers and number formats of :data:`COLUMNS` (a missing
    value is an empty cell)."""
    shown = df[list(COLUMNS)].astype(object)
    shown = shown.where(shown.notna(), None)
    shown.columns = [header for header, _ in COLUMNS.values()]
    return shown.to_markdown(index=False, floatfmt=[fmt or "g" for _, fmt in COLUMNS.values()], missingval="")


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
