# Shared by the rule files: config lookups and paths. No rules here.

import json
import os
import sys
from functools import partial
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

from vispipe import remote
from vispipe.codedeps import script_hash
from vispipe.config import params_json as _params_json
from vispipe.layout import report_mark

# The config blocks a rule passes to its script, as compact JSON (its ``params``):
# Snakemake reruns a rule when, and only when, one of its blocks changes.
params_json = partial(_params_json, config)

# The workflow's own folder (this file's parent's): scripts, rules, resources and the default config
# resolve from it; results, logs, benchmarks and downloads land in the working directory.
WORKFLOW_DIR = Path(workflow.current_basedir).parent

# How the rules start their scripts, as environment variables the jobs inherit (the shell commands
# name them, so Snakemake's lint sees no outside variable, and they are no rerun trigger):
# - VISPIPE_PYTHON: the interpreter. Without a software-deployment method it is the Python that
#   runs Snakemake, so `.venv/bin/snakemake` works from any shell, venv activated or not; under
#   --sdm conda or apptainer it is the environment's own `python`, found on its PATH.
# - `-m vispipe.warm` (segmentation steps): run in this run's warm worker, already imported, when the
#   Snakefile started one (onstart), else exactly `python scripts/...` (vispipe/warm.py).
# - `-m vispipe.gpus` (GPU steps; `-m vispipe.warm --gpu` for the segmentation ones): each job its
#   own GPU on a multi-GPU machine, VISPIPE_GPU_SLOTS_PER_DEVICE (config key gpu_slots_per_device)
#   jobs per GPU; on a CPU machine or under Slurm it only runs the step (vispipe/gpus.py).
_ISOLATED = {DeploymentMethod.CONDA, DeploymentMethod.APPTAINER}
_ISOLATED_RUN = bool(_ISOLATED & set(workflow.deployment_settings.deployment_method))
# - VISPIPE_SCRIPTS: the workflow's scripts/ folder, wherever the run's working directory is (a
#   Snakemake module, `-s <checkout>/Snakefile --directory <elsewhere>`, a deployed workflow).
os.environ.update(
    VISPIPE_PYTHON="python" if _ISOLATED_RUN else sys.executable,
    VISPIPE_SCRIPTS=str(WORKFLOW_DIR / "scripts"),
    VISPIPE_GPU_SLOTS_PER_DEVICE=str(config["gpu_slots_per_device"]),
    # experiment tracking (config key tracking, vispipe/tracking.py): like the two above, how the
    # steps run, not what they compute, so no param, and switching it reruns nothing
    VISPIPE_TRACKING=json.dumps(config.get("tracking") or {}),
)

DATA = f"data/{config['classify']['data']['name']}"


# A hash of scripts/<name> and every vispipe module it imports, passed as a param: editing that
# code reruns the rule (and what depends on it); editing other code does not (vispipe/codedeps.py).
code = partial(script_hash, WORKFLOW_DIR / "scripts")


# `snakemake --report report.html`: the outputs marked with in_report(category, subcategory, caption,
# **labels) go into one HTML file, grouped by category and subcategory (wildcards allowed:
# "{model}"), each with its caption from report/<caption>.rst (vispipe.layout.report_mark).
in_report = partial(report_mark, report, caption_dir="../report")


# Files the config names (videos, frame folders, images, ground truth, prompt files, sample sheets) may
# be storage URLs, s3://bucket/key (vispipe/remote.py): source(path) is such a file as an input of a
# step, through Snakemake's storage plugin; fetch_sheet(url) downloads a sheet while the run is planned.
source = partial(remote.source, storage)
fetch_sheet = partial(remote.fetch, storage)
