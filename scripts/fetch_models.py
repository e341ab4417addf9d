#!/usr/bin/env python
"""Fetch the segmentation models into local folders: the detector (segment.detector: CLIPSeg, Grounding
DINO or OWLv2) and SAM2 from the Hugging Face Hub (segment.models.source: hub), or tiny randomly
initialised ones for the offline demo (random-tiny).

Every other segmentation script then loads these folders with the Hub offline.
Reads the segment.models and segment.detector config keys."""

from pathlib import Path

from vispipe import cli
from vispipe.segment.settings import Settings
from vispipe.segment.steps import fetch_models


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument("--detector", "--clipseg", dest="detector", type=Path,
                   help="output folder of the detector (default: from segment.models)")  # fmt: skip
    p.add_argument("--sam2", type=Path, help="output folder of SAM2 (default: from segment.models)")
    return p


def main(args):
    fetch_models(Settings.parse(cli.load_config(args)), args.detector, args.sam2)


if __name__ == "__main__":
    cli.run(main, build_parser())
