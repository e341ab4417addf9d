# CIFAR-10 -> ResNet teacher -> ViT student (knowledge distillation) -> evaluation -> comparison,
# and, for each ablation variant in classify.variants, the same student rules under variants/NAME/
# (the {student} wildcard: "student" or "variants/NAME") -> the ablation table. With classify.seeds,
# every run again once per further seed under seedN/ ("seed1/teacher", "seed1/variants/NAME"); the
# comparison and the ablation table take every seed's evaluations (vispipe/classify/variants.py).
# File names come from vispipe.classify.layout, by which the steps write them; outputs named from a
# file name take vispipe.layout.output_key's key (metrics.json -> metrics_json). The keys the shell
# commands use stay as they are: Snakemake reruns a job whose command text changed.

import os

from vispipe.classify import variants
from vispipe.classify.layout import (
    ABLATION_CSV,
    ABLATION_MD,
    ABLATION_PNG,
    BEST,
    CLS,
    COMPARISON_CSV,
    CONFUSION_COUNTS,
    CONFUSION_NORMALIZED,
    CURVES,
    COMPARISON_MD,
    EVAL,
    EVAL_BLOCKS,
    EVAL_OUTPUTS,
    EVALUATED,
    LAST,
    METRICS,
    PER_CLASS_ACCURACY,
    PRED_GRID,
    ROLES,
    SPLITS,
    TRAIN_OUTPUTS,
    final_outputs,
    train_blocks,
)
from vispipe.layout import outputs

TRAIN_NPZ, TEST_NPZ = f"{DATA}/{SPLITS['train']}", f"{DATA}/{SPLITS['test']}"
VARIANTS = variants.names(config)
# "" with one seed, "(seed(1|2)/)?" with classify.seeds [0, 1, 2]
SEED_PREFIX = variants.seed_pattern(config)
KD_CONTROL = variants.kd_control(
    config
)  # the student without KD, when a variant is one
CLASSIFY_TARGETS = final_outputs(with_variants=bool(VARIANTS))
STUDENT_RUN = f"student|{variants.VARIANTS}/{variants.NAME_PATTERN}"
# what `snakemake --report` shows: each model's curves and evaluation pictures, the tables
CURVES_IN_REPORT = in_report("Classification", "training curves", "curves")
EVAL_PICTURES = [CONFUSION_COUNTS, CONFUSION_NORMALIZED, PER_CLASS_ACCURACY, PRED_GRID]
EVAL_IN_REPORT = in_report("Classification", "{model}", "confusion")


wildcard_constraints:
    model=f"{SEED_PREFIX}(teacher|{STUDENT_RUN})",
    student=f"{SEED_PREFIX}({STUDENT_RUN})",
    teacher=f"{SEED_PREFIX}teacher",


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
        out_dir=lambda wc, output: os.path.dirname(output.train),
    shell:
        '"$VISPIPE_PYTHON" "$VISPIPE_SCRIPTS"/fetch_cifar10.py --config {params.cfg:q}'
        " --out-dir {params.out_dir:q} --log {log:q}"


rule train_teacher:
    input:
        train=TRAIN_NPZ,
        test=TEST_NPZ,
    output:
        **outputs(f"{CLS}/{{teacher}}", TRAIN_OUTPUTS, mark={CURVES: CURVES_IN_REPORT}),
        model=f"{CLS}/{{teacher}}/{EVALUATED['teacher']}",
    log:
        "logs/classify/train_{teacher}.log",
    benchmark:
        "benchmarks/classify/train_{teacher}.tsv"
    # the longest chain (teacher, then the student it teaches) starts first when cores are short
    priority: 1
    conda:
        "../envs/vispipe.yaml"
    threads: config["threads"]["train"]
    params:
        code=code("train_teacher.py"),
        cfg=lambda wc: variants.train_params(config, wc.teacher),
        data=lambda wc, input: os.path.dirname(input.train),
        out_dir=lambda wc, output: os.path.dirname(output.model),
    shell:
        '"$VISPIPE_PYTHON" -m vispipe.gpus "$VISPIPE_PYTHON" "$VISPIPE_SCRIPTS"/train_teacher.py --config {params.cfg:q} --data {params.data:q}'
        " --out-dir {params.out_dir:q} --threads {threads} --log {log:q}"


