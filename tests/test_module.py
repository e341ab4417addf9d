"""The workflow used the way Snakemake workflows are: as a module of another Snakefile, and with
`-s <checkout>/Snakefile --directory <elsewhere>`, from folders outside the checkout. Scripts, rules,
the default config and the demo's shipped video resolve from the workflow; results, logs,
benchmarks and downloads land in the working directory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, env_with_venv

# a slice of the demo: a short teacher, the first 1.2 s of the demo video
SLICE = {
    "classify": {"device": "cpu", "data": {"limit_train": 600}, "teacher": {"train": {"epochs": 2, "batch_size": 32}}},
    "segment": {"device": "cpu", "frames": {"max_seconds": 1.2, "stride": 2}},
}
TEACHER = "results/classify/teacher/model.pt"
OVERLAY = "results/segment/bigbuckbunny/rabbit/overlay.mp4"


def snakemake(cwd, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env_with_venv(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A folder outside the checkout whose Snakefile uses the workflow as a module, run on a slice."""
    host = tmp_path_factory.mktemp("host")
    (host / "slice.yaml").write_text(yaml.safe_dump(SLICE))
    (host / "Snakefile").write_text(
        f'configfile: "{ROOT / "config/demo.yaml"}"\n'  # the workflow's defaults go under it (the module's own)
        'configfile: "slice.yaml"\n\n\n'
        f'module vispipe:\n    snakefile:\n        "{ROOT / "Snakefile"}"\n    config:\n        config\n\n\n'
        "use rule * from vispipe as vispipe_*\n"
    )
    snakemake(host, "--", TEACHER, OVERLAY)
    return host


def test_the_workflow_runs_as_a_module_of_another_snakefile(host):
    assert (host / TEACHER).stat().st_size > 0 and (host / OVERLAY).stat().st_size > 0
    meta = json.loads((host / "results/segment/bigbuckbunny/meta.json").read_text())
    assert meta["video"] == str(ROOT / "resources/demo/bigbuckbunny.mp4")  # the shipped video, from the workflow
    assert (host / "logs/classify/train_teacher.log").is_file() and (host / "resources/models").is_dir()
    out = snakemake(host, "-n", "--", TEACHER, OVERLAY)
    assert "Nothing to be done" in out.stdout + out.stderr
    dag = snakemake(host, "--dag", "--", TEACHER, OVERLAY).stdout
    assert dag.startswith("digraph") and "vispipe_propagate" in dag
    snakemake(host, "--report", "report.html", "--", TEACHER, OVERLAY)
    assert (host / "report.html").stat().st_size > 10_000


def test_the_workflow_runs_from_another_working_directory(tmp_path):
    """`-s <checkout>/Snakefile --directory <elsewhere>`: the default config is the workflow's, the
    --configfile files are the user's, the outputs land in <elsewhere>."""
    (tmp_path / "slice.yaml").write_text(yaml.safe_dump(SLICE))
    run = tmp_path / "run1"
    run.mkdir()
    args = ["-s", str(ROOT / "Snakefile"), "--directory", str(run), "--configfile", str(ROOT / "config/demo.yaml"),
            str(tmp_path / "slice.yaml"), "--", "results/segment/bigbuckbunny/meta.json", "data/digits/train.npz"]  # fmt: skip
    snakemake(tmp_path, *args)
    assert json.loads((run / "results/segment/bigbuckbunny/meta.json").read_text())["count"] == 15
    assert (run / "data/digits/train.npz").is_file() and not (tmp_path / "results").exists()
