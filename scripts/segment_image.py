#!/usr/bin/env python
"""Segment a target in a still image: the detector (segment.detector: CLIPSeg heatmap -> Otsu ->
connected components with a percentile fallback, or Grounding DINO / OWLv2 boxes) -> SAM2 refinement.
Writes --out-dir/{heatmap,mask,overlay}.png and --out-dir/instances.json.

Reads the segment.targets, detector, <detector> (clipseg, grounding_dino or owlv2), sam2, overlay, seed,
device and models config keys."""

from pathlib import Path

from vispipe import cli
from vispipe.segment.args import add_models
from vispipe.segment.settings import Settings
from vispipe.segment.steps.first import segment_image


def build_parser():
    p = cli.parser(__doc__, threads=True)
    p.add_argument("--image", type=Path, required=True, help="any image OpenCV reads")
    p.add_argument("--target", required=True, help="a key of segment.targets")
    p.add_argument("--out-dir", type=Path, required=True)
    add_models(p)
    return p


def main(args):
    segment_image(
        Settings.parse(cli.load_config(args)), args.target, args.image, args.out_dir, args.detector, args.sam2
    )


if __name__ == "__main__":
    cli.run(main, build_parser())
