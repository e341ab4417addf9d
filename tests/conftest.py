"""Shared fixtures: the repository's paths, a copy of the workflow in a temp dir, runners."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CIFAR_JPEG = SHARED_DATA / "cifar10-jpeg.tar.gz"
WORKFLOW_FILES = ["Snakefile", "rules", "config", "scripts", "envs", "resources/demo", "constraints.txt"]


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
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
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
    """{rule: jobs} from the 'Job stats' table that ``snakemake -n`` prints."""
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
