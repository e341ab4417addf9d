"""vispipe: CIFAR-10 ViT distillation and text-guided video segmentation.

    snakemake --cores all                                  # the full recipe (GPU)
    snakemake --cores all --configfile config/demo.yaml    # the offline demo (CPU, minutes)

Every key is documented in config/config.schema.yaml.
"""

from snakemake.exceptions import WorkflowError

from vispipe.config import ConfigError, validate


configfile: "config/config.yaml"


try:
    validate(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None


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
