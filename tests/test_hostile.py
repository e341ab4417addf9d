"""Hostile and careless input: file names that are shell code, folders another user prepared, inputs
that would hold a node for hours, and values that used to end in a traceback (docs/faults.md,
"Hostile input"). Each case failed before the pipeline refused or handled it."""

from __future__ import annotations

import ast
import csv
import fcntl
import io
import json
import os
import re
import shutil
import stat
import string
import subprocess
import sys
import tarfile
import tempfile
import zlib
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import DEMO_CONFIGS, ROOT, copy_workflow, run_script, snakemake
from vispipe.segment.files.tracks import load as load_tracks

# Every character a shell treats specially, a newline and letters beyond ASCII, in one folder name:
# a command substitution or backtick that ran would leave a PWNED_* file in the job's folder.
HOSTILE = 'bob\'s "data"; $(touch PWNED_SUB) `touch PWNED_TICK` a\nb ñé'
# a sheet's cell holds no newline (the sheet would need quoting then): the rest of the same
ONE_LINE = "eve's $(touch PWNED_ROW) `touch PWNED_ROW2`; x"
ALLOWED_UNQUOTED = re.compile(r"threads|resources\.\w+")


def shell_commands(smk: Path) -> list[tuple[int, str]]:
    """The shell command of every rule in ``smk``: (line number, the command's format string)."""
    lines = smk.read_text().splitlines()
    commands = []
    for n, line in enumerate(lines):
        if line.strip() != "shell:":
            continue
        indent, parts = len(line) - len(line.lstrip()), []
        for body in lines[n + 1 :]:
            if body.strip() and len(body) - len(body.lstrip()) <= indent:
                break
            if body.strip():
                parts.append(ast.literal_eval(body.strip()))
        commands.append((n + 1, "".join(parts)))
    return commands


def test_every_field_of_every_shell_command_is_quoted_by_snakemake():
    """`{input.x:q}`, never `'{input.x}'` or a bare `{output.y}`: Snakemake quotes each path (each
    item of a list) with shlex.quote, so no file name or config value is read as shell code."""
    smks = sorted((ROOT / "rules").glob("*.smk"))
    found = 0
    for smk in smks:
        for line, cmd in shell_commands(smk):
            found += 1
            assert not re.search(r"['\"]\{", cmd), f"{smk.name}:{line}: hand-written quotes around a field: {cmd}"
            for _, field, spec, _ in string.Formatter().parse(cmd):
                if field is None or ALLOWED_UNQUOTED.fullmatch(field):
                    continue
                assert (spec or "").endswith("q"), f"{smk.name}:{line}: {{{field}}} is not quoted ({{{field}:q}})"
    assert found >= 15, f"only {found} shell commands found in {[s.name for s in smks]}"