rule train_student:
    """The student, or one ablation variant: the student's block with the variant's overrides."""
    input:
        train=TRAIN_NPZ,
        test=TEST_NPZ,
        # the teacher, for a student that learns from it (kd.alpha > 0)
        teacher=lambda wc: (
            variants.teacher_of(config, wc.student)
            if variants.uses_teacher(variants.student_block(config, wc.student))
            else []
        ),
    output:
        **outputs(f"{CLS}/{{student}}", TRAIN_OUTPUTS, mark={CURVES: CURVES_IN_REPORT}),
        best=f"{CLS}/{{student}}/{BEST}",
        last=f"{CLS}/{{student}}/{LAST}",
    log:
        "logs/classify/train_{student}.log",
    benchmark:
        "benchmarks/classify/train_{student}.tsv"
    conda:
        "../envs/vispipe.yaml"
    threads: config["threads"]["train"]
    params:
        code=code("train_student.py"),
        cfg=lambda wc: variants.train_params(config, wc.student),
        name=lambda wc: variants.name_of(wc.student),
        teacher=lambda wc, input: ["--teacher", input.teacher] if input.teacher else [],
        data=lambda wc, input: os.path.dirname(input.train),
        out_dir=lambda wc, output: os.path.dirname(output.best),
    shell:
        '"$VISPIPE_PYTHON" -m vispipe.gpus "$VISPIPE_PYTHON" "$VISPIPE_SCRIPTS"/train_student.py --config {params.cfg:q} --name {params.name:q} --data {params.data:q}'
        " {params.teacher:q} --out-dir {params.out_dir:q} --threads {threads} --log {log:q}"


rule evaluate:
    input:
        test=TEST_NPZ,
        checkpoint=lambda wc: variants.checkpoint(config, wc.model),
        train_metrics=f"{CLS}/{{model}}/{METRICS}",
    output:
        **outputs(
            f"{CLS}/{{model}}/{EVAL}",
            EVAL_OUTPUTS,
            mark=dict.fromkeys(EVAL_PICTURES, EVAL_IN_REPORT),
        ),
    log:
        "logs/classify/evaluate_{model}.log",
    benchmark:
        "benchmarks/classify/evaluate_{model}.tsv"
    conda:
        "../envs/vispipe.yaml"
    params:
        code=code("evaluate.py"),
        cfg=params_json(*EVAL_BLOCKS),
        out_dir=lambda wc, output: os.path.dirname(output.metrics_json),
    shell:
        '"$VISPIPE_PYTHON" -m vispipe.gpus "$VISPIPE_PYTHON" "$VISPIPE_SCRIPTS"/evaluate.py --config {params.cfg:q} --checkpoint {input.checkpoint:q}'
        " --test {input.test:q} --train-metrics {input.train_metrics:q}"
        " --out-dir {params.out_dir:q} --log {log:q}"


rule compare_models:
    """Student vs teacher, and the KD gain when a variant is the student without KD."""
    input:
        teacher=variants.every_seed(config, "teacher"),
        student=variants.every_seed(config, "student"),
        no_kd=(
            variants.every_seed(config, variants.run_dir(KD_CONTROL))
            if KD_CONTROL
            else []
        ),
    output:
        md=f"{CLS}/{COMPARISON_MD}",
        csv=in_report(
            "Classification", "comparison", "comparison", table="comparison"
        )(f"{CLS}/{COMPARISON_CSV}"),
    log:
        "logs/classify/compare_models.log",
    conda:
        "../envs/vispipe.yaml"
    params:
        code=code("compare_models.py"),
        no_kd=lambda wc, input: ["--no-kd", *input.no_kd] if input.no_kd else [],
    shell:
        '"$VISPIPE_PYTHON" "$VISPIPE_SCRIPTS"/compare_models.py --teacher {input.teacher:q} --student {input.student:q} {params.no_kd:q}'
        " --md {output.md:q} --csv {output.csv:q} --log {log:q}"


rule ablation:
    """Every variant beside the student and the teacher: table and chart."""
    input:
        teacher=variants.every_seed(config, "teacher"),
        student=variants.every_seed(config, "student"),
        variants=[
            p
            for name in VARIANTS
            for p in variants.every_seed(config, variants.run_dir(name))
        ],
    output:
        md=f"{CLS}/{ABLATION_MD}",
        csv=in_report("Ablations", caption="ablation", figure="table")(
            f"{CLS}/{ABLATION_CSV}"
        ),
        png=in_report(
            "Ablations", caption="ablation", figure="top-1 and training time"
        )(f"{CLS}/{ABLATION_PNG}"),
    log:
        "logs/classify/ablation.log",
    conda:
        "../envs/vispipe.yaml"
    params:
        code=code("ablation.py"),
        variants=params_json("classify.variants"),
    shell:
        '"$VISPIPE_PYTHON" "$VISPIPE_SCRIPTS"/ablation.py --teacher {input.teacher:q} --student {input.student:q}'
        " --variants {input.variants:q} --config {params.variants:q}"
        " --md {output.md:q} --csv {output.csv:q} --png {output.png:q} --log {log:q}"
