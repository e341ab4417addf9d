#!/usr/bin/env python
"""Score a target's propagated masks against a video's ground truth (DAVIS-style id PNGs, one per
source frame): J (region IoU), F (boundary F-measure) and J&F per object and mean, as the
vos-benchmark scorer computes them. Writes jf.md, jf.csv (per frame and object) and
j_per_frame.png to --out-dir. Predicted ids are matched to ground-truth objects once per video;
--no-match compares them as they are (the semi-supervised protocol: a first-frame mask gave them)."""

from pathlib import Path

from vispipe import cli
from vispipe.segment.steps.evaluate import evaluate_segmentation


def build_parser():
    p = cli.parser(__doc__, config=False)
    p.add_argument("--masks", type=Path, required=True, help="masks folder written by propagate")
    p.add_argument("--meta", type=Path, required=True, help="meta.json written by extract_frames")
    p.add_argument("--ground-truth", type=Path, required=True, help="folder of id PNGs, one per source frame")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--no-match", action="store_true", help="compare ids as they are, without matching")
    return p


def main(args):
    evaluate_segmentation(args.masks, args.meta, args.ground_truth, args.out_dir, match=not args.no_match)


if __name__ == "__main__":
    cli.run(main, build_parser())
