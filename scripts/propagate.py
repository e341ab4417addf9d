#!/usr/bin/env python
"""Carry the first frame's instances through every kept frame. segment.propagate.method flow (the
seed's): optical flow warps each mask, SAM2 refines it, with fallbacks when the refinement collapses
or explodes or the object is occluded; sam2_video / edgetam_video: SAM2's / EdgeTAM's own memory
tracker, memory bounded; sam3_video: SAM 3 detects the target's text and tracks it itself. With
segment.redetect.every N, the detector and SAM2 detect again every N frames (new objects get new ids,
returning ones their old ids).
Writes --masks/NNNNN.png (instance ids: 8-bit, 16-bit on a frame with an id past 255), --tracks (the
summary: instances, events, the seconds of each stage) with tracks.jsonl beside it (every instance's state,
one line per frame) and --rle (the masks as COCO run-length encoding), each as the frames come.

Reads the segment.propagate, redetect, sam2, seed, device and models config keys, segment.flow or
segment.sam2_video, edgetam_video or sam3_video (by method; sam3_video also the target's entry), and for re-detection segment.detector, its block and the target's
segment.targets entry."""

from pathlib import Path

from vispipe import cli
from vispipe.segment.args import add_frames, add_models
from vispipe.segment.settings import Settings
from vispipe.segment.steps.propagate import propagate_video


def build_parser():
    p = cli.parser(__doc__, threads=True)
    add_frames(p)
    p.add_argument("--instances", type=Path, required=True, help="instances.json written by segment_first")
    p.add_argument("--masks", type=Path, required=True, help="output folder of the instance-id PNGs")
    p.add_argument("--tracks", type=Path, required=True, help="output tracks.json")
    p.add_argument("--rle", type=Path, required=True, help="output COCO RLE JSON")
    add_models(p, ("sam2", "detector", "tracker"))
    return p


def main(args):
    propagate_video(
        Settings.parse(cli.load_config(args)),
        args.frames,
        args.meta,
        args.instances,
        args.masks,
        args.tracks,
        args.rle,
        args.sam2,
        args.detector,
        args.tracker,
    )


if __name__ == "__main__":
    cli.run(main, build_parser())
