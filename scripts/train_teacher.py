#!/usr/bin/env python
"""Train the ResNet teacher on <data>/{train,test}.npz; write model.pt, history.csv,
metrics.json and curves.png to --out-dir. Rerunning after a kill resumes from the last epoch.

Reads the classify.teacher, classify.seed, classify.device and classify.num_workers config keys."""

from pathlib import Path

import torch

from vispipe import cli
from vispipe.classify.steps import train_model
from vispipe.config import block


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument("--data", type=Path, required=True, help="folder holding train.npz and test.npz")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's choice)")
    return p


def main(args):
    cfg = cli.load_config(args)
    for key in ("teacher", "seed", "device", "num_workers"):
        block(cfg, f"classify.{key}")
    if args.threads:
        torch.set_num_threads(args.threads)
    train_model("teacher", cfg, args.data, args.out_dir)


if __name__ == "__main__":
    cli.run(main, build_parser())
