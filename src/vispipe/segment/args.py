"""Command-line options several segmentation scripts share."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_frames(p: argparse.ArgumentParser) -> None:
    """``--frames`` and ``--meta``: what extract_frames wrote."""
    p.add_argument("--frames", type=Path, required=True, help="frames folder written by extract_frames")
    p.add_argument("--meta", type=Path, required=True, help="meta.json written by extract_frames")


def add_tracks(p: argparse.ArgumentParser) -> None:
    """``--masks`` and ``--tracks``: what propagate wrote."""
    p.add_argument("--masks", type=Path, required=True, help="masks folder written by propagate")
    p.add_argument(
        "--tracks", type=Path, required=True, help="tracks.json written by propagate (its tracks.jsonl beside it)"
    )


def add_models(p: argparse.ArgumentParser, kinds: tuple[str, ...] = ("detector", "sam2")) -> None:
    """``--detector`` (also spelt ``--clipseg``) / ``--sam2`` / ``--tracker``: model folders written by fetch_models."""
    whats = {
        "detector": "the detector's (segment.detector: CLIPSeg, Grounding DINO, OWLv2 or SAM 3)",
        "tracker": "the tracker's (segment.propagate.method edgetam_video: EdgeTAM; sam3_video: SAM 3)",
    }
    for kind in kinds:
        flags = ("--detector", "--clipseg") if kind == "detector" else (f"--{kind}",)
        what = whats.get(kind, kind)
        p.add_argument(
            *flags,
            dest=kind,
            type=Path,
            help=f"{what} folder written by fetch_models (default: where segment.models puts it)",
        )
