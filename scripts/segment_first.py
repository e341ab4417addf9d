#!/usr/bin/env python
"""Segment a target on the first kept frame: the detector (segment.detector: CLIPSeg heatmap -> Otsu ->
connected components with a percentile fallback, or Grounding DINO / OWLv2 boxes) -> SAM2 refinement of
each instance. Writes --out-dir/first/{heatmap,mask}.png (heatmap.png: CLIPSeg's heatmap or the boxes)
and --out-dir/instances.json (render_overlay draws first/overlay.png). With --prompt (a mask, or
boxes and points: vispipe/segment/prompts.py) the detector is skipped and the instances come from it.

Reads the segment.targets, detector, <detector> (clipseg, grounding_dino or owlv2), sam2, seed, device
and models config keys."""

from pathlib import Path

from vispipe import cli
from vispipe.segment.args import add_frames, add_models
from vispipe.segment.settings import Settings
from vispipe.segment.steps.first import segment_first


def build_parser():
    p = cli.parser(__doc__, threads=True)
    add_frames(p)
    p.add_argument("--target", required=True, help="a key of segment.targets")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument(
        "--prompt",
        type=Path,
        help="instead of the detector: a mask (.png) or boxes and points (.json) of the first kept frame",
    )
    add_models(p)
    return p


def main(args):
    segment_first(
        Settings.parse(cli.load_config(args)),
        args.target,
        args.frames,
        args.meta,
        args.out_dir,
        args.detector,
        args.sam2,
        args.prompt,
    )


if __name__ == "__main__":
    cli.run(main, build_parser())
