"""vispipe: CIFAR-10 ViT distillation and text-guided video segmentation.

    snakemake --cores all                                  # the full recipe (GPU)
    snakemake --cores all --configfile config/demo.yaml    # the offline demo (CPU, minutes)

Every key is documented in config/config.schema.yaml.
"""

import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The workflow's own vispipe package (src/ beside this file) comes first, for Snakemake and for
# every step (PYTHONPATH), over any installed one: the code that runs is this commit's, in a checkout,
# in a commit Snakedeploy deployed (workflow/Snakefile) and in an environment without the package.
SRC = os.path.join(workflow.current_basedir, "src")
if os.path.isdir(os.path.join(SRC, "vispipe")):
    sys.path.insert(0, SRC)
    os.environ.update(
        PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))
    )

from vispipe.classify.variants import validate_variants
from vispipe.config import ConfigError, deep_merge, load, validate
from vispipe import warm
from vispipe.locks import record_owner, release_stale

# the workflow's own defaults, wherever the working directory is (a module, --directory elsewhere);
# --configfile files and --config entries override them
DEFAULTS = os.path.join(workflow.current_basedir, "config", "config.yaml")


configfile: DEFAULTS


# Used as a module, Snakemake skips the line above and passes the host's config: the defaults go
# under it here (a no-op otherwise: what the run gave wins).
config.update(deep_merge(load([DEFAULTS]), config))

try:
    validate(config)
    validate_variants(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None


# A run killed outright (SIGKILL, out of memory, a lost node) leaves its lock behind. Release it when
# the process that held it is provably gone, so that rerunning the same command is the whole
# recovery; a live run's lock, or one held from another host, is never touched (vispipe/locks.py).
for _lock in release_stale():
    print(
        f"released {_lock}: the Snakemake run that held it is no longer running",
        file=sys.stderr,
    )


# A local run starts its segmentation steps in one warm worker (config key warm_worker,
# vispipe/warm.py): only when it has two or more such steps to run (the worker imports about what
# one cold step does, so a training-only run or a lone step would only wait for it), not
# under an executor (Slurm jobs start elsewhere) nor under --sdm (the steps run in another
# environment there).
WARM = {}


onstart:
    record_owner(getattr(workflow.persistence, "_lockfile", {}).values())
    if (
        config.get("warm_worker", True)
        and workflow.is_main_process
        and workflow.executor_plugin.common_settings.local_exec
        and not workflow.deployment_settings.deployment_method
        and sum(
            "vispipe.warm" in (j.rule.shellcmd or "")
            for j in workflow.dag.needrun_jobs()
        )
        >= 2
    ):
        # a shard job's inner run (scripts/segment_shard.py) names its own log: shards run side by side
        WARM["worker"] = warm.start(
            workflow.snakemake_tmp_dir,
            Path(os.environ.get("VISPIPE_WARM_LOG", "logs/warm_worker.log")),
            MODEL_DIRS,
        )


onsuccess:
    warm.stop(WARM.pop("worker", None))


onerror:
    warm.stop(WARM.pop("worker", None))


# `snakemake --report report.html` (after a run): the pictures, tables and videos in one HTML file.
report: "report/workflow.rst"


# With --software-deployment-method apptainer every step runs in this image (config key `container`).
container: config["container"]


include: "rules/common.smk"
include: "rules/classify.smk"
include: "rules/segment.smk"


rule all:
    default_target: True
    input:
        CLASSIFY_TARGETS,
        SEGMENT_TARGETS,
