# CIFAR-10 -> ResNet teacher -> ViT student (knowledge distillation) -> evaluation -> comparison.
# File names come from vispipe.classify.layout, by which the steps write them; outputs named from a
# file name take vispipe.layout.output_key's key (metrics.json -> metrics_json). The keys the shell
# commands use stay as they are: Snakemake reruns a job whose command text changed.

from vispipe.classify.layout import (
    BEST,
    CLS,
    COMPARISON_CSV,
    COMPARISON_MD,
    EVAL,
    EVAL_BLOCKS,
    EVAL_OUTPUTS,
    EVALUATED,
    LAST,
    METRICS,
    ROLES,
    SPLITS,
    TRAIN_OUTPUTS,
    final_outputs,
    train_blocks,
)
from vispipe.layout import outputs

TRAIN_NPZ, TEST_NPZ = f"{DATA}/{SPLITS['train']}", f"{DATA}/{SPLITS['test']}"
CHECKPOINT = {role: f"{CLS}/{role}/{name}" for role, name in EVALUATED.items()}
CLASSIFY_TARGETS = final_outputs()


wildcard_constraints:
    model="|".join(ROLES),


localrules:
    fetch_cifar10,


rule fetch_cifar10:
    """Download (or read) the images once; every source becomes the same uint8 arrays."""
    output:
        train=TRAIN_NPZ,
        test=TEST_NPZ,
    log:
        "logs/classify/fetch_cifar10.log",
    conda:
        "../envs/vispipe.yaml"
    params:
        cfg=params_json("classify.data", "classify.seed"),
    shell:
        "python scripts/fetch_cifar10.py --config {params.cfg:q}"
        " --out-dir $(dirname {output.train}) --log {log}"


rule train_teacher:
    input:
        train=TRAIN_NPZ,
        test=TEST_NPZ,
    output:
        **outputs(f"{CLS}/teacher", TRAIN_OUTPUTS),
        model=CHECKPOINT["teacher"],
    log:
        "logs/classify/train_teacher.log",
    benchmark:
        "benchmarks/classify/train_teacher.tsv"
    conda:
        "../envs/vispipe.yaml"
    threads: 8
    params:
        code=code("train_teacher.py"),
        cfg=params_json(*train_blocks("teacher")),
    shell:
        "python scripts/train_teacher.py --config {params.cfg:q} --data $(dirname {input.train})"
        " --out-dir $(dirname {output.model}) --threads {threads} --log {log}"


rule train_student:
    input:
        train=TRAIN_NPZ,
        test=TEST_NPZ,
        teacher=CHECKPOINT["teacher"],
    output:
        **outputs(f"{CLS}/student", TRAIN_OUTPUTS),
        best=f"{CLS}/student/{BEST}",
        last=f"{CLS}/student/{LAST}",
    log:
        "logs/classify/train_student.log",
    benchmark:
        "benchmarks/classify/train_student.tsv"
    conda:
        "../envs/vispipe.yaml"
    threads: 8
    params:
        code=code("train_student.py"),
        cfg=params_json(*train_blocks("student")),
    shell:
        "python scripts/train_student.py --config {params.cfg:q} --data $(dirname {input.train})"
        " --teacher {input.teacher} --out-dir $(dirname {output.best}) --threads {threads} --log {log}"


rule evaluate:
    input:
        test=TEST_NPZ,
        checkpoint=lambda wc: CHECKPOINT[wc.model],
        train_metrics=f"{CLS}/{{model}}/{METRICS}",
    output:
        **outputs(f"{CLS}/{{model}}/{EVAL}", EVAL_OUTPUTS),
    log:
        "logs/classify/evaluate_{model}.log",
    benchmark:
        "benchmarks/classify/evaluate_{model}.tsv"
    conda:
        "../envs/vispipe.yaml"
    params:
        code=code("evaluate.py"),
        cfg=params_json(*EVAL_BLOCKS),
    shell:
        "python scripts/evaluate.py --config {params.cfg:q} --checkpoint {input.checkpoint}"
        " --test {input.test} --train-metrics {input.train_metrics}"
        " --out-dir $(dirname {output.metrics_json}) --log {log}"


rule compare_models:
    input:
        teacher=f"{CLS}/teacher/{EVAL}/{METRICS}",
        student=f"{CLS}/student/{EVAL}/{METRICS}",
    output:
        md=f"{CLS}/{COMPARISON_MD}",
        csv=f"{CLS}/{COMPARISON_CSV}",
    log:
        "logs/classify/compare_models.log",
    conda:
        "../envs/vispipe.yaml"
    params:
        code=code("compare_models.py"),
    shell:
        "python scripts/compare_models.py --teacher {input.teacher} --student {input.student}"
        " --md {output.md} --csv {output.csv} --log {log}"
