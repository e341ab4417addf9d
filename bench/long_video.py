#!/usr/bin/env python
"""Long videos: the same scene at 1, 5 and 20 minutes (and an hour with ``--hours 1``), each step of
the chain run as its own process on it; per step, seconds per frame, the step's own peak memory
(``ru_maxrss`` of its process, from ``wait4``: no launcher in between) and what it leaves on disk,
with the ratios against the shortest video; time per frame also beyond each step's start-up (its
seconds on a 2 s video taken off). Prints a table, writes JSON.

The scene: two textured objects moving over a photo (the demo's still, scaled), one circling, one
crossing back and forth, 640x360 at 25 fps, written as H.264 frame by frame with its exact masks
(palette PNGs, the ground truth). The steps are the scripts the rules run, on the demo's tiny
random models, CPU: extract_frames (every frame kept), segment_first (from the true first-frame
mask as the prompt file, taken as it is: random weights would draw noise), propagate (``flow``, warp only by default: SAM2 on every frame
of an hour of video takes hours on a CPU; ``--refine`` turns it on), render_overlay,
export_annotations (yolo, cvat, label_studio) and evaluate_segmentation.

With ``--peer CHECKOUT`` the same steps also run from another checkout of this project (its scripts
and library, on the same videos and models): the code before the outputs were streamed, say.

    python bench/long_video.py [--minutes 1 5 20] [--hours 1] [--refine] [--peer CHECKOUT] [--keep] [--out bench/out/long_video.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from vispipe.segment.evaluation.synthetic import texture, write_palette_png
from vispipe.segment.files.frames import write_h264

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "config/config.yaml", ROOT / "config/demo.yaml"]
PHOTO = ROOT / "resources/demo/bigbuckbunny_frame.jpg"
W, H, FPS = 640, 360, 25
STEPS = ["extract_frames", "segment_first", "propagate", "render_overlay", "export_annotations",
         "evaluate_segmentation"]  # fmt: skip


def scene(frames: int):
    """(RGB frame, id mask) of each frame: object 1 (a textured disc) circles, object 2 (a textured
    rectangle) crosses the frame and back every 8 seconds, in front of object 1."""
    rng = np.random.default_rng(0)
    photo = cv2.resize(cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB), (W, H), interpolation=cv2.INTER_AREA)
    disc, rect = texture(rng, 80, 80, np.array([1.0, 0.5, 0.3])), texture(rng, 60, 110, np.array([0.3, 0.6, 1.0]))
    yy, xx = np.mgrid[:80, :80]
    inside_disc = (yy - 39.5) ** 2 + (xx - 39.5) ** 2 <= 40**2
    for k in range(frames):
        t = k / FPS
        frame, ids = photo.copy(), np.zeros((H, W), np.uint8)
        cx, cy = int(W / 2 + 150 * np.cos(t) - 40), int(H / 2 + 100 * np.sin(t) - 40)
        region = (slice(cy, cy + 80), slice(cx, cx + 80))
        frame[region][inside_disc] = disc[inside_disc]
        ids[region][inside_disc] = 1
        phase = (t % 8) / 8
        x = int(20 + (W - 150) * (2 * phase if phase < 0.5 else 2 - 2 * phase))
        frame[150:210, x : x + 110] = rect
        ids[150:210, x : x + 110] = 2
        yield frame, ids


def make_video(folder: Path, frames: int) -> tuple[Path, Path]:
    """The scene as ``clip.mp4`` and ``gt/NNNNN.png``, frame by frame."""
    gt = folder / "gt"
    gt.mkdir(parents=True)

    def frames_and_masks():
        for k, (frame, ids) in enumerate(scene(frames)):
            write_palette_png(gt / f"{k:05d}.png", ids)
            yield frame

    write_h264(folder / "clip.mp4", frames_and_masks(), Fraction(FPS))
    return folder / "clip.mp4", gt


# Runs one command and reports its wall seconds and peak RSS. A child's ru_maxrss counts the pages it
# shares with its parent between fork and exec, so the step is started from this small interpreter,
# not from the benchmark (whose memory, holding the video it made, would be every step's floor).
MEASURE = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
with open(sys.argv[1], "w") as err:
    proc = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": usage.ru_maxrss / 1024}))
"""


