"""Kills and full disks. Kills: every step that runs longer than a second on the demo config,
stopped by SIGKILL or by SIGTERM to its whole process group (what Slurm and `timeout` send), then
run again. Full disks: each kind of write (npz, checkpoint, resume state, frames, masks, MP4) runs
out of space on a small tmpfs (root only; skipped with the reason elsewhere), then runs again after
space is freed.

Each case states its fault (the signal and when it lands) and checks three things:

- while the step runs, every declared output that exists is complete (it parses or decodes, and a
  folder holds all its files): sampled every few milliseconds, and once more after the kill;
- the killed process exited by the signal (SIGTERM: exit 143 without a traceback, or the signal
  itself when it landed before Python installed its handler);
- after the rerun the outputs equal those of an uninterrupted run: weights bit for bit, masks,
  frames, tracks and pictures byte for byte (timings aside), the overlay video frame for frame.

Kill points: "start" (0.3 s in, while imports and model loading run), "mid" (half the step's
uninterrupted time; a quarter, then an eighth, if the step finished first on less loaded cores),
"final" (the moment its first output appears, while the others are still being written).
7 steps x 3 points x 2 signals would be 42 runs; each step gets two cases instead,
chosen deterministically so that over the steps every point meets every signal.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DEMO_CONFIGS, DEMO_VIDEO, ROOT, drop_timing, env_with_venv, run_script

pytestmark = pytest.mark.slow

CFG = [a for c in DEMO_CONFIGS for a in ("--config", str(c))]
TINY = {
    "classify": {
        "data": {"limit_train": 600},  # every step trains on the same 600 digits: quick, and enough to kill mid-epoch
        "device": "cpu",
        "teacher": {"train": {"epochs": 2}},
        "student": {"model": {"dim": 32, "depth": 2, "heads": 2, "class_attn_blocks": 1},
                    "train": {"epochs": 4, "clean_last_epochs": 1, "batch_size": 64}},
    },
    "segment": {"device": "cpu", "frames": {"max_seconds": 1.0, "stride": 5}},
}  # fmt: skip


def cfg(extra: dict | None = None) -> list[str]:
    return [*CFG, "--config", json.dumps(extra or TINY)]


# step -> (script, arguments given the inputs folder and the output folder, declared outputs)
def steps(inp: Path) -> dict:
    frames, meta, models = inp / "frames", inp / "meta.json", ["--sam2", inp / "models/sam2"]
    seg_in = ["--frames", frames, "--meta", meta]
    return {
        "fetch_cifar10": ("fetch_cifar10", lambda o: [*cfg(), "--out-dir", o], ["train.npz", "test.npz"]),
        "train_teacher": ("train_teacher", lambda o: [*cfg(), "--data", inp / "digits", "--out-dir", o],
                          ["model.pt", "history.csv", "metrics.json", "curves.png"]),
        "train_student": ("train_student", lambda o: [*cfg(), "--data", inp / "digits", "--teacher",
                          inp / "teacher/model.pt", "--out-dir", o],
                          ["best.pt", "last.pt", "history.csv", "metrics.json", "curves.png"]),
        "evaluate": ("evaluate", lambda o: [*cfg(), "--checkpoint", inp / "teacher/model.pt", "--test",
                     inp / "digits/test.npz", "--train-metrics", inp / "teacher/metrics.json", "--out-dir", o],
                     ["confusion_counts.png", "confusion_normalized.png", "per_class_accuracy.png", "pred_grid.png",
                      "classification_report.txt", "classification_report.csv", "metrics.json"]),
        "extract_frames": ("extract_frames", lambda o: [*cfg(), "--video", DEMO_VIDEO, "--frames", o / "frames",
                           "--meta", o / "meta.json"], ["frames/", "meta.json"]),
        "segment_first": ("segment_first", lambda o: [*cfg(), *seg_in, "--target", "rabbit", "--clipseg",
                          inp / "models/clipseg", *models, "--out-dir", o],
                          ["first/heatmap.png", "first/mask.png", "instances.json"]),
        "propagate": ("propagate", lambda o: [*cfg(), *seg_in, "--instances", inp / "rabbit/instances.json",
                      *models, "--masks", o / "masks", "--tracks", o / "tracks.json", "--rle", o / "rle.json"],
                      ["masks/", "tracks.json", "tracks.jsonl", "rle.json"]),
        "render_overlay": ("render_overlay", lambda o: [*cfg(), *seg_in, "--masks", inp / "rabbit/masks",
                           "--tracks", inp / "rabbit/tracks.json", "--out", o / "overlay.mp4", "--first",
                           o / "first.png"], ["overlay.mp4", "first.png"]),
    }  # fmt: skip


POINTS, SIGNALS = ("start", "mid", "final"), (signal.SIGKILL, signal.SIGTERM)
STEPS = ["train_teacher", "train_student", "evaluate", "extract_frames", "segment_first", "propagate", "render_overlay"]
CASES = [(step, POINTS[(2 * i + j) % 3], SIGNALS[(i + j) % 2]) for i, step in enumerate(STEPS) for j in range(2)]
PROGRESS = {"history.csv"}  # rewritten after every epoch: its appearance is no sign of the final writes


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """What the steps read: digits, a tiny teacher, tiny random models, 5 demo frames and their first
    instances and masks (each made once, by the scripts)."""
    d = tmp_path_factory.mktemp("inputs")
    run_script("fetch_cifar10", *cfg(), "--out-dir", d / "digits")
    run_script("train_teacher", *cfg(), "--data", d / "digits", "--out-dir", d / "teacher")
    run_script("fetch_models", *CFG, "--clipseg", d / "models/clipseg", "--sam2", d / "models/sam2")
    run_script("extract_frames", *cfg(), "--video", DEMO_VIDEO, "--frames", d / "frames", "--meta", d / "meta.json")
    seg_in = ["--frames", d / "frames", "--meta", d / "meta.json"]
    models = ["--clipseg", d / "models/clipseg", "--sam2", d / "models/sam2"]
    run_script("segment_first", *cfg(), *seg_in, "--target", "rabbit", *models, "--out-dir", d / "rabbit")
    run_script("propagate", *cfg(), *seg_in, "--instances", d / "rabbit/instances.json", "--sam2", d / "models/sam2",
               "--masks", d / "rabbit/masks", "--tracks", d / "rabbit/tracks.json", "--rle", d / "rabbit/rle.json")  # fmt: skip
    return d


@pytest.fixture(scope="module")
def references(inputs, tmp_path_factory) -> dict[str, tuple[Path, float]]:
    """Each step run once without interruption: {step: (its output folder, seconds)}."""
    refs = {}
    for step, (script, args, _) in steps(inputs).items():
        out = tmp_path_factory.mktemp(f"ref-{step}")
        t0 = time.monotonic()
        run_script(script, *args(out))
        refs[step] = (out, time.monotonic() - t0)
    return refs


def complete(path: Path, ref: Path) -> str | None:
    """Why ``path`` (a declared output that exists) is not a complete file of its kind, or None."""
    try:
        if path.is_dir():
            want = sorted(p.name for p in ref.iterdir())
            have = sorted(p.name for p in path.iterdir())
            if have != want:
                return f"{len(have)} of {len(want)} files"
            for p in path.iterdir():
                why = complete(p, ref / p.name)
                if why:
                    return f"{p.name}: {why}"
            return None
        suffix = path.suffix
        if suffix == ".pt":
            torch.load(path, weights_only=True)
        elif suffix == ".json":
            json.loads(path.read_text())
        elif suffix == ".csv":
            rows = list(csv.reader(io.StringIO(path.read_text())))
            if not rows or len({len(r) for r in rows}) != 1:
                return "ragged CSV"
        elif suffix in (".png", ".jpg"):
            with Image.open(path) as im:
                im.load()
        elif suffix == ".jsonl":  # propagate's frames: every line whole, and all of them
            lines, want = path.read_text().splitlines(), ref.read_text().splitlines()
            if len(lines) != len(want):
                return f"{len(lines)} of {len(want)} lines"
            for line in lines:
                json.loads(line)
        elif suffix == ".npz":
            with np.load(path) as z, np.load(ref) as want:  # every array read in full: a cut one fails here
                if sorted(z.files) != sorted(want.files):
                    return f"arrays {sorted(z.files)}, not {sorted(want.files)}"
                for name in z.files:
                    z[name]
        elif suffix == ".mp4":
            import av

            with av.open(str(path)) as c:
                if sum(1 for _ in c.decode(video=0)) == 0:
                    return "no frames"
        elif path.stat().st_size == 0:
            return "empty"
    except FileNotFoundError:
        return None  # renamed away between listing and reading: not a partial file
    except Exception as e:  # noqa: BLE001 - any parse error means a partial file
        return f"{type(e).__name__}: {e}"
    return None


def test_a_cut_npz_is_not_complete(tmp_path):
    """The check the kill tests sample outputs with: an npz cut short, or missing an array, is partial."""
    ref = tmp_path / "ref.npz"
    np.savez_compressed(ref, images=np.arange(200_000, dtype=np.uint8), labels=np.arange(10))
    assert complete(ref, ref) is None
    cut, short = tmp_path / "cut.npz", tmp_path / "short.npz"
    cut.write_bytes(ref.read_bytes()[: ref.stat().st_size // 2])
    np.savez_compressed(short, images=np.arange(10, dtype=np.uint8))
    assert complete(cut, ref) and complete(short, ref) == "arrays ['images'], not ['images', 'labels']"


def assert_same(path: Path, ref: Path) -> None:
    """The rerun's output equals the uninterrupted run's (timings aside)."""
    if ref.is_dir():
        assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in ref.iterdir()), path
        for p in ref.iterdir():
            assert_same(path / p.name, p)
        return
    if ref.suffix == ".pt":
        a, b = torch.load(path, weights_only=True), torch.load(ref, weights_only=True)
        for key in ("model", "ema"):
            if key in b and b[key] is not None:
                for name, tensor in b[key].items():
                    assert torch.equal(a[key][name], tensor), f"{path}: {key}.{name} differs"
        assert drop_timing(a.get("metrics")) == drop_timing(b.get("metrics")) and a["epoch"] == b["epoch"], path
    elif ref.suffix == ".json":
        assert drop_timing(json.loads(path.read_text())) == drop_timing(json.loads(ref.read_text())), path
    elif ref.suffix == ".csv":
        rows = [list(csv.DictReader(open(p))) for p in (path, ref)]
        assert drop_timing(rows[0]) == drop_timing(rows[1]), path
    elif ref.suffix == ".mp4":
        import av

        frames = []
        for p in (path, ref):
            with av.open(str(p)) as c:
                frames.append([f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)])
        assert len(frames[0]) == len(frames[1]), path
        assert max(np.abs(a - b).mean() for a, b in zip(*frames)) < 1.0, path
    elif ref.name == "curves.png":  # its panels show seconds per epoch: same picture size, decodable
        assert Image.open(path).size == Image.open(ref).size, path
    else:
        assert path.read_bytes() == ref.read_bytes(), f"{path} differs from the uninterrupted run's"


def run_killed(cmd: list, outputs: list[Path], refs: list[Path], point: str, sig: int, mid: float) -> tuple:
    """Start ``cmd`` in its own process group, kill the group at ``point`` with ``sig``; sample the
    outputs all along. Returns (exit code, stderr, partial outputs seen, whether the kill landed)."""
    proc = subprocess.Popen(cmd, env=env_with_venv(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    t0, partial, checked = time.monotonic(), [], {}
    # "start": 0.3 s in, or sooner for a step that takes less (extract_frames of 5 frames imports no torch)
    deadline = t0 + {"start": min(0.3, mid / 2), "mid": mid}.get(point, 600)
    while proc.poll() is None:
        final = False
        for out, ref in zip(outputs, refs):
            if not out.exists():
                continue
            final = final or out.name not in PROGRESS
            stamp = (out.stat().st_mtime_ns, out.stat().st_size) if out.is_file() else len(list(out.iterdir()))
            if checked.get(out) != stamp:
                why = complete(out, ref)
                if why:
                    partial.append(f"{out.name}: {why}")
                checked[out] = stamp
        if time.monotonic() >= deadline or (point == "final" and final):
            os.killpg(proc.pid, sig)
            break
        time.sleep(0.005)
    _, stderr = proc.communicate(timeout=300)
    landed = proc.returncode != 0  # 0: it had finished before the signal
    for out, ref in zip(outputs, refs):  # and once more after the kill
        if out.exists():
            why = complete(out, ref)
            if why:
                partial.append(f"{out.name} after the kill: {why}")
    return proc.returncode, stderr, partial, landed


@pytest.mark.parametrize("step, point, sig", CASES, ids=[f"{s}-{p}-{signal.Signals(g).name}" for s, p, g in CASES])
def test_a_killed_step_reruns_to_the_uninterrupted_result(inputs, references, tmp_path, step, point, sig):
    script, args, names = steps(inputs)[step]
    ref_dir, seconds = references[step]
    out = tmp_path / "out"
    outputs = [out / n.rstrip("/") for n in names]
    refs = [ref_dir / n.rstrip("/") for n in names]
    cmd = [sys.executable, str(ROOT / "scripts" / f"{script}.py"), *map(str, args(out))]
    # "mid" is half the uninterrupted run's time, but that run may have shared the cores with another
    # test while this one has them alone: if the step finished first, try again at a quarter, an eighth.
    for share in (2, 4, 8):
        code, stderr, partial, landed = run_killed(cmd, outputs, refs, point, sig, mid=seconds / share)
        if landed or point != "mid":
            break
        shutil.rmtree(out)
    assert landed, f"{step} finished ({seconds:.1f} s uninterrupted) before the {point} kill"
    assert partial == [], f"partial outputs: {partial}"
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL, code
    else:
        assert code in (143, -signal.SIGTERM), (code, stderr[-2000:])
        assert "Traceback" not in stderr, stderr[-3000:]
    run_script(script, *args(out))  # the rerun (Snakemake reruns the job)
    for o, r in zip(outputs, refs):
        assert_same(o, r)
    if (out / "resume").exists():
        pytest.fail(f"{out / 'resume'} left after the rerun finished")


def test_the_cases_cover_every_point_with_every_signal():
    pairs = {(p, s) for _, p, s in CASES}
    assert pairs == {(p, s) for p in POINTS for s in SIGNALS} and {s for s, _, _ in CASES} == set(STEPS)


# --------------------------------------------------------------------------------------- full disk


@contextlib.contextmanager
def small_disk(path: Path, size: int):
    """A tmpfs of ``size`` bytes mounted at ``path`` (root only): a results folder that fills up."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a full disk is simulated with a small tmpfs, which needs root")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def grow(path: Path) -> None:
    """Free space: make the tmpfs large."""
    subprocess.run(["mount", "-o", "remount,size=512m", str(path)], check=True, capture_output=True)


