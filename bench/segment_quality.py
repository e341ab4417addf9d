#!/usr/bin/env python
"""Tracking quality and flow speed on synthetic clips with exact masks; prints a table, writes JSON.

What can be measured honestly without real weights: the `flow` propagator with SAM2 refinement off
(`segment.propagate.refine: false`), seeded with the ground-truth masks of the objects in view on
the first frame, scored with J, F and J&F (vispipe.segment.evaluation.vos, equal to vos-benchmark's
scorer). Every flow setting runs on the same clips in the same process; the first is the seed's
(Farneback at full resolution). Also: one-step J (warp frame k-1's true mask to frame k, mean over
the steps where nothing hides object 1) and milliseconds of flow per frame.

Then whether the ids hold (vispipe.segment.evaluation.vos.identity: ID switches, IDF1, HOTA, AssA,
ids used), on the identity clips (vispipe.segment.evaluation.synthetic.identity_clip: 2-10 objects
at up to 15 px/frame, partial entries, exits and returns, reversals, crossings, look-alikes, scene
cuts), with a perfect detector (the true masks, shuffled) re-detecting every 5, 10 and 20 frames
(and never) and the seed's flow warping alone between detections (the masks drift): the matcher as
configured, against the same matcher with appearance switched off (``min_similarity`` 1), on the
seeds it was tuned on and on held-out seeds scored only after tuning ended, in the same run.

    python bench/segment_quality.py [--frames 40] [--size 480x640] [--seeds 0 1 2] [--workers 1] [--sets tuned held-out] [--out bench/out/segment_quality.json]

The identity clips run one clip per job; ``--workers N`` runs N at once (each with its own OpenCV
threads), which divides the identity part's time by about N and changes none of its scores. Its ms
per frame are then those of N clips sharing the machine: compare them only with a run of as many
workers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from vispipe.segment.evaluation import vos
from vispipe.segment.evaluation.synthetic import HELD_OUT, TUNED, identity_clip, make_clip
from vispipe.segment.files.masks import id_mask
from vispipe.segment.track.flow import backward_flow, propagate, warp_mask

FARNEBACK = {"method": "farneback", "pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5,
             "poly_sigma": 1.2}  # fmt: skip
SETTINGS = {
    "farneback, scale 1.0 (seed)": dict(FARNEBACK, scale=1.0),
    "farneback, scale 0.5": dict(FARNEBACK, scale=0.5),
    "dis fast, scale 1.0": dict(FARNEBACK, method="dis", dis_preset="fast", scale=1.0),
    "dis medium, scale 1.0": dict(FARNEBACK, method="dis", dis_preset="medium", scale=1.0),
}
BOUNDS = {"min_area_ratio": 0.5, "max_area_ratio": 2.0, "lost_area_ratio": 0.2, "min_sam2_score": 0.5,
          "use_object_score": True, "refine": False}  # fmt: skip


def run(clip, params: dict) -> dict:
    first = {i: clip.masks[0] == i for i in np.unique(clip.masks[0]) if i}
    t0 = time.perf_counter()
    results = list(propagate(iter(clip.frames), first, None, params, BOUNDS, seed=0))
    seconds = time.perf_counter() - t0
    empty = np.zeros(clip.masks[0].shape, bool)
    ids = sorted(first)
    pred = [np.select([r.masks.get(i, empty) for i in ids], ids, 0).astype(np.uint8) for r in results]
    table = vos.summary(vos.evaluate(pred, list(clip.masks), match=False)).set_index("object")
    steps = range(5, int(0.7 * len(clip.frames)))
    one_step = [
        vos.region_j(
            warp_mask(clip.masks[k - 1] == 1, backward_flow(clip.frames[k - 1], clip.frames[k], params)),
            clip.masks[k] == 1,
        )
        for k in steps
    ]
    seeded = [str(i) for i in ids]
    return {
        "J&F all objects": float(table.loc["mean", "J&F"]),
        "J&F seeded objects": float(table.loc[seeded, "J&F"].mean()),
        "J object 1": float(table.loc["1", "J"]),
        "one-step J object 1": float(np.mean(one_step)),
        "ms per frame": 1000 * seconds / (len(clip.frames) - 1),
    }


class Oracle:
    """A perfect detector: the true masks of the objects in view on frame ``k``, in a shuffled order."""

    def __init__(self, clip):
        self.clip = clip

    def detect(self, image, k):
        ids = [i for i in np.unique(self.clip.masks[k]) if i]
        np.random.default_rng(k).shuffle(ids)
        return [self.clip.masks[k] == i for i in ids]


MATCHERS = {"place, motion, looks": 0.8, "place, motion (looks off)": 1.0}  # min_similarity
EVERY = (5, 10, 20, 0)
SETS = {"tuned": TUNED, "held-out": HELD_OUT}  # identity seeds: tuned on, and scored only after tuning


def identity_row(clip, every: int, min_similarity: float) -> dict:
    """One clip's identity scores, the ids used against the objects a detection could have seen (in
    view on the first frame or on a re-detection frame), and seconds per frame of the whole loop."""
    first = {i: clip.masks[0] == i for i in np.unique(clip.masks[0]) if i}
    redetect = {"every": every, "match_iou": 0.5, "min_similarity": min_similarity, "scene_cut": 0.5}
    t0 = time.perf_counter()
    results = list(propagate(iter(clip.frames), first, None, SETTINGS["farneback, scale 1.0 (seed)"], BOUNDS, 0,
                             Oracle(clip) if every else None, redetect))  # fmt: skip
    seconds = time.perf_counter() - t0
    pred = [id_mask(r.masks, clip.masks[0].shape) for r in results]  # as the id PNGs are painted
    scores = vos.identity(pred, list(clip.masks))
    looked = [k for k in range(len(clip.masks)) if k == 0 or (every and (k % every == 0 or k == clip.cut))]
    seen = {int(i) for k in looked for i in np.unique(clip.masks[k]) if i}
    # on the frames a detection was matched, the masks are the detections: a switch there is the
    # matcher's; the others come from masks the flow carried onto another object between detections
    matcher = vos.identity([pred[k] for k in looked], [clip.masks[k] for k in looked])["id_switches"]
    return {"id switches": scores["id_switches"], "switches on re-detections": matcher, "IDF1": scores["idf1"], "HOTA": scores["hota"],
            "AssA": scores["assa"], "ids used": scores["predicted_ids"], "objects seen": len(seen),
            "ms per frame": 1000 * seconds / (len(clip.frames) - 1)}  # fmt: skip


def clip_rows(job: tuple[str, int, int]) -> tuple[str, int, dict]:
    """One identity clip's rows (set name, seed, frames): every interval, every matcher (one job)."""
    name, seed, frames = job
    clip = identity_clip(seed, frames)
    return name, seed, {(every, m): identity_row(clip, every, ms) for every in EVERY for m, ms in MATCHERS.items()}


