#!/usr/bin/env python
"""Teacher-vs-student comparison table (Markdown and CSV): top-1, top-5, parameters,
training time and the knowledge-distillation gain, from the two evaluation metrics.json files."""

import json
from pathlib import Path

from vispipe import cli
from vispipe.classify.steps import compare, write_csv
from vispipe.errors import UserError
from vispipe.io import write_text


def build_parser():
    p = cli.parser(__doc__, config=False)
    p.add_argument("--teacher", type=Path, required=True, help="the teacher's eval/metrics.json")
    p.add_argument("--student", type=Path, required=True, help="the student's eval/metrics.json")
    p.add_argument("--md", type=Path, required=True, help="Markdown table to write")
    p.add_argument("--csv", type=Path, required=True, help="CSV table to write")
    return p


def read_metrics(path: Path) -> dict:
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


def main(args):
    md, rows = compare(read_metrics(args.teacher), read_metrics(args.student))
    write_text(args.md, md)
    write_csv(args.csv, rows)
    cli.log.info("wrote %s and %s\n%s", args.md, args.csv, md)


if __name__ == "__main__":
    cli.run(main, build_parser())
