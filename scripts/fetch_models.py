#!/usr/bin/env python
"""Fetch the segmentation models into local folders: the detector (segment.detector: CLIPSeg, Grounding
DINO, OWLv2 or SAM 3), SAM2 and the tracker's model (segment.propagate.method edgetam_video: EdgeTAM;
sam3_video: SAM 3) from the Hugging Face Hub (segment.models.source: hub), or tiny randomly
initialised ones for the offline demo (random-tiny).

Only the folders given are fetched; given none, every model the config's run uses, where
segment.models puts them. Every other segmentation script then loads these folders with the Hub
offline. Reads the segment.models, segment.detector and segment.propagate config keys."""

from pathlib import Path

from vispipe import cli
from vispipe.segment.layout import TRACKER_MODELS
from vispipe.segment.settings import Settings
from vispipe.segment.steps.models import fetch_models


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument("--detector", "--clipseg", dest="detector", type=Path,
                   help="output folder of the detector")  # fmt: skip
    p.add_argument("--sam2", type=Path, help="output folder of SAM2")
    p.add_argument(
        "--tracker",
        type=Path,
        help="output folder of the tracker's model, for segment.propagate.method "
        "edgetam_video (EdgeTAM) or sam3_video (SAM 3)",
    )
    p.add_argument("--tracker-model", choices=sorted(set(TRACKER_MODELS.values())),
                   help="which model --tracker is (default: what segment.propagate.method runs)")  # fmt: skip
    return p


def main(args):
    fetch_models(Settings.parse(cli.load_config(args)), args.detector, args.sam2, args.tracker, args.tracker_model)


if __name__ == "__main__":
    cli.run(main, build_parser())
