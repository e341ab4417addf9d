#!/usr/bin/env python
"""Dataset throughput: N synthetic clips through Snakemake, against the same work in one process.

Both sides run the four segmentation steps of every clip (extract_frames, segment_first,
propagate, render_overlay) with the demo's tiny random models on the CPU, on the same cores:

- **snakemake**: ``snakemake --cores C`` on a copy of the workflow, the clips as
  ``segment.videos`` entries; models are built first (``fetch_models``), outside the timing.
- **loop**: C Python processes, each importing once and calling the same library functions
  (``vispipe.segment.steps``: frames, first, propagate, overlay) for its share of the clips, models loaded from disk at each call as
  the steps do. Every step runs on one thread on both sides (Snakemake's ``--set-threads``), so C
  steps run side by side on C cores either way.

The ratio snakemake / loop is what the pipeline costs on top of its own work: starting Python,
importing the ML stack and Snakemake's scheduling, for every step of every clip.

    python bench/dataset.py [--clips 60] [--seconds 3] [--size 360x640] [--cores 1 2] [--out bench/out/dataset.json]
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
from pathlib import Path

from vispipe.layout import WORKFLOW_FILES

ROOT = Path(__file__).resolve().parents[1]
TARGET = "shape"
ENV = dict(os.environ, TQDM_DISABLE="1")  # the rules find this interpreter themselves ($VISPIPE_PYTHON)
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--quiet", "all", "--configfile", "config/demo.yaml", "bench.yaml"]


def copy_workflow(dest: Path) -> Path:
    for rel in WORKFLOW_FILES:
        src, target = ROOT / rel, dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, symlinks=False)
        elif src.exists():
            shutil.copy2(src, target)
    return dest


def make_clips(folder: Path, n: int, seconds: float, size: tuple[int, int], fps: int = 10) -> list[Path]:
    """``n`` synthetic clips (vispipe.segment.evaluation.synthetic, a different seed each) as H.264 MP4s."""
    from vispipe.segment.evaluation.synthetic import make_clip, save_clip

    paths = []
    for i in range(n):
        path = folder / f"clip{i:04d}.mp4"
        save_clip(make_clip(max(2, round(seconds * fps)), size, seed=i, fps=fps), path, folder / "gt" / path.stem)
        paths.append(path)
    return paths


def bench_config(clips: list[Path], seconds: float, models_dir: Path) -> dict:
    """The overrides on top of config/demo.yaml: the clips as videos, one target, CPU."""
    return {
        "segment": {
            "device": "cpu",
            "models": {"dir": str(models_dir)},
            "frames": {"max_seconds": seconds, "stride": 1},
            "targets": {TARGET: {"prompt": "a textured shape"}},
            "videos": {p.stem: {"path": str(p), "targets": [TARGET]} for p in clips},
            "images": {},
        }
    }


def outputs(clips: list[Path]) -> list[str]:
    return [f"results/segment/{p.stem}/{TARGET}/overlay.mp4" for p in clips]


def run_snakemake(wf: Path, cores: int, targets: list[str]) -> float:
    # one thread per step, as each loop process has: the same work on the same cores
    one_thread = [f"{rule}=1" for rule in ("segment_first", "propagate", "segment_image")]
    cmd = [*SNAKEMAKE, "--cores", str(cores), "--set-threads", *one_thread, "--", *targets]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=wf, capture_output=True, text=True, env=ENV)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return seconds


LOOP = """
import json, sys
from pathlib import Path
t0 = __import__("time").perf_counter()
import cv2, torch
torch.set_num_threads(int(sys.argv[3])); cv2.setNumThreads(int(sys.argv[3]))
from vispipe.config import load
from vispipe.segment.steps import first, frames, overlay, propagate
from vispipe.segment.settings import Settings

cfg = load(["config/config.yaml", "config/demo.yaml", "bench.yaml"])
s = Settings.parse(cfg)
models = {k: Path(v) for k, v in json.loads(sys.argv[2]).items()}
for key in json.loads(sys.argv[1]):
    out = Path("loop") / key
    video = Path(cfg["segment"]["videos"][key]["path"])
    frames.extract_frames(s, video, out / "frames", out / "meta.json")
    t = out / "shape"
    first.segment_first(s, "shape", out / "frames", out / "meta.json", t, models["clipseg"], models["sam2"])
    propagate.propagate_video(s, out / "frames", out / "meta.json", t / "instances.json", t / "masks",
                          t / "tracks.json", t / "masks.rle.json", models["sam2"], models["clipseg"])
    overlay.render_overlay(s, out / "frames", out / "meta.json", t / "masks", t / "tracks.json",
                         t / "overlay.mp4", t / "first" / "overlay.png")