def run_step(name: str, args: list, log: Path, root: Path = ROOT) -> dict:
    """``root/scripts/<name>.py`` (with ``root``'s library) as its own process: its wall seconds and
    peak RSS (MB, from wait4 in a small launcher: see MEASURE)."""
    cmd = [sys.executable, str(root / "scripts" / f"{name}.py"), *map(str, args), "--log", str(log)]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    stderr = log.with_suffix(".stderr")  # a file, not a pipe: a pipe nobody reads would fill with progress bars
    stderr.parent.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(stderr), *cmd], env=env, capture_output=True, text=True)
    got = json.loads(out.stdout)
    if got.pop("code"):
        sys.exit(f"{name} failed:\n{stderr.read_text()[-3000:]}")
    return got


def disk_mb(*paths: Path) -> float:
    total = 0
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
        total += sum(p.stat().st_size for p in files)
    return total / 2**20


def measure(work: Path, minutes: float, models: dict, refine: bool, root: Path = ROOT, name: str = "ours") -> dict:
    frames = round(minutes * 60 * FPS)
    d = work / f"{minutes:g}min" / name
    t0 = time.perf_counter()
    if not (work / f"{minutes:g}min/input/clip.mp4").exists():
        make_video(work / f"{minutes:g}min/input", frames)
    video, gt = work / f"{minutes:g}min/input/clip.mp4", work / f"{minutes:g}min/input/gt"
    made = time.perf_counter() - t0
    override = {"segment": {"frames": {"max_seconds": None, "stride": 1}, "propagate": {"refine": refine},
                            "export": {"formats": ["yolo", "cvat", "label_studio"]}}}  # fmt: skip
    configs = [root / "config/config.yaml", root / "config/demo.yaml"]  # the checkout's own
    cfg = [a for c in configs for a in ("--config", c)] + ["--config", json.dumps(override)]
    fr, t = ["--frames", d / "frames", "--meta", d / "meta.json"], d / "shape"
    sam2 = ["--sam2", models["sam2"]]
    steps = {
        "extract_frames": ([*cfg, "--video", video, *fr], [d / "frames", d / "meta.json"]),
        "segment_first": ([*cfg, *fr, "--target", "rabbit", "--out-dir", t, "--prompt", gt / "00000.png", *sam2,
                           "--clipseg", models["clipseg"]], [t / "first", t / "instances.json"]),
        "propagate": ([*cfg, *fr, "--instances", t / "instances.json", "--masks", t / "masks", "--tracks",
                       t / "tracks.json", "--rle", t / "masks.rle.json", *sam2],
                      [t / "masks", t / "tracks.json", t / "tracks.jsonl", t / "masks.rle.json"]),
        "render_overlay": ([*cfg, *fr, "--masks", t / "masks", "--tracks", t / "tracks.json", "--out",
                            t / "overlay.mp4", "--first", t / "first/overlay.png"], [t / "overlay.mp4"]),
        "export_annotations": ([*cfg, *fr, "--masks", t / "masks", "--tracks", t / "tracks.json", "--out-dir",
                                t / "export"], [t / "export"]),
        "evaluate_segmentation": (["--masks", t / "masks", "--meta", d / "meta.json", "--ground-truth", gt,
                                   "--out-dir", t / "eval", "--no-match"], [t / "eval"]),
    }  # fmt: skip
    row = {"minutes": minutes, "frames": frames, "make_seconds": made, "steps": {}}
    for step in STEPS:
        args, outputs = steps[step]
        got = run_step(step, args, d / f"{step}.log", root)
        got["seconds_per_frame"] = got["seconds"] / (1 if step == "segment_first" else frames)  # one frame
        got["disk_mb"] = disk_mb(*(o for o in outputs if o.exists()))
        row["steps"][step] = got
        print(f"  {minutes:g} min, {name}, {step}: {got['seconds']:.1f} s, {got['peak_rss_mb']:.0f} MB, "
              f"{got['disk_mb']:.1f} MB on disk", flush=True)  # fmt: skip
    jf = (t / "eval/jf.md").read_text()
    row["j_and_f"] = jf.split("mean", 1)[1].split()[2] if "mean" in jf else None
    return row


STARTUP_S = 2  # the video whose time is each step's start-up


