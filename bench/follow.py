#!/usr/bin/env python
"""Following between detections: by colours (``Association.follow``), what it costs per frame as the
frame grows, mean shift searching a region around each instance's window (``FOLLOW_SEARCH``, the
default) against the whole frame (its peer: the code before the region), and whether the two find
the same places; by corners (``Association.track_points``: Lucas-Kanade on the corners found in
each mask at its anchor, every 10 frames here), what it costs per frame and per anchor beside the
colours. Prints a table, writes JSON.

The clips: an identity clip (the first tuned seed with 6 objects or more; ``--seed`` for another)
scaled up to each size, its true masks as the masks in view (the follow runs on every frame, as
between detections), the frame's HSV conversion done once outside the timing (the loop shares it).
One OpenCV thread.

    python bench/follow.py [--sizes 240x320 720x1280 1080x1920] [--frames 40] [--seed S] [--out bench/out/follow.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from vispipe.segment import associate
from vispipe.segment.evaluation.synthetic import TUNED, identity_clip
from vispipe.segment.geometry import box_xyxy

WHOLE_FRAME = 10**6  # FOLLOW_SEARCH this large: the region is the whole frame


def scaled(clip, size: tuple[int, int], frames: int):
    """The clip's first ``frames`` frames at ``size`` (height, width), each with its true masks (id -> mask)."""
    h, w = size
    for frame, ids in zip(clip.frames[:frames], clip.masks[:frames]):
        ids = cv2.resize(ids, (w, h), interpolation=cv2.INTER_NEAREST)
        yield cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR), {int(i): ids == i for i in np.unique(ids) if i}


def run(clip, size, frames: int, search: float) -> tuple[float, list]:
    """Mean ms per frame of ``follow`` with ``FOLLOW_SEARCH = search``, and the followed boxes per frame."""
    associate.FOLLOW_SEARCH = search
    seconds, boxes, items = 0.0, [], scaled(clip, size, frames)
    association = associate.Association(*next(items), {"every": 10, "min_similarity": 0.8})
    for k, (frame, masks) in enumerate(items, start=1):
        hsv = association.hsv(frame)
        start = time.perf_counter()
        association.follow(k, frame, masks, hsv)
        seconds += time.perf_counter() - start
        boxes.append({i: (f.frame, tuple(round(c, 3) for c in f.box)) for i, f in association.followed.items()})
    return 1000 * seconds / (frames - 1), boxes


def corners(clip, size, frames: int, every: int = 10) -> tuple[float, float]:
    """Mean ms per frame of ``track_points``, and per anchor (every ``every`` frames, all instances)
    of ``start_points``."""
    track_s, anchor_s, anchors, items = 0.0, 0.0, 0, scaled(clip, size, frames)
    association = associate.Association(*next(items), {"every": every, "min_similarity": 0.8})
    for k, (frame, masks) in enumerate(items, start=1):
        start = time.perf_counter()
        association.track_points(k, frame)
        track_s += time.perf_counter() - start
        if k % every == 0:  # an anchor: the corners' motion is measured from here
            association.motion.update({i: associate.Motion(k, box_xyxy(m)) for i, m in masks.items()})
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            start = time.perf_counter()
            association.start_points(gray, masks)
            anchor_s += time.perf_counter() - start
            anchors += 1
    return 1000 * track_s / (frames - 1), 1000 * anchor_s / max(anchors, 1)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", nargs="+", default=["240x320", "720x1280", "1080x1920"], help="HEIGHTxWIDTH")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--seed", type=int, help="identity clip seed (default: the first tuned one with 6+ objects)")
    p.add_argument("--out", type=Path, default=Path("bench/out/follow.json"))
    args = p.parse_args()
    cv2.setNumThreads(1)
    seed = args.seed if args.seed is not None else next(s for s in TUNED if len(identity_clip(s).plans) >= 6)
    clip = identity_clip(seed)
    default = associate.FOLLOW_SEARCH
    rows = []
    for text in args.sizes:
        size = tuple(int(x) for x in text.split("x"))
        whole_ms, whole_boxes = run(clip, size, args.frames, WHOLE_FRAME)
        region_ms, region_boxes = run(clip, size, args.frames, default)
        same = np.mean([a == b for a, b in zip(whole_boxes, region_boxes)])
        corner_ms, anchor_ms = corners(clip, size, args.frames)
        rows.append({"size": text, "objects": len(clip.plans), "ms per frame, whole frame": whole_ms,
                     "ms per frame, region": region_ms, "speed-up": whole_ms / region_ms,
                     "frames with the same finds": float(same), "corners: ms per frame": corner_ms,
                     "corners: ms per anchor": anchor_ms})  # fmt: skip
    associate.FOLLOW_SEARCH = default
    print(f"Following by colours, identity clip {seed} ({len(clip.plans)} objects), {args.frames} frames, "
          f"region = window widened by {default} of its sizes on each side; 1 OpenCV thread\n")  # fmt: skip
    print("| size | colours, whole frame: ms per frame | colours, region | speed-up | frames with the same finds "
          "| corners: ms per frame | corners: ms per anchor |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['ms per frame, whole frame']:.2f} | {r['ms per frame, region']:.2f} | "
              f"{r['speed-up']:.1f}x | {r['frames with the same finds']:.0%} | {r['corners: ms per frame']:.2f} | "
              f"{r['corners: ms per anchor']:.2f} |")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "seed": seed,
        "frames": args.frames,
        "follow_search": default,
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
