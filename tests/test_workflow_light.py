"""The workflow layer (Snakefile, rules/*.smk and what they import) never loads the ML stack.

A dry run, ``--lint`` or ``--dag`` on a cluster login node must not pay for importing PyTorch
and friends: only the scripts the rules run may import them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import env_with_venv, job_counts

HEAVY = ("torch", "torchvision", "transformers", "cv2")

# Runs Snakemake in-process behind an import hook that refuses the heavy modules, so any import
# of them (direct or transitive, caught or not) fails loudly; then reports what did get loaded.
DRIVER = """
import json, sys

HEAVY = set(json.loads(sys.argv[1]))
attempted = []


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HEAVY:
            attempted.append(name)
            raise ImportError(f"the workflow layer must not import {name}")
        return None


sys.meta_path.insert(0, Refuse())
from snakemake.cli import main

try:
    main(sys.argv[2:])
    code = 0
except SystemExit as exit:
    code = exit.code
loaded = sorted(m for m in HEAVY if m in sys.modules)
print("WORKFLOW-LIGHT " + json.dumps({"code": code, "attempted": attempted, "loaded": loaded}), flush=True)
"""


@pytest.mark.parametrize(
    "configfiles, seeds, students",  # students: the student + its variants, per seed
    [(["config/demo.yaml"], 1, 2), (["config/demo.yaml", "config/ablations.yaml"], 3, 7)],
)
def test_dry_run_imports_no_ml_stack(workflow_dir: Path, configfiles, seeds, students):
    args = ["-n", "--cores", "2", "--configfile", *configfiles]
    cmd = [sys.executable, "-c", DRIVER, json.dumps(HEAVY), *args]
    proc = subprocess.run(cmd, cwd=workflow_dir, env=env_with_venv(), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    reports = [line for line in proc.stdout.splitlines() if line.startswith("WORKFLOW-LIGHT ")]
    assert reports, f"the driver did not report (exit {proc.returncode}):\n{out[-5000:]}"
    report = json.loads(reports[-1].removeprefix("WORKFLOW-LIGHT "))
    assert report["attempted"] == [], f"the workflow layer imported {report['attempted']}:\n{out[-5000:]}"
    assert report["loaded"] == []
    assert report["code"] in (0, None), f"dry run failed ({report['code']}):\n{out[-5000:]}"
    counts = job_counts(out)
    assert counts.get("all") == 1 and counts.get("fetch_models") == 1 and counts.get("train_teacher") == seeds, out
    assert counts.get("train_student") == seeds * students and counts.get("evaluate") == seeds * (students + 1), out
    assert counts.get("ablation") == 1, out[-5000:]
