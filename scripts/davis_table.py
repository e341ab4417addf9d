#!/usr/bin/env python
"""A DAVIS-layout dataset's results from its sequences' jf.csv files (evaluate_segmentation), in the
layout of the DAVIS 2017 evaluation: global_results.csv (J&F-Mean, J-Mean, J-Recall, J-Decay,
F-Mean, F-Recall, F-Decay), per-sequence_results.csv (Sequence = <sequence>_<object>, J-Mean,
F-Mean) and results.md, in --out-dir."""

from pathlib import Path

from vispipe import cli
from vispipe.segment.steps.evaluate import davis_table


def build_parser():
    p = cli.parser(__doc__, config=False)
    p.add_argument(
        "--eval", nargs="+", required=True, metavar="SEQ=CSV", help="a sequence and its jf.csv, per sequence"
    )
    p.add_argument("--out-dir", type=Path, required=True)
    return p


def main(args):
    evals = {}
    for item in args.eval:
        seq, sep, path = item.partition("=")
        if not sep:
            raise cli.UserError(f"--eval {item!r}: give SEQUENCE=path/to/jf.csv")
        evals[seq] = Path(path)
    davis_table(evals, args.out_dir)


if __name__ == "__main__":
    cli.run(main, build_parser())
