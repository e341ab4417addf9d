"""The deployment files agree with each other: conda env pins, container key, Docker context."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
import tomllib
import yaml

from conftest import ROOT, copy_workflow, env_with_venv

# Dependencies the pipeline's steps never import (tools for developers, and Snakemake's Slurm
# plugin, which runs outside the steps' environment; Snakemake itself is in it: a shard job runs
# its videos' steps with it).
NOT_IN_STEP_ENV = {
    "pytest",
    "pytest-timeout",
    "pytest-xdist",
    "execnet",  # pytest-xdist's
    "ruff",
    "snakefmt",
    "scikit-image",  # the reference J&F scorer's, for the tests
    "vos-benchmark",
    "supervision",  # the YOLO importer the export tests read with
    "defusedxml",  # supervision's, and the CVAT test's XML parser
    "pyDeprecate",  # supervision's
    "snakemake-executor-plugin-slurm",
    "motmetrics",  # the reference the identity scorer's counts are checked against
    "ultralytics",  # its dataset loader reads the YOLO export back (installed without its dependencies)
    "label-studio-sdk",  # Label Studio's validator checks the Label Studio export (installed without its dependencies)
    "jsf",  # label-studio-sdk's validator imports these four
    "lxml",
    "xmljson",
    "appdirs",
    "snakedeploy",  # deploys the workflow into a project folder (README), before any step runs
    "moto",  # the S3 server tests/test_storage.py runs
    "Flask",  # moto's server's
    "flask-cors",  # moto's server's
}
# Installed without dependencies (each asks for opencv-python, a second cv2 beside ours): where the
# step environment needs one, envs/vispipe.post-deploy.sh installs it at the pinned version.
NO_DEPS = {"trackeval"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)==([^\s#]+)\s*(#.*)?", line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def test_conda_env_pins_match_constraints():
    constraints = _pins((ROOT / "constraints.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "envs" / "vispipe.yaml").read_text())
    pip_block = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_pins = _pins(pip_block)
    assert len(env_pins) == len(pip_block), "every pip line in envs/vispipe.yaml is name==version"
    expected = {k: v for k, v in constraints.items() if k not in {_norm(n) for n in NOT_IN_STEP_ENV | NO_DEPS}}
    assert env_pins == expected
    # and every runtime dependency of the package is there
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {_norm(re.match(r"[A-Za-z0-9_.-]+", d).group(0)) for d in deps}
    assert names - {_norm(n) for n in NOT_IN_STEP_ENV} <= env_pins.keys()
    # no path relative to the env file: Snakemake copies it into .snakemake/conda/ before use
    assert not any(str(p).startswith(("-e", "-c", "-r", ".")) for p in pip_block)


def test_conda_post_deploy_script_is_valid_bash():
    script = ROOT / "envs" / "vispipe.post-deploy.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "--no-deps" in script.read_text()
    constraints = _pins((ROOT / "constraints.txt").read_text().splitlines())
    for name in NO_DEPS:  # installed there at the pinned version, and by the Makefile and the Dockerfile
        assert f"pip install --no-deps {name}=={constraints[name]}" in script.read_text()
        assert all(
            "--no-deps -c " in (ROOT / f).read_text() and name in (ROOT / f).read_text()
            for f in ("Makefile", "Dockerfile")
        )


def test_conda_post_deploy_installs_the_workflows_own_package(tmp_path):
    """The package comes from the folder whose scripts the steps run (VISPIPE_SCRIPTS' parent: a
    checkout, or a deployed commit's copy in the working directory's .snakemake/), not from the
    working directory, which a deployed project or `--directory` leaves without one."""
    workflow, workdir, bin_ = tmp_path / "workflow", tmp_path / "project", tmp_path / "bin"
    for folder in (workflow / "scripts", workdir, bin_):
        folder.mkdir(parents=True)
    (workflow / "pyproject.toml").write_text('[project]\nname = "vispipe"\n')
    calls = tmp_path / "calls"
    (bin_ / "python").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')  # records each install
    (bin_ / "python").chmod(0o755)
    env = {k: v for k, v in env_with_venv().items() if k != "VISPIPE_SCRIPTS"} | {"PATH": f"{bin_}:/usr/bin:/bin"}
    script = str(ROOT / "envs" / "vispipe.post-deploy.sh")
    run = subprocess.run(["bash", script], cwd=workdir, env={**env, "VISPIPE_SCRIPTS": str(workflow / "scripts")})
    assert run.returncode == 0
    assert calls.read_text().splitlines()[0] == f"-m pip install --no-deps --no-build-isolation --editable {workflow}"
    alone = subprocess.run(["bash", script], cwd=workdir, env=env, capture_output=True, text=True)
    assert alone.returncode == 1 and "no vispipe pyproject.toml" in alone.stderr  # by hand, elsewhere


def test_container_key_is_a_documented_image():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert config["container"].startswith("docker://")
    schema = yaml.safe_load((ROOT / "src" / "vispipe" / "config.schema.yaml").read_text())
    assert "apptainer" in schema["properties"]["container"]["description"]
    assert re.search(r'^container: config\["container"\]$', (ROOT / "Snakefile").read_text(), flags=re.M)


def test_dockerignore_keeps_data_and_outputs_out():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "data", "results", "logs", "benchmarks", "resources/models"} <= ignored
    assert "wheelhouse" not in ignored  # offline builds read it


def test_dockerfile_shape():
    text = (ROOT / "Dockerfile").read_text()
    assert re.match(r"(#.*\n|\s*\n)*ARG BASE_IMAGE=\S+", text), "the base image is a build argument"
    assert re.search(r"^USER (?!0\b|root\b)\S+", text, flags=re.M), "runs as a non-root user"
    assert 'ENTRYPOINT ["snakemake"]' in text
    assert "constraints.txt" in text


@pytest.mark.skipif(
    shutil.which("hadolint") is None and not (ROOT / ".venv/bin/hadolint").exists(),
    reason="hadolint not installed (make lint installs it)",
)
def test_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(
    shutil.which("apptainer") is None and shutil.which("singularity") is None,
    reason="Apptainer/Singularity is not installed here (not in Debian stable)",
)
def test_apptainer_dry_run_names_the_image(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    cmd = [sys.executable, "-m", "snakemake", "-n", "--sdm", "apptainer", "--configfile", "config/demo.yaml"]
    proc = subprocess.run(cmd, cwd=wf, env=env_with_venv(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    image = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["container"]
    assert image in proc.stdout + proc.stderr
