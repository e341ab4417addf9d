"""vispipe: CIFAR-10 ViT distillation and text-guided video segmentation.

    snakemake --cores all                                  # the full recipe (GPU)
    snakemake --cores all --configfile config/demo.yaml    # the offline demo (CPU, minutes)

Every key is documented in config/config.schema.yaml.
"""

from snakemake.exceptions import WorkflowError

from vispipe.classify.variants import validate_variants
from vispipe.config import ConfigError, validate


configfile: "config/config.yaml"


try:
    validate(config)
    validate_variants(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None


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