"""


def run_loop(wf: Path, cores: int, keys: list[str], models: dict[str, str]) -> float:
    """``cores`` processes, each with one thread and an equal share of the clips."""
    shutil.rmtree(wf / "loop", ignore_errors=True)
    shares = [keys[i::cores] for i in range(cores)]
    env = dict(ENV, HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOOP, json.dumps(share), json.dumps(models), "1"],
            cwd=wf,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for share in shares
        if share
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            sys.exit(f"loop failed ({p.returncode}):\n{err[-5000:]}")
    return time.perf_counter() - t0


def dry_run_seconds(wf: Path, n: int, clips_per_job: int = 0) -> float:
    """Seconds for ``snakemake -n`` to plan every segmentation step of ``n`` videos (one file, n keys):
    four jobs per video, or with ``clips_per_job`` one segment_shard job per that many videos."""
    from vispipe.segment.shards import stamp

    video = "resources/demo/bigbuckbunny.mp4"
    cfg = {"segment": {"targets": {TARGET: {"prompt": "a shape"}}, "images": {},
                       "videos": {f"v{i:05d}": {"path": video, "targets": [TARGET]} for i in range(n)}}}  # fmt: skip
    (wf / "dag.yaml").write_text(json.dumps(cfg))
    if clips_per_job:
        sharded = ["--set-resources", f"segment_shard:clips={clips_per_job}"]
        targets = [stamp(f"{i:04d}") for i in range(-(-n // clips_per_job))]
    else:
        sharded, targets = [], [f"results/segment/v{i:05d}/{TARGET}/overlay.mp4" for i in range(n)]
    cmd = [sys.executable, "-m", "snakemake", "-n", "--quiet", "all", "--cores", "2", "--configfile",
           "config/demo.yaml", "dag.yaml", *sharded, "--", *targets]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=wf, capture_output=True, text=True, env=ENV)
    if proc.returncode:
        sys.exit(f"dry run of {n} videos failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=60)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--size", default="360x640", help="HEIGHTxWIDTH")
    p.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    p.add_argument("--dag", type=int, nargs="*", default=[1000, 10000], help="dry-run sizes (videos) to time")
    p.add_argument("--shard-clips", type=int, default=20, help="videos per segment_shard job in the sharded dry runs")
    p.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    p.add_argument("--out", type=Path, default=Path("bench/out/dataset.json"))
    args = p.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    tmp = args.keep or Path(tempfile.mkdtemp(prefix="vispipe-dataset-"))
    wf = copy_workflow(tmp / "wf")
    print(f"making {args.clips} clips of {args.seconds} s at {size[1]}x{size[0]} in {wf}", flush=True)
    clips = make_clips(wf / "clips", args.clips, args.seconds, size)
    models_dir = wf / "resources" / "models"
    (wf / "bench.yaml").write_text(json.dumps(bench_config(clips, args.seconds, models_dir)))
    run_snakemake(wf, 1, ["fetch_models"])
    models = {k: str(models_dir / f"random-tiny--{k}") for k in ("clipseg", "sam2")}
    keys = [c.stem for c in clips]

    rows = []
    for cores in args.cores:
        shutil.rmtree(wf / "results", ignore_errors=True)
        sm = run_snakemake(wf, cores, outputs(clips))
        loop = run_loop(wf, cores, keys, models)
        rows.append({"cores": cores, "clips": len(clips), "snakemake_s": round(sm, 2), "loop_s": round(loop, 2),
                     "snakemake_s_per_clip": round(sm / len(clips), 3), "loop_s_per_clip": round(loop / len(clips), 3),
                     "ratio": round(sm / loop, 3)})  # fmt: skip
        r = rows[-1]
        print(f"cores {cores}: snakemake {sm:.1f} s, loop {loop:.1f} s, ratio {r['ratio']:.2f}", flush=True)

    dag, dag_sharded = {}, {}
    for n in args.dag:
        dag[n] = round(dry_run_seconds(wf, n), 1)
        print(f"dry run of {n} videos (4 steps each): {dag[n]:.1f} s", flush=True)
        dag_sharded[n] = round(dry_run_seconds(wf, n, args.shard_clips), 1)
        print(f"dry run of {n} videos ({args.shard_clips} per segment_shard job): {dag_sharded[n]:.1f} s", flush=True)

    print("\n| cores | clips | snakemake s | s/clip | one-process loop s | s/clip | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['cores']} | {r['clips']} | {r['snakemake_s']:.1f} | {r['snakemake_s_per_clip']:.2f} | "
              f"{r['loop_s']:.1f} | {r['loop_s_per_clip']:.2f} | {r['ratio']:.2f}x |")  # fmt: skip
    report = {"clips": args.clips, "seconds": args.seconds, "size": list(size), "rows": rows, "dry_run_s": dag,
              "dry_run_sharded_s": dag_sharded, "shard_clips": args.shard_clips,
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()}}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.out}")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
