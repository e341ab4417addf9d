#!/usr/bin/env python
"""Export a video's tracked masks for annotation and training tools into one folder: YOLO
segmentation (images/, labels/*.txt, data.yaml), CVAT for video 1.1 (cvat.xml) and a Label Studio
video task (label_studio.json) and the COCO layout datumaro reads (coco/), as segment.export.formats
lists (or --formats).

Reads the segment.export config key."""

from pathlib import Path

from vispipe import cli
from vispipe.segment.args import add_frames, add_tracks
from vispipe.segment.files.formats import FORMATS
from vispipe.segment.settings import Settings
from vispipe.segment.steps.export import export_annotations


def build_parser():
    p = cli.parser(__doc__)
    add_frames(p)
    add_tracks(p)
    p.add_argument("--out-dir", type=Path, required=True, help="the export folder (replaced as a whole)")
    p.add_argument("--formats", nargs="+", choices=FORMATS, help="instead of segment.export.formats")
    p.add_argument("--video-url", help="the video as Label Studio will load it (default: the source video's path)")
    return p


def main(args):
    s = Settings.parse(cli.load_config(args))
    export_annotations(s, args.frames, args.meta, args.masks, args.tracks, args.out_dir, args.formats, args.video_url)


if __name__ == "__main__":
    cli.run(main, build_parser())
