"""Concurrency: the same workflow run with 4 jobs at once gives the outputs of a one-job-at-a-time
run, and a second Snakemake on the same folder is refused by Snakemake's lock.

Fault: jobs of different videos, targets and models run side by side (temporary names that
collide, shared caches, a step that reads what another is still writing). Expected: identical
results. Two videos x two targets plus a small classification chain (up to the student's
evaluation), on 5 frames per video.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import copy_workflow, drop_timing, env_with_venv, snakemake

pytestmark = pytest.mark.slow

SMALL = """\
classify:
  device: cpu
  teacher: {train: {epochs: 1}}
  student:
    model: {dim: 32, depth: 2, heads: 2, class_attn_blocks: 1}
    train: {epochs: 2, clean_last_epochs: 1}
segment:
  device: cpu
  frames: {max_seconds: 1.0, stride: 5}
  targets: {white_rabbit: {prompt: a white rabbit}}
  videos:
    bigbuckbunny: {path: resources/demo/bigbuckbunny.mp4, targets: [rabbit, white_rabbit]}
    bunny2: {path: resources/demo/bigbuckbunny.mp4, targets: [rabbit, white_rabbit]}
  images: {}
"""
CONFIG = ["--configfile", "config/demo.yaml", "small.yaml"]
PAIRS = [(v, t) for v in ("bigbuckbunny", "bunny2") for t in ("rabbit", "white_rabbit")]
# the chains up to their results: the student's evaluation, and every pair's tracks (no overlays)
TARGETS = ["results/classify/student/eval/metrics.json", *(f"results/segment/{v}/{t}/tracks.json" for v, t in PAIRS)]
COMPARED = [
    "results/classify/student/best.pt",
    "results/classify/teacher/model.pt",
    "results/classify/student/eval/metrics.json",
    *(f"results/segment/{v}/{t}/{f}" for v, t in PAIRS
      for f in ("masks", "tracks.json", "tracks.jsonl", "masks.rle.json", "instances.json", "first/mask.png")),
]  # fmt: skip


def contents(path: Path):
    """What must agree between the runs: bytes (a folder: each file's), weights, JSON values."""
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir())}
    if path.suffix == ".json":
        return drop_timing(json.loads(path.read_text()))  # timings and the record of the run aside
    if path.suffix == ".pt":
        import torch

        return {k: v.tolist() for k, v in torch.load(path, weights_only=True)["model"].items()}
    return path.read_bytes()


def most_at_once(log: str) -> int:
    """The most jobs running at the same time, from the order of Snakemake's job start lines (``jobid: N``
    in a job's description) and end lines (``Finished jobid: N``) in its log."""
    running, most = set(), 0
    for line in log.splitlines():
        if m := re.match(r"Finished jobid: (\d+)", line.strip()):
            running.discard(m[1])
        elif m := re.fullmatch(r"jobid: (\d+)", line.strip()):
            running.add(m[1])
            most = max(most, len(running))
    return most


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    out = {}
    # one thread per job in both runs (PyTorch's sums depend on the thread count); the parallel run
    # keeps 4 jobs going at once on this 2-core machine
    for name, cores in (("serial", "1"), ("parallel", "4")):
        wf = copy_workflow(tmp_path_factory.mktemp(name) / "wf")
        (wf / "small.yaml").write_text(SMALL)
        cmd = [sys.executable, "-m", "snakemake", *TARGETS, "--cores", cores, "--max-threads", "1", *CONFIG]
        proc = subprocess.run(cmd, cwd=wf, env=env_with_venv(), capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-5000:]
        (wf / "snakemake.log").write_text(proc.stderr)
        out[name] = wf
    return out


def test_four_jobs_at_once_give_the_serial_results(runs):
    # the runs did what their names say: one job at a time, and several jobs side by side
    at_once = {name: most_at_once((wf / "snakemake.log").read_text()) for name, wf in runs.items()}
    assert at_once["serial"] == 1 and at_once["parallel"] >= 3, at_once
    for rel in COMPARED:
        a, b = runs["serial"] / rel, runs["parallel"] / rel
        assert a.exists() and b.exists(), rel
        assert contents(a) == contents(b), f"{rel} differs between the serial and the parallel run"
    leftovers = [p for wf in runs.values() for p in (wf / "results").rglob(".*tmp*")]
    assert leftovers == [], leftovers


def test_a_second_snakemake_on_the_same_folder_is_refused(runs):
    """While one Snakemake works in a folder, another one there stops with Snakemake's lock error."""
    wf = runs["serial"]
    (wf / "more.yaml").write_text("classify: {teacher: {train: {epochs: 3}}}\n")  # a few seconds of work
    teacher = "results/classify/teacher/model.pt"
    first = subprocess.Popen([sys.executable, "-m", "snakemake", teacher, "--cores", "1", *CONFIG, "more.yaml"],
                             cwd=wf, env=env_with_venv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list((wf / ".snakemake/locks").glob("*")):
            time.sleep(0.1)
        assert list((wf / ".snakemake/locks").glob("*")), "the first run never took the lock"
        second = snakemake(wf, teacher, *CONFIG, "more.yaml", check=False, timeout=300)
        assert second.returncode != 0
        assert "Directory cannot be locked" in second.stdout + second.stderr, (second.stdout + second.stderr)[-3000:]
    finally:
        first.wait(timeout=900)
    assert first.returncode == 0, first.stdout.read()[-3000:] if first.stdout else ""
