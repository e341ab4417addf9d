#!/usr/bin/env python
"""Train the ResNet teacher on <data>/{train,test}.npz; write model.pt, history.csv,
metrics.json and curves.png to --out-dir. Rerunning after a kill resumes from the last epoch.

Reads the classify.teacher, classify.seed, classify.device, classify.num_workers and classify.compile config keys."""

from pathlib import Path

from vispipe import cli
from vispipe.classify.steps import train_from_args
from vispipe.tracking import settings


def build_parser():
    p = cli.parser(__doc__, threads=True, tracking=True)
    p.add_argument("--data", type=Path, required=True, help="folder holding train.npz and test.npz")
    p.add_argument("--out-dir", type=Path, required=True)
    return p


def main(args):
    train_from_args("teacher", cli.load_config(args), args.data, args.out_dir, tracking=settings(args.tracking))


if __name__ == "__main__":
    cli.run(main, build_parser())