def page_up(n: float) -> int:
    return max(8192, int(n) // 4096 * 4096 + 4096)


def size_of(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


@pytest.fixture(scope="module")
def teacher_sizes(inputs, tmp_path_factory) -> tuple[int, int]:
    """(resume state bytes, model.pt bytes) of the tiny teacher: a run killed after its first epoch
    leaves the state; the reference run its checkpoint."""
    out = tmp_path_factory.mktemp("probe")
    cmd = [sys.executable, str(ROOT / "scripts/train_teacher.py"), *map(str, cfg()), "--data", str(inputs / "digits"),
           "--out-dir", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env_with_venv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "resume/state.pt"
    while proc.poll() is None and not state.exists():
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    return state.stat().st_size, (inputs / "teacher/model.pt").stat().st_size


def teacher_epochs(n: int) -> dict:
    return {**TINY, "classify": {**TINY["classify"], "teacher": {"train": {"epochs": n}}}}


DISK_CASES = ["npz", "checkpoint", "resume-state", "frames", "masks", "mp4"]


@pytest.mark.parametrize("case", DISK_CASES)
def test_a_full_disk_is_a_clear_error_leaves_nothing_half_written_and_a_rerun_completes(
    inputs, references, teacher_sizes, tmp_path, case
):
    """Fault: the results folder runs out of space during one kind of write. Expected: exit 2 naming
    the file and saying what to do, no traceback, no partial output and no temporary file left;
    training keeps its previous epoch's state; after space is freed the rerun completes with the
    same outputs as an uninterrupted run."""
    all_steps = steps(inputs)
    step = {"npz": "fetch_cifar10", "checkpoint": "train_teacher", "resume-state": "train_teacher",
            "frames": "extract_frames", "masks": "propagate", "mp4": "render_overlay"}[case]  # fmt: skip
    script, args, names = all_steps[step]
    ref_dir = references[step][0]
    extra: dict | None = None
    if case == "checkpoint":  # one epoch: its state fits, the checkpoint beside it does not
        state, model = teacher_sizes
        extra = teacher_epochs(1)
        size = page_up(state + model / 2)
        ref_dir = tmp_path / "ref"
        run_script(script, *cfg(extra), "--data", inputs / "digits", "--out-dir", ref_dir)
        args = lambda o: [*cfg(extra), "--data", inputs / "digits", "--out-dir", o]  # noqa: E731
        failing = "model.pt"
    elif case == "resume-state":  # two epochs: the first state fits, not the second's copy beside it
        size, failing = page_up(1.5 * teacher_sizes[0]), "resume/state.pt"
    else:
        failing = {"npz": "train.npz", "frames": "frames", "masks": "masks", "mp4": "overlay.mp4"}[case]
        before = {"mp4": "first.png"}.get(case)  # written before the failing one
        size = page_up(size_of(ref_dir / failing) / 2 + (size_of(ref_dir / before) if before else 0))
    with small_disk(tmp_path / "disk", size) as out:
        proc = run_script(script, *args(out), check=False)
        assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
        assert f"no space left on the device writing {out / failing}" in proc.stderr, proc.stderr[-3000:]
        assert "free space and rerun" in proc.stderr and "Traceback" not in proc.stderr
        leftovers = [p for p in out.rglob(".*") if ".tmp" in p.name]
        assert leftovers == [], leftovers
        for name in names:
            o = out / name.rstrip("/")
            if o.exists():
                assert complete(o, ref_dir / name.rstrip("/")) is None, o
        assert not (out / failing).exists() or case == "resume-state"
        if case == "resume-state":
            kept = torch.load(out / "resume/state.pt", weights_only=True)
            assert kept["epoch"] == 1  # the first epoch's state survived the failed second save
            assert not (out / "model.pt").exists()
        grow(out)
        rerun = run_script(script, *args(out))
        if case in ("checkpoint", "resume-state"):
            assert "resuming from" in rerun.stderr
        for name in names:
            assert_same(out / name.rstrip("/"), ref_dir / name.rstrip("/"))
