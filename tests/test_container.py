"""The Dockerfile builds an image that runs the pipeline: a real Docker engine, a real build.

Run with `make test-container` (it sets VISPIPE_TEST_CONTAINER=1); plain `pytest` skips it,
because the image holds CUDA PyTorch (about 7 GB) and the build takes minutes.

Without registry access the test makes everything locally: a Debian bookworm root file system
from debootstrap (Python 3.11), imported as the base image (`docker import`); the Python packages
from wheelhouse/ (`pip download` on this host, then `pip install --no-index` in the build, the
same offline path as `make wheelhouse` + `--build-arg PIP_NO_INDEX=1`). In the image it runs
the demo's dry run and a slice of the demo (the whole classification chain, one epoch each, and
the first frame of the demo video) as the image's non-root user, with results/ mounted from the host.

The Docker engine: an engine that already answers is used as it is; otherwise Debian's docker.io
is installed when missing (as root), dockerd is started in the background and stopped by its PID
at the end. The test skips, saying why, where no engine can be had.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, apt_install, job_counts, stop_process

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3600),  # the build happens in the first test's setup
    pytest.mark.skipif(
        os.environ.get("VISPIPE_TEST_CONTAINER") != "1",
        reason="builds a ~7 GB CUDA PyTorch image for minutes; run `make test-container`",
    ),
]

BASE = "vispipe-test-base:bookworm"
IMAGE = "vispipe:test"
MIRROR = os.environ.get("VISPIPE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
_SEG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["segment"]
VIDEO, TARGET_KEY = next((k, v["targets"][0]) for k, v in _SEG["videos"].items())
QUICK = {
    "classify": {
        "teacher": {"train": {"epochs": 1}},
        "student": {"train": {"epochs": 1, "clean_last_epochs": 0}},
    }
}


def _run(*cmd: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, DOCKER_BUILDKIT="0")  # the classic builder: no buildx plugin needed
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env, **kw)


def _engine_answers() -> bool:
    return shutil.which("docker") is not None and _run("docker", "info", timeout=60).returncode == 0


@pytest.fixture(scope="module")
def docker_engine():
    """A Docker engine to talk to: the one running, or dockerd started here (and stopped after)."""
    if _engine_answers():
        yield None
        return
    if not (shutil.which("dockerd") and shutil.which("docker")):
        why = apt_install("docker.io")
        if not (shutil.which("dockerd") and shutil.which("docker")):
            pytest.skip(f"no Docker engine and docker.io could not be installed: {why}")
    logdir = Path(tempfile.mkdtemp(prefix="vispipe-dockerd-"))
    with open(logdir / "dockerd.log", "wb") as log:
        proc = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not _engine_answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (logdir / "dockerd.log").read_text(errors="replace")[-2000:]
                pytest.skip(f"dockerd did not start here (exit {proc.poll()}):\n{tail}")
            time.sleep(1)
        yield proc
    finally:
        stop_process(proc, grace=60)
        shutil.rmtree(logdir, ignore_errors=True)


@pytest.fixture(scope="module")
def base_image(docker_engine) -> str:
    """Debian bookworm (Python 3.11) made with debootstrap and imported; kept for later runs."""
    if _run("docker", "image", "inspect", BASE).returncode == 0:
        return BASE
    if not shutil.which("debootstrap"):
        why = apt_install("debootstrap")
        if not shutil.which("debootstrap"):
            pytest.skip(f"debootstrap is missing and could not be installed: {why}")
    with tempfile.TemporaryDirectory(prefix="vispipe-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        cmd = ["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm", str(rootfs), MIRROR]
        proc = _run(*cmd, timeout=1200)
        if proc.returncode != 0:
            pytest.skip(f"debootstrap of Debian bookworm failed (mirror {MIRROR}):\n{proc.stderr[-1500:]}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        proc = subprocess.run(["docker", "import", "-", BASE], stdin=tar.stdout, capture_output=True, text=True)
        tar.wait()
        assert proc.returncode == 0, proc.stderr
    return BASE


@pytest.fixture(scope="module")
def image(base_image) -> str:
    """The project's Dockerfile built offline on the local base; removed at the end."""
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the wheelhouse is made with this Python; the bookworm base has 3.11")
    t0 = time.monotonic()
    wheels = ROOT / "wheelhouse"
    pip = [sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), "-c", "constraints.txt"]
    proc = _run(*pip, ".[slurm,tracking,s3]", "setuptools>=68", cwd=ROOT, timeout=1800)
    assert proc.returncode == 0, f"pip download failed:\n{proc.stderr[-3000:]}"
    t1 = time.monotonic()
    build = ["docker", "build", "--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", "PIP_NO_INDEX=1"]
    proc = _run(*build, "-t", IMAGE, str(ROOT), timeout=3600)
    assert proc.returncode == 0, f"docker build failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}"
    t2 = time.monotonic()
    _run("docker", "image", "prune", "-f", "--filter", "label=vispipe.stage=build")
    size = int(_run("docker", "image", "inspect", "-f", "{{.Size}}", IMAGE).stdout.strip())
    print(f"\nwheelhouse {t1 - t0:.0f} s, docker build {t2 - t1:.0f} s, image {size / 1e9:.2f} GB")
    yield IMAGE
    if os.environ.get("VISPIPE_KEEP_IMAGE") != "1":
        _run("docker", "image", "rm", "-f", IMAGE)


def test_image_user_and_entry_point(image):
    proc = _run("docker", "run", "--rm", "--entrypoint", "id", image, "-u")
    assert proc.returncode == 0 and proc.stdout.strip() == "1000", proc.stdout + proc.stderr
    proc = _run("docker", "run", "--rm", image, "--version")  # the entry point is snakemake
    assert proc.returncode == 0 and proc.stdout.strip().startswith("9."), proc.stdout + proc.stderr


def test_demo_dry_run_in_image(image):
    proc = _run("docker", "run", "--rm", image, "-n", "--configfile", "config/demo.yaml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    for rule in ("fetch_cifar10", "train_teacher", "train_student", "compare_models"):
        assert counts.get(rule, 0) >= 1, counts
    assert counts["evaluate"] == 3  # teacher, student and the demo's no-KD variant


def test_demo_slice_in_image(image, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o777)  # the image's user (uid 1000) writes here
    quick = tmp_path / "quick.yaml"
    quick.write_text(yaml.safe_dump(QUICK))
    cmd = [
        "docker",
        "run",
        "--rm",
        "-v",
        f"{results}:/app/results",
        "-v",
        f"{quick}:/app/config/quick.yaml:ro",
        image,
        "results/classify/comparison.md",
        f"results/segment/{VIDEO}/{TARGET_KEY}/instances.json",
        "--cores",
        "2",
        "--configfile",
        "config/demo.yaml",
        "config/quick.yaml",
    ]
    t0 = time.monotonic()
    proc = _run(*cmd, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    print(f"\nclassification + first-frame segmentation slice in the image: {time.monotonic() - t0:.0f} s")
    for rel in [
        "classify/comparison.md",
        "classify/comparison.csv",
        "classify/teacher/model.pt",
        "classify/student/best.pt",
        "classify/teacher/eval/confusion_counts.png",
        "classify/student/eval/metrics.json",
        f"segment/{VIDEO}/{TARGET_KEY}/instances.json",
        f"segment/{VIDEO}/{TARGET_KEY}/first/mask.png",
    ]:
        path = results / rel
        assert path.stat().st_size > 0, rel
        assert path.stat().st_uid == 1000, rel  # written by the non-root user
    assert "student" in (results / "classify" / "comparison.md").read_text()
