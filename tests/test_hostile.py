"""Hostile and careless input: file names that are shell code, folders another user prepared, inputs
that would hold a node for hours, and values that used to end in a traceback (docs/faults.md,
"Hostile input"). Each case failed before the pipeline refused or handled it."""

from __future__ import annotations

import ast
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
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import ROOT, copy_workflow, run_script, snakemake

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
        tracks = json.loads((seg / video / "shape/tracks.json").read_text())
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