def identity_table(frames: int, sets: dict | None = None, workers: int = 1, threads: int = 1) -> list[dict]:
    """Every matcher, every re-detection interval, on the tuned and the held-out identity clips (or
    on ``sets``: name -> seeds), ``workers`` clips at once (each with ``threads`` OpenCV threads)."""
    sets = SETS if sets is None else sets
    jobs = [(name, s, frames) for name, seeds in sets.items() for s in seeds]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers, cv2.setNumThreads, (threads,)) as pool:
            done = pool.map(clip_rows, jobs, chunksize=1)
    else:
        done = map(clip_rows, jobs)
    by_clip = {(name, s): r for name, s, r in done}
    rows = []
    for name, seeds in sets.items():
        for every in EVERY:
            for matcher in MATCHERS:
                per_clip = {s: by_clip[name, s][every, matcher] for s in seeds}
                total = {k: sum(r[k] for r in per_clip.values())
                         for k in ("id switches", "switches on re-detections", "ids used", "objects seen")}  # fmt: skip
                means = {
                    k: float(np.mean([r[k] for r in per_clip.values()]))
                    for k in ("IDF1", "HOTA", "AssA", "ms per frame")
                }
                bad = sorted(s for s, r in per_clip.items() if r["id switches"] or r["ids used"] != r["objects seen"])
                rows.append({"seeds": name, "every": every, "matcher": matcher, **total, **means,
                             "clips with a switch or an extra id": bad, "per_clip": per_clip})  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--size", default="480x640", help="HEIGHTxWIDTH")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--identity-frames", type=int, default=60, help="frames of each identity clip")
    p.add_argument("--threads", type=int, default=1, help="OpenCV threads (1: per-core figures)")
    p.add_argument("--workers", type=int, default=1, help="identity clips run at once (scores the same, ms shared)")
    p.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS),
                   help="identity seeds to score (held-out alone: a round's scoring in minutes, not an hour)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("bench/out/segment_quality.json"))
    args = p.parse_args()
    if args.workers < 1:
        p.error(f"--workers {args.workers}: give 1 or more")
    cv2.setNumThreads(args.threads)
    h, w = map(int, args.size.split("x"))
    clips = {f"seed {s}" + (", cut" if cut else ""): make_clip(args.frames, (h, w), s, cut)
             for s in args.seeds for cut in (None, int(0.75 * args.frames))}  # fmt: skip
    rows = []
    for name, params in SETTINGS.items():
        per_clip = {c: run(clip, params) for c, clip in clips.items()}
        keys = next(iter(per_clip.values())).keys()
        mean = {k: float(np.mean([r[k] for r in per_clip.values()])) for k in keys}
        rows.append({"flow": name, **mean, "per_clip": per_clip})
    base = rows[0]["ms per frame"]
    print(f"{len(clips)} clips of {args.frames} frames at {w}x{h} ({', '.join(clips)}), refinement off, "
          f"seeded with the true first-frame masks; {args.threads} OpenCV thread(s)\n")  # fmt: skip
    header = ["flow", "J&F all objects", "J&F seeded objects", "J object 1", "one-step J object 1", "ms per frame"]
    print("| " + " | ".join(header) + " | speed vs seed |")
    print("|" + "---|" * (len(header) + 1))
    for r in rows:
        cells = [r["flow"], *(f"{r[k]:.3f}" if k != "ms per frame" else f"{r[k]:.1f}" for k in header[1:])]
        print("| " + " | ".join(cells) + f" | {base / r['ms per frame']:.2f}x |")
    sets = {name: seeds for name, seeds in SETS.items() if name in args.sets}
    identity = identity_table(args.identity_frames, sets, workers=args.workers, threads=args.threads)
    counts = ", ".join(f"{len(seeds)} {name}" for name, seeds in sets.items())
    print(f"\nIds: identity clips ({counts} seeds, {args.identity_frames} frames "
          f"at 320x240, {args.workers} at once), a perfect detector re-detecting every N frames (0: never), warp only between; switches "
          "and ids summed over the clips, IDF1, HOTA, AssA and ms per frame (the loop, association included) "
          "their means:\n")  # fmt: skip
    print("| seeds | every | matcher | id switches (on re-detection frames) | ids used / objects seen "
          "| clips with a switch or extra id | IDF1 | HOTA | AssA | ms per frame |\n"
          "|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for r in identity:
        bad = r["clips with a switch or an extra id"]
        print(f"| {r['seeds']} | {r['every']} | {r['matcher']} | {r['id switches']} ({r['switches on re-detections']}) "
              f"| {r['ids used']} / "
              f"{r['objects seen']} | {len(bad)} {bad if bad else ''} | {r['IDF1']:.3f} | {r['HOTA']:.3f} "
              f"| {r['AssA']:.3f} | {r['ms per frame']:.1f} |")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": platform.processor() or platform.machine(), "frames": args.frames, "size": [h, w],
              "threads": args.threads, "workers": args.workers, "clips": list(clips), "rows": rows, "identity": identity,
              "identity_seeds": {name: list(seeds) for name, seeds in sets.items()}}  # fmt: skip
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
