"""Shared fixtures: the repository's paths, a copy of the workflow in a temp dir, runners."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vispipe.layout import WORKFLOW_FILES

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CIFAR_JPEG = SHARED_DATA / "cifar10-jpeg.tar.gz"


# values that differ between two identical runs: timings, and the record of the run (provenance)
TIMING = re.compile(r"time|per_s|mfu|seconds|provenance", re.I)


def drop_timing(obj):
    """``obj`` (parsed JSON or CSV rows) without the values that differ between identical runs."""
    if isinstance(obj, dict):
        return {k: drop_timing(v) for k, v in obj.items() if not TIMING.search(k)}
    if isinstance(obj, list):
        return [drop_timing(v) for v in obj]
    return obj


def env_with_venv() -> dict:
    """The environment with this interpreter's bin dir first, so rules' ``python`` is ours."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["HF_HUB_OFFLINE"] = "1"
    return env


def run_script(name: str, *args: str, cwd: Path | None = None, check: bool = True, timeout: int = 600):
    """Run ``scripts/<name>.py`` as a subprocess; return the CompletedProcess."""
    cmd = [sys.executable, str(ROOT / "scripts" / f"{name}.py"), *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd or ROOT, env=env_with_venv(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 1200):
    """Run Snakemake in ``workdir``; return the CompletedProcess."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *(["--max-threads", "1"] if one_thread() else []), *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env_with_venv(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def copy_workflow(dest: Path) -> Path:
    """Copy what Snakemake needs (rules, scripts, config, shipped resources) into ``dest``."""
    for rel in WORKFLOW_FILES:
        src = ROOT / rel
        if not src.exists():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, symlinks=True)
        else:
            shutil.copy2(src, target)
    # the schema link points into the package; keep it valid in the copy
    schema = dest / "config" / "config.schema.yaml"
    if schema.is_symlink():
        schema.unlink()
        shutil.copy2(ROOT / "src" / "vispipe" / "config.schema.yaml", schema)
    return dest


@pytest.fixture
def workflow_dir(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path / "wf")


def job_counts(dry_run_output: str) -> dict[str, int]:
    """{rule: jobs} from the 'Job stats' table that ``snakemake -n`` prints.

    {} also means "no table found": to check that nothing would run, use :func:`assert_nothing_to_do`.
    """
    counts: dict[str, int] = {}
    lines = dry_run_output.splitlines()
    if "Job stats:" not in lines:
        return counts
    for line in lines[lines.index("Job stats:") + 3 :]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def param_triggered(dry_run_output: str) -> dict[str, int]:
    """{rule: jobs} of the jobs ``snakemake -n`` plans because their params (config blocks, code hash)
    changed: what an edit triggers itself, not the jobs downstream that rerun on their new inputs."""
    counts: dict[str, int] = {}
    rule = None
    for line in dry_run_output.splitlines():
        header = re.fullmatch(r"(?:local)?rule (\w+):", line.strip())
        if header:
            rule = header[1]
        elif rule and line.strip().startswith("reason:"):
            if "Params have changed" in line:
                counts[rule] = counts.get(rule, 0) + 1
            rule = None
    return counts


def library_copy(workdir: Path) -> tuple[Path, dict]:
    """A copy of the library in ``workdir/src`` that a test may edit, and the environment that
    imports it (PYTHONPATH) in the steps' and Snakemake's processes."""
    src = workdir / "src"
    if not src.exists():
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return src, {**env_with_venv(), "PYTHONPATH": str(src)}


def assert_nothing_to_do(result: subprocess.CompletedProcess | str) -> None:
    """Snakemake (``-n``) said every requested file is up to date and listed no job.

    ``job_counts(out) == {}`` cannot tell that from output it failed to parse; this can.
    """
    out = result if isinstance(result, str) else (result.stdout or "") + (result.stderr or "")
    if not isinstance(result, str):
        assert result.returncode == 0, out[-5000:]
    assert "Nothing to be done" in out, f"Snakemake did not say 'Nothing to be done':\n{out[-5000:]}"
    assert "Job stats:" not in out and job_counts(out) == {}, out[-5000:]


def assert_overlay_shows_masks(video: Path, frames_dir: Path, masks_dir: Path, meta: dict, style: dict) -> None:
    """``overlay.mp4`` holds the kept frames with each instance's mask blended in, at the output fps.

    Compared with each source frame (``meta`` is extract_frames' meta.json, ``style`` the
    segment.overlay block): pixels inside an instance's mask (``masks_dir/NNNNN.png``) differ
    noticeably and sit near ``(1 - alpha) * frame + alpha * colour``; pixels a few pixels away from
    every mask (the demo's random-weight masks leave little background), the labels and the
    RANDOM WEIGHTS strip match the frame up to H.264 noise; frame times step by 1 / output fps.
    """
    from fractions import Fraction

    import av
    import cv2
    import numpy as np

    from vispipe.segment.overlay import color_of

    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        decoded = [(Fraction(f.pts) * f.time_base, f.to_ndarray(format="rgb24")) for f in c.decode(stream)]
    assert len(decoded) == meta["count"], (len(decoded), meta["count"])
    times = [t for t, _ in decoded]
    step = 1 / Fraction(meta["output_fps"])
    assert [b - a for a, b in zip(times, times[1:])] == [step] * (len(times) - 1), [float(t) for t in times]

    height, width = meta["source"]["height"], meta["source"]["width"]
    body = np.ones((height, width), bool)
    body[-max(64, height // 8) :] = False  # the RANDOM WEIGHTS strip along the bottom
    ring, core = np.ones((13, 13), np.uint8), np.ones((9, 9), np.uint8)  # outline and codec bleed at the edges
    far_checked = inner_checked = noticeable = 0
    for k, (_, got) in enumerate(decoded):
        src = cv2.cvtColor(cv2.imread(str(frames_dir / meta["files"][k])), cv2.COLOR_BGR2RGB).astype(np.float32)
        ids = cv2.imread(str(masks_dir / f"{k:05d}.png"), cv2.IMREAD_UNCHANGED)
        got = got[:height, :width].astype(np.float32)
        assert got.shape == src.shape and ids.shape == (height, width)
        region = body.copy()
        for i in np.unique(ids)[1:]:
            x, y, _, _ = cv2.boundingRect((ids == i).astype(np.uint8))
            region[max(y - 64, 0) : y + 48, max(x - 320, 0) : x + 512] = False  # its label box, above the mask
        far = region & (cv2.dilate((ids > 0).astype(np.uint8), ring) == 0)
        if far.sum() >= 500:
            noise = np.abs(got[far] - src[far]).mean()
            assert noise < 5, f"frame {k}: pixels away from every mask changed by {noise:.1f} on average"
            far_checked += 1
        for i in np.unique(ids)[1:]:
            # the outline runs along the image's edges too: erode from there as well
            own = cv2.erode((ids == i).astype(np.uint8), core, borderType=cv2.BORDER_CONSTANT, borderValue=0)
            inner = region & (own > 0)
            if inner.sum() < 500:  # too few pixels to average out the codec's noise
                continue
            blend = (1 - style["alpha"]) * src[inner] + style["alpha"] * np.array(color_of(int(i), style["colors"]))
            expected = np.abs(blend - src[inner]).mean()
            moved, off = np.abs(got[inner] - src[inner]).mean(), np.abs(got[inner] - blend).mean()
            assert off < 8 and moved > 0.6 * expected, (
                f"frame {k}, instance {i}: differs from the frame by {moved:.1f} (the blend would: {expected:.1f}), "
                f"from the blend by {off:.1f}"
            )
            inner_checked += 1
            noticeable += moved > 10
    assert far_checked and inner_checked, f"compared {far_checked} backgrounds and {inner_checked} instances"
    assert noticeable, "no instance's pixels differ noticeably from the frame"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The whole demo pipeline, run once by Snakemake in a temp copy of the workflow."""
    wf = copy_workflow(tmp_path_factory.mktemp("demo") / "wf")
    snakemake(wf, "--configfile", "config/demo.yaml", timeout=3000)
    return wf


DEMO_VIDEO = ROOT / "resources" / "demo" / "bigbuckbunny.mp4"
DEMO_CONFIGS = [ROOT / "config" / "config.yaml", ROOT / "config" / "demo.yaml"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """The demo's tiny random CLIPSeg and SAM2, built once per session: {"clipseg": dir, "sam2": dir}."""
    from vispipe.config import load
    from vispipe.segment.models import fetch

    root = tmp_path_factory.mktemp("models")
    dirs = {"clipseg": root / "clipseg", "sam2": root / "sam2"}
    fetch(load(DEMO_CONFIGS)["segment"]["models"], dirs)
    return dirs


def apt_install(*packages: str) -> str:
    """Install Debian packages with apt-get (root only); return '' on success, else why not."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "installing them needs root and apt-get"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:  # stale package lists: refresh once and retry
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    return "" if proc.returncode == 0 else f"apt-get install {' '.join(packages)} failed: {proc.stderr[-500:]}"


def stop_process(proc: subprocess.Popen, grace: float = 30) -> None:
    """Stop a daemon this test started, by its PID: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


# Two workers (pytest-xdist, ``-n 2`` in pyproject.toml), each taking whole groups of tests: the
# modules that use the demo run share one group (one worker, so the demo runs once, and its checks,
# which build on one another, run in order); every other module is a group of its own (its
# module-scoped fixtures, a trained teacher or the kill suite's references, are built once). The
# longest groups start first (measured), so that neither worker waits alone for one at the end.
DEMO_MODULES = {"test_pipeline_classify", "test_segment_pipeline", "test_report"}
LONGEST_FIRST = ["demo", "test_slurm", "test_kills", "test_concurrency", "test_classify_scripts", "test_real_cifar10",
                 "test_recovery", "test_segment_scripts", "test_tracking", "test_gpu_check"]  # fmt: skip


def group_of(nodeid: str) -> str:
    module = Path(nodeid.split("::")[0]).stem
    return "demo" if module in DEMO_MODULES else module


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(rank)))  # stable: each group keeps its order


_NICED = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A worker leaves the CPU to the demo's group while that runs: the demo and its checks are the
    longest chain of the suite, and two workers' steps on two cores would halve its speed. So a
    worker running any other group lowers its own priority (and its steps', which inherit it) once;
    it still takes every cycle the demo leaves idle. (Raising one's niceness needs no privilege.)
    It also runs one thread per process: two workers' two-thread PyTorch steps on two cores spin
    against each other (OpenMP waits actively), which slowed the demo's epochs fourfold, not twofold."""
    if os.environ.get("PYTEST_XDIST_WORKER") and group_of(item.nodeid) != "demo" and not _NICED:
        os.nice(10)
        os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # the steps it starts inherit these
        if "torch" in sys.modules:  # and the tests that run models in the worker itself
            sys.modules["torch"].set_num_threads(1)
        _NICED.append(True)


def one_thread() -> bool:
    """Whether this worker's steps run one thread each (see :func:`pytest_runtest_setup`)."""
    return bool(_NICED)


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scope scheduling with :func:`group_of` as the scope, in collection order."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    config.option.loadscopereorder = False  # keep LONGEST_FIRST, not xdist's order by test count
    return ByGroup(config, log)
