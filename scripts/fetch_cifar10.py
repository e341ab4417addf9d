#!/usr/bin/env python
"""Prepare the classification data: download CIFAR-10 (or read an image folder/archive, or
scikit-learn's digits) and write <out-dir>/{train,test}.npz (uint8 NHWC images, labels, class names).

Reads the classify.data and classify.seed config keys."""

from pathlib import Path

from vispipe import cli
from vispipe.classify.steps import prepare_data
from vispipe.config import block


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument("--out-dir", type=Path, required=True, help="where train.npz and test.npz go")
    p.add_argument(
        "--download-dir",
        type=Path,
        default=Path("data/downloads"),
        help="CIFAR-10 download folder when classify.data.path is null",
    )
    return p


def main(args):
    cfg = cli.load_config(args)
    prepare_data(block(cfg, "classify.data"), block(cfg, "classify.seed"), args.out_dir, args.download_dir)


if __name__ == "__main__":
    cli.run(main, build_parser())