def per_frame_beyond(row: dict, startup: dict) -> dict:
    """Each step's seconds per frame beyond its start-up (``beyond_startup_s``): its seconds less those
    it took on the start-up video, over the frames beyond that video's; segment_first (one frame, the
    first): its seconds."""
    for name, got in row["steps"].items():
        first = startup["steps"][name]
        got["beyond_startup_s"] = got["seconds"] if name == "segment_first" else (
            (got["seconds"] - first["seconds"]) / (row["frames"] - startup["frames"]))  # fmt: skip
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 20])
    p.add_argument("--hours", type=float, default=0, help="also a video of this many hours")
    p.add_argument("--refine", action="store_true", help="SAM2 refines every frame (slow on a CPU)")
    p.add_argument("--peer", type=Path, help="another checkout of this project, run on the same videos")
    p.add_argument("--keep", action="store_true", help="keep the working folder (its path is printed)")
    p.add_argument("--out", type=Path, default=ROOT / "bench/out/long_video.json")
    args = p.parse_args()
    durations = sorted(args.minutes + ([args.hours * 60] if args.hours else []))
    work = Path(tempfile.mkdtemp(prefix="long-video-"))
    try:
        models = {"clipseg": work / "models/clipseg", "sam2": work / "models/sam2"}
        cfg = [a for c in CONFIGS for a in ("--config", c)]
        subprocess.run([sys.executable, str(ROOT / "scripts/fetch_models.py"), *map(str, cfg), "--clipseg",
                        models["clipseg"], "--sam2", models["sam2"]], check=True, capture_output=True)  # fmt: skip
        print(f"start-up: {STARTUP_S} s ({STARTUP_S * FPS} frames)", flush=True)
        startup = measure(work, STARTUP_S / 60, models, args.refine)
        rows, peer = [], []
        for minutes in durations:
            print(f"{minutes:g} min ({int(minutes * 60 * FPS)} frames at {W}x{H}, {FPS} fps):", flush=True)
            rows.append(per_frame_beyond(measure(work, minutes, models, args.refine), startup))
            if args.peer:
                peer.append(measure(work, minutes, models, args.refine, args.peer.resolve(), "peer"))
            if not args.keep:  # the next video's disk
                shutil.rmtree(work / f"{minutes:g}min", ignore_errors=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    base = rows[0]
    print(
        f"\n{W}x{H} at {FPS} fps, every frame kept, tiny random models on the CPU, "
        f"propagate {'flow + SAM2' if args.refine else 'flow, warp only'}; ratios against {base['minutes']:g} min\n"
    )
    print("Time / frame: the step's seconds over its frames; beyond start-up: less the seconds it takes on a "
          f"{STARTUP_S} s video (imports, models), over the frames beyond those (segment_first: its seconds, one "
          "frame). The time ratio compares the latter.\n")  # fmt: skip
    print("| step | video | frames | time / frame | beyond start-up | peak RSS | on disk | time ratio | RSS ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in STEPS:
        b = base["steps"][name]
        for r in rows:
            s = r["steps"][name]
            print(f"| {name} | {r['minutes']:g} min | {r['frames']} | {s['seconds_per_frame'] * 1000:.2f} ms "
                  f"| {s['beyond_startup_s'] * 1000:.2f} ms | {s['peak_rss_mb']:.0f} MB | {s['disk_mb']:.1f} MB | "
                  f"{s['beyond_startup_s'] / b['beyond_startup_s']:.2f}x | {s['peak_rss_mb'] / b['peak_rss_mb']:.2f}x |")  # fmt: skip
    if peer:
        print(f"\nThe peer ({args.peer}) on the same videos: peak RSS, ours / the peer's\n")
        print("| step | video | peak RSS (peer) | peak RSS (ours) | ours / peer | peer's RSS ratio to its shortest |")
        print("|---|---|---|---|---|---|")
        for name in STEPS:
            for r, q in zip(rows, peer):
                a, b = r["steps"][name]["peak_rss_mb"], q["steps"][name]["peak_rss_mb"]
                print(f"| {name} | {r['minutes']:g} min | {b:.0f} MB | {a:.0f} MB | {a / b:.2f}x "
                      f"| {b / peer[0]['steps'][name]['peak_rss_mb']:.2f}x |")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "size": [H, W],
              "fps": FPS, "refine": args.refine, "startup": startup, "rows": rows, "peer": {"checkout": str(args.peer), "rows": peer}}  # fmt: skip
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
