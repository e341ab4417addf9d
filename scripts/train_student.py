#!/usr/bin/env python
"""Train the ViT student by knowledge distillation from a teacher checkpoint (or, with
kd.alpha 0, on the labels alone); write best.pt, last.pt, history.csv, metrics.json and
curves.png to --out-dir. Rerunning after a kill resumes from the last epoch. An ablation
variant is the same script with its merged block as classify.student and --name.

Reads the classify.student, classify.seed, classify.device, classify.num_workers and classify.compile config keys."""

from pathlib import Path

from vispipe import cli
from vispipe.classify.steps import train_from_args
from vispipe.tracking import settings


def build_parser():
    p = cli.parser(__doc__, threads=True, tracking=True)
    p.add_argument("--data", type=Path, required=True, help="folder holding train.npz and test.npz")
    p.add_argument("--teacher", type=Path, help="teacher checkpoint (train_teacher's model.pt); unused with kd.alpha 0")
    p.add_argument("--name", help="the run's label in its files and tables (default: student)")
    p.add_argument("--out-dir", type=Path, required=True)
    return p


def main(args):
    cfg, tracking = cli.load_config(args), settings(args.tracking)
    train_from_args("student", cfg, args.data, args.out_dir, teacher=args.teacher, name=args.name, tracking=tracking)


if __name__ == "__main__":
    cli.run(main, build_parser())
