#!/usr/bin/env python
"""Comparison table (Markdown and CSV) of the evaluated models: top-1, top-5, parameters and
training time of the student and the teacher, from their evaluation metrics.json files. Given
--no-kd (the same student trained without distillation), the table adds it and states the
knowledge-distillation gain: the student with KD minus the same student without KD. Both tables
name the runs behind each row (commit, device, config hash: their provenance). Given several
files per model (one per seed, classify.seeds), each row holds mean, std and n, and the KD gain is
paired by seed."""

from pathlib import Path

from vispipe import cli
from vispipe.classify.compare import compare, read_metrics
from vispipe.io import write_text
from vispipe.provenance import provenance


def build_parser():
    p = cli.parser(__doc__, config=False)
    p.add_argument("--teacher", type=Path, nargs="+", required=True, help="the teacher's eval/metrics.json (per seed)")
    p.add_argument("--student", type=Path, nargs="+", required=True, help="the student's eval/metrics.json (per seed)")
    p.add_argument(
        "--no-kd",
        type=Path,
        nargs="+",
        metavar="METRICS_JSON",
        help="eval/metrics.json of the same student trained without KD, per seed (adds its row and the KD gain)",
    )
    p.add_argument("--md", type=Path, required=True, help="Markdown table to write")
    p.add_argument("--csv", type=Path, required=True, help="CSV table to write")
    return p


def main(args):
    runs = {k: [read_metrics(p) for p in getattr(args, k) or ()] for k in ("teacher", "student", "no_kd")}
    md, table = compare(runs["teacher"], runs["student"], runs["no_kd"] or None, own=provenance())
    write_text(args.md, md)
    write_text(args.csv, table.to_csv(index=False))
    cli.log.info("wrote %s and %s\n%s", args.md, args.csv, md)


if __name__ == "__main__":
    cli.run(main, build_parser())