def _tiny_archive(path: Path) -> None:
    """A class-per-folder archive (train/<class>/*.jpg, test/<class>/*.jpg), as classify.data reads."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tf:
        for split in ("train", "test"):
            for cls in ("cat", "dog"):
                for k in range(3):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(buf, format="JPEG")
                    info = tarfile.TarInfo(f"{split}/{cls}/{k:04d}.jpg")
                    info.size = len(buf.getvalue())
                    tf.addfile(info, io.BytesIO(buf.getvalue()))


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """Every kind of user path at once under HOSTILE: a video with a prompt file and ground truth, a
    frame folder, a still image, a sample sheet (listing a video under ONE_LINE), a DAVIS-layout
    dataset, the model folder and a classification archive; one Snakemake run of all their steps."""
    wf = copy_workflow(tmp_path_factory.mktemp("hostile") / "wf")
    h, row = wf / "in" / HOSTILE, wf / "in" / ONE_LINE
    h.mkdir(parents=True)
    row.mkdir()
    size = ["--height", 96, "--width", 128]
    run_script("make_synthetic", "--video", h / "clip.mp4", "--ground-truth", h / "gt", "--frames", 8, *size, cwd=wf)
    run_script("make_synthetic", "--davis", h / "DAVIS", "--sequences", 1, "--frames", 6, *size, cwd=wf)
    shutil.copy(h / "clip.mp4", row / "clip2.mp4")
    (h / "frames").mkdir()
    for i in range(4):
        Image.fromarray(np.full((96, 128, 3), 40 * i, np.uint8)).save(h / "frames" / f"{i:05d}.jpg")
    Image.fromarray(np.full((96, 128, 3), 90, np.uint8)).save(h / "still.jpg")
    (h / "prompt.json").write_text(json.dumps({"instances": [{"box": [10, 10, 60, 60]}]}))
    (h / "sheet.tsv").write_text(f"id\tpath\ttargets\nsheetclip\t{row / 'clip2.mp4'}\tshape\n")
    _tiny_archive(h / "cifar.tar.gz")
    cfg = {
        "classify": {"data": {"source": "folder", "path": str(h / "cifar.tar.gz"), "name": "tiny"}},
        "segment": {
            "models": {"dir": str(h / "models")},
            "frames": {"max_seconds": None, "stride": 1},
            "propagate": {"refine": False},
            "targets": {"shape": {"prompt": "shape"}, "objects": {"prompt": None}},
            "videos": {
                "clip": {
                    "path": str(h / "clip.mp4"),
                    "targets": ["shape"],
                    "ground_truth": str(h / "gt"),
                    "prompts": {"shape": str(h / "prompt.json")},
                },
                "folder": {"path": str(h / "frames"), "fps": 10, "targets": ["shape"]},
            },  # fmt: skip
            "images": {"still": {"path": str(h / "still.jpg"), "targets": ["shape"]}},
            "samples": {"videos": str(h / "sheet.tsv")},
            "davis": {"root": str(h / "DAVIS"), "target": "objects"},
            "export": {"formats": ["yolo", "cvat", "label_studio"]},
        },
    }
    (wf / "hostile.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    seg = "results/segment"
    targets = ["data/tiny/train.npz", f"{seg}/clip/shape/overlay.mp4", f"{seg}/clip/shape/eval/jf.md",
               f"{seg}/clip/shape/export", f"{seg}/folder/shape/overlay.mp4", f"{seg}/sheetclip/shape/overlay.mp4",
               f"{seg}/images/still/shape/overlay.png", f"{seg}/davis/results.md"]  # fmt: skip
    proc = snakemake(wf, "--configfile", "config/demo.yaml", "hostile.yaml", "--", *targets, check=False)
    return wf, h, proc


def test_paths_holding_shell_code_run_as_names(hostile_run):
    wf, h, proc = hostile_run
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert not list(wf.rglob("PWNED*")), "a file name ran as a shell command"
    seg = wf / "results/segment"
    # the prompt file, the model folders and the ground truth were read where they are
    first = json.loads((seg / "clip/shape/instances.json").read_text())
    assert first["prompt_file"] == str(h / "prompt.json") and len(first["instances"]) == 1
    assert {p.name for p in (h / "models").iterdir()} >= {"random-tiny--clipseg", "random-tiny--sam2"}
    assert "J&F" in (seg / "clip/shape/eval/jf.md").read_text()
    for video, count in (("clip", 8), ("folder", 4), ("sheetclip", 8)):
        meta = json.loads((seg / video / "meta.json").read_text())
        assert meta["count"] == count and Path(meta["video"]).parent.name in (HOSTILE, ONE_LINE), meta["video"]
        tracks = load_tracks(seg / video / "shape/tracks.json")
        assert len(tracks["frames"]) == count and (seg / video / "shape/overlay.mp4").stat().st_size > 0
    assert {p.name for p in (seg / "clip/shape/export").iterdir()} >= {"yolo", "cvat.xml", "label_studio.json"}
    assert (seg / "images/still/shape/overlay.png").is_file()
    assert "synth00" in (seg / "davis/results.md").read_text()
    with np.load(wf / "data/tiny/train.npz") as npz:
        assert len(npz["labels"]) == 6 and list(npz["classes"]) == ["cat", "dog"]


# ------------------------------------------------------------------------------ GPU slot locks

NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user's needs root")


def launch_gpu_step(tmpdir: Path, *, user: int | None = None, python: str = sys.executable, pythonpath=None,
                    timeout: float = 30, **env_extra) -> subprocess.CompletedProcess:  # fmt: skip
    """``python -m vispipe.gpus`` in front of a job that prints its GPU, on one faked GPU."""
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "XDG_RUNTIME_DIR",
                                                             "VISPIPE_GPU_HELD")}  # fmt: skip
    env.update(TMPDIR=str(tmpdir), VISPIPE_GPUS="1", **env_extra)
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    job = [python, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"]
    return subprocess.run([python, "-m", "vispipe.gpus", "--", *job], env=env, capture_output=True, text=True,
                          timeout=timeout, user=user, group=user)  # fmt: skip


@root_only
def test_a_slot_folder_another_user_made_is_refused_and_nothing_is_written_through_it(tmp_path):
    """The attack: another user makes the slot folder first, with the lock file a link to the victim's
    ~/.bashrc. The step used to truncate the victim's file and write its PID into it."""
    victim = tmp_path / "bashrc"
    victim.write_text("export PATH=...\n")
    folder = tmp_path / f"vispipe-gpu-slots-{os.geteuid()}"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    (folder / "gpu0-slot0.lock").symlink_to(victim)
    os.lchown(folder / "gpu0-slot0.lock", NOBODY, NOBODY)
    os.chown(folder, NOBODY, NOBODY)
    proc = launch_gpu_step(tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{folder} is owned by uid {NOBODY}, not by you" in proc.stderr and "TMPDIR" in proc.stderr
    assert victim.read_text() == "export PATH=...\n"


@root_only
def test_a_link_or_another_users_lock_file_in_ones_own_folder_is_refused_not_waited_on(tmp_path):
    folder = tmp_path / f"vispipe-gpu-slots-{os.geteuid()}"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (folder / "gpu0-slot0.lock").symlink_to(victim)
    proc = launch_gpu_step(tmp_path)
    assert proc.returncode == 2 and "is a symbolic link to" in proc.stderr, proc.stderr
    assert victim.read_text() == "keep\n"

    # a lock file that is another user's (who may hold its flock forever): an error at once, no wait
    (folder / "gpu0-slot0.lock").unlink()
    (folder / "gpu0-slot0.lock").write_text("")
    os.chown(folder / "gpu0-slot0.lock", NOBODY, NOBODY)
    with open(folder / "gpu0-slot0.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = launch_gpu_step(tmp_path, timeout=20)
    assert proc.returncode == 2 and f"owned by uid {NOBODY}, not by you" in proc.stderr, proc.stderr


def test_the_slot_folder_is_made_private_and_xdg_runtime_dir_is_preferred(tmp_path):
    proc = launch_gpu_step(tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "0", proc.stderr
    folder = tmp_path / f"vispipe-gpu-slots-{os.geteuid()}"
    st = folder.lstat()
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    assert (folder / "gpu0-slot0.lock").is_file()

    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    proc = launch_gpu_step(tmp_path / "elsewhere", XDG_RUNTIME_DIR=str(runtime))
    assert proc.returncode == 0, proc.stderr
    assert (runtime / "vispipe-gpu-slots" / "gpu0-slot0.lock").is_file()
    # a runtime folder open to others is not used: the private one under TMPDIR is
    runtime.chmod(0o777)
    (tmp_path / "t2").mkdir()
    proc = launch_gpu_step(tmp_path / "t2", XDG_RUNTIME_DIR=str(runtime))
    assert proc.returncode == 0 and (tmp_path / "t2" / f"vispipe-gpu-slots-{os.geteuid()}").is_dir(), proc.stderr


@root_only
def test_as_a_plain_user_the_slot_folder_is_its_own_and_roots_is_refused():
    """The same launcher run as uid 65534 (nobody), from a copy of the four standard-library modules
    it imports, by the system's Python: it makes its own 0700 folder, and refuses one root made."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if not python:
        pytest.skip("no system python3 that another user can run")
    shared = Path(tempfile.mkdtemp(prefix="vispipe-hostile-", dir="/tmp"))
    try:
        shared.chmod(0o1777)
        pkg = shared / "pkg" / "vispipe"
        pkg.mkdir(parents=True)
        for name in ("__init__.py", "errors.py", "private.py", "gpus.py"):
            shutil.copy(ROOT / "src" / "vispipe" / name, pkg / name)
        for p in (shared / "pkg", pkg, *pkg.iterdir()):
            p.chmod(0o755)
        (shared / "tmp").mkdir(mode=0o1777)
        (shared / "tmp").chmod(0o1777)
        proc = launch_gpu_step(shared / "tmp", user=NOBODY, python=python, pythonpath=shared / "pkg")
        assert proc.returncode == 0 and proc.stdout.strip() == "0", proc.stderr
        own = shared / "tmp" / f"vispipe-gpu-slots-{NOBODY}"
        assert own.stat().st_uid == NOBODY and stat.S_IMODE(own.stat().st_mode) == 0o700

        shutil.rmtree(own)
        own.mkdir(mode=0o777)  # made first by root, open to all
        own.chmod(0o777)
        proc = launch_gpu_step(shared / "tmp", user=NOBODY, python=python, pythonpath=shared / "pkg")
        assert proc.returncode == 2 and "owned by uid 0, not by you" in proc.stderr, proc.stderr
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_torch_compile_caches_go_to_a_private_folder(tmp_path, monkeypatch):
    from vispipe.private import point_compiler_caches

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    point_compiler_caches()
    folder = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    assert folder == tmp_path / "cache" / "vispipe" / "torchinductor"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.geteuid()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/chosen")
    point_compiler_caches()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/chosen"  # the user's choice stands


# ------------------------------------------------------------------------------ bounded work per input

W, H = 320, 240  # the static clip below: room for 300 objects of 12x12 pixels


def cfg_args(override: dict | None = None) -> list[str]:
    args = [a for c in DEMO_CONFIGS for a in ("--config", str(c))]
    return args + ["--config", json.dumps(override)] if override else args


def refused(proc, *fragments):
    """A user error: exit 2, no traceback, each fragment in the message."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def squares(n: int) -> np.ndarray:
    """``n`` objects of 12x12 pixels on a grid, ids 1..n, as one uint16 id image (W x H)."""
    ids = np.zeros((H, W), np.uint16)
    for i in range(n):
        y, x = divmod(i, W // 16)
        ids[4 + 16 * y : 16 + 16 * y, 4 + 16 * x : 16 + 16 * x] = i + 1
    return ids


@pytest.fixture(scope="module")
def static_clip(tmp_path_factory):
    """A still textured scene as a 4-frame H.264 clip (W x H) and its kept frames: the flow moves
    nothing, so an object's mask stays where the first frame put it."""
    from vispipe.segment.files.frames import write_h264

    d = tmp_path_factory.mktemp("static")
    rng = np.random.default_rng(1)
    scene = cv2.resize(rng.integers(0, 255, (H // 8, W // 8, 3), np.uint8), (W, H), interpolation=cv2.INTER_CUBIC)
    write_h264(d / "clip.mp4", [scene] * 4, Fraction(10), crf=12)
    every = cfg_args({"segment": {"frames": {"stride": 1}}})
    run_script("extract_frames", *every, "--video", d / "clip.mp4", "--frames", d / "frames", "--meta", d / "meta.json")
    return d


def test_a_prompt_file_of_a_million_points_is_refused_at_once(static_clip, tiny_models, tmp_path):
    d = static_clip
    prompt = tmp_path / "points.json"
    prompt.write_text(json.dumps({"instances": [{"points": [[5, 5]] * 1_000_000, "labels": [1] * 1_000_000}]}))
    args = ["--frames", d / "frames", "--meta", d / "meta.json", "--target", "rabbit", "--out-dir", tmp_path / "out",
            "--sam2", tiny_models["sam2"], "--clipseg", tiny_models["clipseg"]]  # fmt: skip
    refused(run_script("segment_first", *cfg_args(), *args, "--prompt", prompt, check=False),
            str(prompt), "1,000,000 points", "segment.limits.max_prompt_points (10,000)")  # fmt: skip
    assert not (tmp_path / "out").exists()
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"instances": [{"box": [0, 0, 8, 8]}] * 12}))
    refused(run_script("segment_first", *cfg_args({"segment": {"limits": {"max_prompt_instances": 10}}}), *args,
                       "--prompt", boxes, check=False), "12 instances", "segment.limits.max_prompt_instances (10)")  # fmt: skip


def test_300_objects_go_through_every_step_as_16_bit_ids(static_clip, tiny_models, tmp_path):
    """Ids above 255: a mask prompt with 300 objects -> propagate (16-bit id PNGs) -> overlay, every
    export and the evaluation against 16-bit ground truth. It used to stop at uint8 (OverflowError)."""
    from vispipe.segment.files.masks import read_id_mask

    d, ids = static_clip, squares(300)
    cv2.imwrite(str(tmp_path / "prompt.png"), ids)  # a 16-bit grey PNG
    (tmp_path / "gt").mkdir()
    for k in range(4):
        cv2.imwrite(str(tmp_path / "gt" / f"{k:05d}.png"), ids)
    frames = ["--frames", d / "frames", "--meta", d / "meta.json"]
    t = tmp_path / "t"
    flow_only = cfg_args({"segment": {"propagate": {"refine": False}}})
    run_script("segment_first", *flow_only, *frames, "--target", "rabbit", "--out-dir", t, "--prompt",
               tmp_path / "prompt.png", "--sam2", tiny_models["sam2"], "--clipseg", tiny_models["clipseg"])  # fmt: skip
    assert len(json.loads((t / "instances.json").read_text())["instances"]) == 300
    run_script("propagate", *flow_only, *frames, "--instances", t / "instances.json", "--masks", t / "masks",
               "--tracks", t / "tracks.json", "--rle", t / "masks.rle.json", "--sam2", tiny_models["sam2"])  # fmt: skip
    got = read_id_mask(t / "masks/00003.png")
    assert got.dtype == np.uint16 and set(np.unique(got)) == set(range(301))
    assert (got == ids).mean() > 0.99
    track_args = ["--masks", t / "masks", "--tracks", t / "tracks.json"]
    run_script("render_overlay", *cfg_args(), *frames, *track_args, "--out", t / "overlay.mp4", "--first",
               t / "first/overlay.png")  # fmt: skip
    export = cfg_args({"segment": {"export": {"formats": ["yolo", "cvat", "label_studio"]}}})
    run_script("export_annotations", *export, *frames, *track_args, "--out-dir", t / "export")
    assert len((t / "export/yolo/labels/00000.txt").read_text().splitlines()) == 300
    assert 'id="299"' in (t / "export/cvat.xml").read_text()
    run_script("evaluate_segmentation", "--masks", t / "masks", "--meta", d / "meta.json", "--ground-truth",
               tmp_path / "gt", "--out-dir", t / "eval", "--no-match")  # fmt: skip
    scores = list(csv.DictReader(io.StringIO((t / "eval/jf.csv").read_text())))
    assert len({r["object"] for r in scores}) == 300
    assert np.mean([float(r["J"]) for r in scores]) > 0.95


def test_id_pngs_are_8_bit_up_to_255_and_16_bit_beyond(tmp_path):
    from vispipe.segment.files.masks import id_mask, read_id_mask, write_image

    small = id_mask({255: np.ones((4, 4), bool)}, (4, 4))
    large = id_mask({256: np.ones((4, 4), bool), 1: np.eye(4, dtype=bool)}, (4, 4))
    assert small.dtype == np.uint8 and large.dtype == np.uint16 and large[0, 0] == 1 and large[0, 1] == 256
    for name, ids in (("a.png", small), ("b.png", large)):
        write_image(tmp_path / name, ids, rgb=False)
        back = read_id_mask(tmp_path / name)
        assert back.dtype == ids.dtype and (back == ids).all()
        with Image.open(tmp_path / name) as im:  # what other tools see: 8-bit grey, or 16-bit grey
            assert im.mode == ("L" if ids.dtype == np.uint8 else "I;16")


def test_frames_over_max_pixels_are_refused_before_decoding_or_scaled_down_when_asked(static_clip, tmp_path):
    """The 320x240 clip (76,800 pixels) against max_pixels 40,000: refused, naming the file, its size
    and the key; with downscale, every kept frame at 230x173 and meta saying so. The same for a
    frame folder (re-encoded only when scaled) and a still image."""
    d = static_clip
    small = {"max_pixels": 40_000, "downscale": False}
    out = ["--frames", tmp_path / "frames", "--meta", tmp_path / "meta.json"]
    proc = run_script("extract_frames", *cfg_args({"segment": {"limits": small}}), "--video", d / "clip.mp4", *out,
                      check=False)  # fmt: skip
    refused(proc, f"video {d / 'clip.mp4'} is 320x240 = 76,800 pixels", "segment.limits.max_pixels (40,000)",
            "segment.limits.downscale: true")  # fmt: skip
    assert not (tmp_path / "frames").exists() and not (tmp_path / "meta.json").exists()

    scaled = cfg_args({"segment": {"frames": {"stride": 1}, "limits": {**small, "downscale": True}}})
    run_script("extract_frames", *scaled, "--video", d / "clip.mp4", *out)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert (meta["source"]["width"], meta["source"]["height"], meta["source"]["downscaled_from"]) == (
        230,
        173,
        [320, 240],
    )
    assert all(cv2.imread(str(tmp_path / "frames" / f)).shape == (173, 230, 3) for f in meta["files"])

    folder = ["--video", d / "frames", "--fps", "10", "--frames", tmp_path / "f2", "--meta", tmp_path / "m2.json"]
    refused(run_script("extract_frames", *cfg_args({"segment": {"limits": small}}), *folder, check=False),
            f"the frames of {d / 'frames'} is 320x240")  # fmt: skip
    run_script("extract_frames", *scaled, *folder)
    assert cv2.imread(str(tmp_path / "f2/00000.jpg")).shape == (173, 230, 3)


def test_a_still_image_over_max_pixels_is_refused_or_scaled(static_clip, tiny_models, tmp_path):
    image = static_clip / "frames/00000.jpg"
    args = ["--image", image, "--target", "rabbit", "--clipseg", tiny_models["clipseg"], "--sam2", tiny_models["sam2"]]
    small = {"max_pixels": 40_000, "downscale": False}
    proc = run_script("segment_image", *cfg_args({"segment": {"limits": small}}), *args, "--out-dir", tmp_path / "a",
                      check=False)  # fmt: skip
    refused(proc, f"image {image} is 320x240 = 76,800 pixels", "segment.limits.max_pixels")
    assert not (tmp_path / "a").exists()
    run_script("segment_image", *cfg_args({"segment": {"limits": {**small, "downscale": True}}}), *args, "--out-dir",
               tmp_path / "b")  # fmt: skip
    assert cv2.imread(str(tmp_path / "b/overlay.png")).shape == (173, 230, 3)
    assert json.loads((tmp_path / "b/instances.json").read_text())["downscaled_from"] == [320, 240]


def test_frames_too_small_for_the_models_are_refused(tmp_path):
    from vispipe.segment.files.frames import write_h264

    write_h264(tmp_path / "tiny.mp4", [np.zeros((8, 8, 3), np.uint8)] * 2, Fraction(10))
    proc = run_script("extract_frames", *cfg_args(), "--video", tmp_path / "tiny.mp4", "--frames", tmp_path / "f",
                      "--meta", tmp_path / "m.json", check=False)  # fmt: skip
    refused(proc, "is 8x8", "under 16 pixels on a side are too small for the models")


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header says ``width`` x ``height`` (8-bit grey) and that holds no pixel data: what
    a reader sees first of a decompression bomb, without making one."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_a_60000_pixel_mask_png_is_an_error_not_a_traceback(static_clip, tiny_models, tmp_path):
    d = static_clip
    png_header_only(tmp_path / "huge.png", 60000, 60000)
    args = ["--frames", d / "frames", "--meta", d / "meta.json", "--target", "rabbit", "--out-dir", tmp_path / "out",
            "--sam2", tiny_models["sam2"], "--clipseg", tiny_models["clipseg"]]  # fmt: skip
    refused(run_script("segment_first", *cfg_args(), *args, "--prompt", tmp_path / "huge.png", check=False),
            f"mask prompt {tmp_path / 'huge.png'} is too large to read")  # fmt: skip
    (tmp_path / "gt").mkdir()
    png_header_only(tmp_path / "gt/00000.png", 60000, 60000)
    proc = run_script("evaluate_segmentation", "--masks", tmp_path, "--meta", d / "meta.json", "--ground-truth",
                      tmp_path / "gt", "--out-dir", tmp_path / "eval", check=False)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


def test_an_archive_member_over_max_file_mb_is_refused_before_it_is_read(tmp_path):
    """A 6 MB tar.gz holding one 'image' of 70 MB of zeros: refused from the archive's listing."""
    from vispipe.classify.data import DataError, prepare

    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("train/cat/0000.jpg")
        info.size = 70 * 2**20
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    cfg = {"source": "folder", "name": "bomb", "path": str(archive), "limit_train": None, "limit_test": None,
           "max_file_mb": 64}  # fmt: skip
    with pytest.raises(
        DataError, match=r"bomb.tar.gz:train/cat/0000.jpg is 70.0 MB, more than classify.data.max_file_mb \(64 MB\)"
    ):
        prepare(cfg, seed=0)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("segment.frames.max_seconds", float("nan"), "segment.frames.max_seconds: nan is not allowed"),
        ("segment.frames.max_seconds", float("inf"), "segment.frames.max_seconds: inf is not allowed"),
        ("segment.videos.bigbuckbunny.fps", float("inf"), "segment.videos.bigbuckbunny.fps: inf is not allowed"),
        (
            "gpu_slots_per_device",
            10**20,
            "gpu_slots_per_device: 100000000000000000000 is greater than the maximum of 64",
        ),
        ("classify.data.name", "..", "classify.data.name: '..' is not allowed: Folder under data/"),
        ("classify.data.name", ".", "classify.data.name: '.' is not allowed"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(key, value, message):
    from vispipe.config import ConfigError, load, validate

    cfg = load(DEMO_CONFIGS)
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[last] = value
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value)


def test_the_umask_is_read_without_changing_it(tmp_path, monkeypatch):
    """Setting the umask to read it left a window in which another thread's new file got mode 0666."""
    from vispipe.io import umask, write_text

    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda *_: pytest.fail("os.umask was called"))
        assert umask() == 0o027
        write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    finally:
        monkeypatch.undo()
        os.umask(old)
