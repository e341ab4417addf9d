#!/usr/bin/env python
"""Train the ViT student by knowledge distillation from a teacher checkpoint; write best.pt,
last.pt, history.csv, metrics.json and curves.png to --out-dir. Rerunning after a kill
resumes from the last epoch.

Reads the classify.student, classify.seed, classify.device, classify.num_workers and classify.compile config keys."""

from pathlib import Path

from vispipe import cli
from vispipe.classify.steps import train_from_args


def build_parser():
    p = cli.parser(__doc__, threads=True)
    p.add_argument("--data", type=Path, required=True, help="folder holding train.npz and test.npz")
    p.add_argument("--teacher", type=Path, required=True, help="teacher checkpoint (train_teacher's model.pt)")
    p.add_argument("--out-dir", type=Path, required=True)
    return p


def main(args):
    train_from_args("student", cli.load_config(args), args.data, args.out_dir, teacher=args.teacher)


if __name__ == "__main__":
    cli.run(main, build_parser())
