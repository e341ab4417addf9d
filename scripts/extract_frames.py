#!/usr/bin/env python
"""Decode the kept frames of a video (every stride-th frame of the first max_seconds) into
--frames/NNNNN.jpg and describe them in --meta (source fps, size, frame count, stride, kept indices).
--video may also be a folder of frames (DAVIS / YouTube-VOS layout: 00000.jpg, 00001.jpg, ...), at
--fps: its kept frames are read in place (linked from --frames, never copied nor re-encoded); with
--from-storage (a folder Snakemake downloaded from storage, and deletes after the run) they are hard-linked.

Reads the segment.frames config key."""

from pathlib import Path

from vispipe import cli
from vispipe.segment.files.frames import FOLDER_FPS
from vispipe.segment.settings import Settings
from vispipe.segment.steps.frames import extract_frames


def build_parser():
    p = cli.parser(__doc__)
    p.add_argument("--video", type=Path, required=True, help="any video FFmpeg decodes, or a folder of frames")
    p.add_argument("--fps", type=float, help=f"frame rate of a folder of frames (default {float(FOLDER_FPS):g})")
    p.add_argument("--from-storage", action="store_true",
                   help="--video is Snakemake's download of a storage URL (deleted after the run): a folder's"
                        " frames are hard-linked (or copied), not symbolic links to it")  # fmt: skip
    p.add_argument("--frames", type=Path, required=True, help="output folder of the kept frames")
    p.add_argument("--meta", type=Path, required=True, help="output meta.json")
    return p


def main(args):
    extract_frames(
        Settings.parse(cli.load_config(args)), args.video, args.frames, args.meta, args.fps, args.from_storage
    )


if __name__ == "__main__":
    cli.run(main, build_parser())
