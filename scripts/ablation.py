#!/usr/bin/env python
"""Ablation table (Markdown, CSV) and chart (PNG): each variant of classify.variants beside the
student and the teacher, from their evaluation metrics.json files: top-1, its difference from the
student, top-5, parameters, training time, and what the variant changed. Both tables name the runs
behind each row (commit, device, config hash). With several seeds (classify.seeds) each model comes
as one file per seed: rows hold mean, std and n, each Δ is paired by seed, and the chart draws the
spread as error bars.

Reads the classify.variants config key (what each variant changed)."""

from pathlib import Path

from vispipe import cli
from vispipe.classify import plots
from vispipe.classify.compare import ablation, read_metrics
from vispipe.config import block
from vispipe.errors import UserError
from vispipe.io import write_text
from vispipe.provenance import provenance


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument("--teacher", type=Path, nargs="+", required=True, help="the teacher's eval/metrics.json (per seed)")
    p.add_argument("--student", type=Path, nargs="+", required=True, help="the student's eval/metrics.json (per seed)")
    p.add_argument(
        "--variants",
        type=Path,
        nargs="+",
        required=True,
        metavar="METRICS_JSON",
        help="each variant's eval/metrics.json (results/classify/variants/NAME/eval/metrics.json), per seed",
    )
    p.add_argument("--md", type=Path, required=True, help="Markdown table to write")
    p.add_argument("--csv", type=Path, required=True, help="CSV table to write")
    p.add_argument("--png", type=Path, required=True, help="chart to write")
    return p


def main(args):
    overrides = block(cli.load_config(args), "classify.variants")
    variants: dict[str, list[dict]] = {}
    for path in args.variants:
        m = read_metrics(path)
        name = m.get("name") or path.parent.parent.name
        if name not in overrides:
            raise UserError(f"{path} is variant {name!r}, which classify.variants does not list")
        if any(other.get("seed") == m.get("seed") for other in variants.get(name, [])):
            raise UserError(f"two metrics files given for variant {name!r}, seed {m.get('seed')}; pass each run's once")
        variants.setdefault(name, []).append(m)
    teacher, student = ([read_metrics(p) for p in paths] for paths in (args.teacher, args.student))
    md, table = ablation(teacher, student, variants, overrides, own=provenance())
    write_text(args.md, md)
    write_text(args.csv, table.to_csv(index=False))
    plots.ablation_chart(
        list(table["model"]), list(table["top1"]), list(table["train_time_min"]), list(table["params_M"]), args.png,
        "Ablations: top-1 and training time", top1_std=list(table["top1_std"]),
    )  # fmt: skip
    cli.log.info("wrote %s, %s and %s\n%s", args.md, args.csv, args.png, md)


if __name__ == "__main__":
    cli.run(main, build_parser())
