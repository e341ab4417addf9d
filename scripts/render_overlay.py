#!/usr/bin/env python
"""Render the kept frames with their instances (colour fill, outline, label) as an H.264 (yuv420p)
MP4 at the source fps divided by the stride, at the source size; --first also saves the first
frame's picture (first/overlay.png).

Reads the segment.overlay config key."""

from pathlib import Path

from vispipe import cli
from vispipe.segment.args import add_frames, add_tracks
from vispipe.segment.settings import Settings
from vispipe.segment.steps.overlay import render_overlay


def build_parser():
    p = cli.parser(__doc__)
    add_frames(p)
    add_tracks(p)
    p.add_argument("--out", type=Path, required=True, help="output .mp4")
    p.add_argument("--first", type=Path, help="also save the first drawn frame here (.png)")
    return p


def main(args):
    render_overlay(
        Settings.parse(cli.load_config(args)), args.frames, args.meta, args.masks, args.tracks, args.out, args.first
    )


if __name__ == "__main__":
    cli.run(main, build_parser())
