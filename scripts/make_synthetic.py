#!/usr/bin/env python
"""Write a synthetic video with exact ground truth: textured objects over a textured, panning
background that hide one another, one leaving the frame and coming back, one entering late, and
optionally a hard scene cut. --video gets an H.264 MP4, --ground-truth one DAVIS-style palette PNG
per frame (pixel = object id). Point segment.videos.<key>.ground_truth at that folder to score a run.
--davis ROOT instead writes --sequences such clips as a dataset in the DAVIS layout (JPEGImages/480p/,
Annotations/480p/), for segment.davis."""

from pathlib import Path

from vispipe import cli
from vispipe.segment.evaluation.synthetic import make_clip, save_clip, save_davis


def build_parser():
    p = cli.parser(__doc__, config=False)
    p.add_argument("--video", type=Path, help="output .mp4")
    p.add_argument("--ground-truth", type=Path, help="output folder of NNNNN.png")
    p.add_argument("--davis", type=Path, help="instead: a dataset in the DAVIS layout in this folder")
    p.add_argument("--sequences", type=int, default=3, help="with --davis: how many sequences")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--cut", type=int, help="frame index of a hard scene cut (none by default)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(args):
    if args.frames < 2 or min(args.height, args.width) < 64:
        raise cli.UserError("--frames must be at least 2 and --height/--width at least 64")
    if args.cut is not None and not 0 < args.cut < args.frames:
        raise cli.UserError(f"--cut must lie between 1 and {args.frames - 1}")
    if args.davis:
        names = save_davis(args.davis, args.sequences, args.frames, (args.height, args.width), args.seed)
        cli.log.info("wrote %d sequences of %d frames in the DAVIS layout under %s: %s", len(names), args.frames,
                     args.davis, ", ".join(names))  # fmt: skip
        return
    if not (args.video and args.ground_truth):
        raise cli.UserError("give --video and --ground-truth (one clip), or --davis (a dataset)")
    clip = make_clip(args.frames, (args.height, args.width), args.seed, args.cut, args.fps)
    save_clip(clip, args.video, args.ground_truth)
    for obj, ev in clip.events().items():
        cli.log.info("object %d: visible on %d frames, enters at %s, leaves at %s", obj, len(ev["visible"]),
                     ev["enters"] or "-", ev["leaves"] or "-")  # fmt: skip
    cli.log.info("wrote %s and %d masks in %s", args.video, args.frames, args.ground_truth)


if __name__ == "__main__":
    cli.run(main, build_parser())
