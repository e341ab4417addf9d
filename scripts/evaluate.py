#!/usr/bin/env python
"""Evaluate a checkpoint on the test split: confusion matrices (counts, normalised), per-class
accuracy chart, prediction grid, classification report (txt, csv) and metrics.json in --out-dir.

Reads the classify.eval and classify.device config keys."""

from pathlib import Path

from vispipe import cli
from vispipe.classify.steps import evaluate_checkpoint
from vispipe.config import block
from vispipe.tracking import settings


def build_parser():
    p = cli.parser(__doc__, tracking=True)
    p.add_argument("--checkpoint", type=Path, required=True, help="a .pt written by train_teacher or train_student")
    p.add_argument("--test", type=Path, required=True, help="test.npz written by fetch_cifar10")
    p.add_argument("--train-metrics", type=Path, help="the training metrics.json (adds training time to the report)")
    p.add_argument("--out-dir", type=Path, required=True)
    return p


def main(args):
    cfg = cli.load_config(args)
    evaluate_checkpoint(
        args.checkpoint,
        args.test,
        block(cfg, "classify.eval"),
        block(cfg, "classify.device"),
        args.out_dir,
        args.train_metrics,
        tracking=settings(args.tracking),
    )


if __name__ == "__main__":
    cli.run(main, build_parser())
