# CIFAR-10 -> ResNet teacher -> ViT student (knowledge distillation) -> evaluation -> comparison.

from vispipe.classify.layout import EVAL_BLOCKS, train_blocks

CLS = "results/classify"
CHECKPOINT = {"teacher": f"{CLS}/teacher/model.pt", "student": f"{CLS}/student/best.pt"}
TRAIN_OUTPUTS = ["history.csv", "metrics.json", "curves.png"]
EVAL_OUTPUTS = [
    "confusion_counts.png",
    "confusion_normalized.png",
    "per_class_accuracy.png",
    "pred_grid.png",
    "classification_report.txt",
    "classification_report.csv",
    "metrics.json",
]
CLASSIFY_TARGETS = [
    *(f"{CLS}/{m}/eval/{f}" for m in CHECKPOINT for f in EVAL_OUTPUTS),
    f"{CLS}/comparison.md",
    f"{CLS}/comparison.csv",
]


wildcard_constraints:
    model="teacher|student",


localrules:
    fetch_cifar10,


rule fetch_cifar10:
    """Download (or read) the images once; every source becomes the same uint8 arrays."""
    output:
        train=f"{DATA}/train.npz",
        test=f"{DATA}/test.npz",
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
        train=f"{DATA}/train.npz",
        test=f"{DATA}/test.npz",
    output:
        **{f.split(".")[0]: f"{CLS}/teacher/{f}" for f in TRAIN_OUTPUTS},
        model=f"{CLS}/teacher/model.pt",
    log:
        "logs/classify/train_teacher.log",
    benchmark:
        "benchmarks/classify/train_teacher.tsv"
    conda:
        "../envs/vispipe.yaml"
    threads: 8
    params:
        cfg=params_json(*train_blocks("teacher")),
    shell:
        "python scripts/train_teacher.py --config {params.cfg:q} --data $(dirname {input.train})"
        " --out-dir $(dirname {output.model}) --threads {threads} --log {log}"


rule train_student:
    input:
        train=f"{DATA}/train.npz",
        test=f"{DATA}/test.npz",
        teacher=CHECKPOINT["teacher"],
    output:
        **{f.split(".")[0]: f"{CLS}/student/{f}" for f in TRAIN_OUTPUTS},
        best=f"{CLS}/student/best.pt",
        last=f"{CLS}/student/last.pt",
    log:
        "logs/classify/train_student.log",
    benchmark:
        "benchmarks/classify/train_student.tsv"
    conda:
        "../envs/vispipe.yaml"
    threads: 8
    params:
        cfg=params_json(*train_blocks("student")),
    shell:
        "python scripts/train_student.py --config {params.cfg:q} --data $(dirname {input.train})"
        " --teacher {input.teacher} --out-dir $(dirname {output.best}) --threads {threads} --log {log}"


rule evaluate:
    input:
        test=f"{DATA}/test.npz",
        checkpoint=lambda wc: CHECKPOINT[wc.model],
        train_metrics=f"{CLS}/{{model}}/metrics.json",
    output:
        **{f.replace(".", "_"): f"{CLS}/{{model}}/eval/{f}" for f in EVAL_OUTPUTS},
    log:
        "logs/classify/evaluate_{model}.log",
    benchmark:
        "benchmarks/classify/evaluate_{model}.tsv"
    conda:
        "../envs/vispipe.yaml"
    params:
        cfg=params_json(*EVAL_BLOCKS),
    shell:
        "python scripts/evaluate.py --config {params.cfg:q} --checkpoint {input.checkpoint}"
        " --test {input.test} --train-metrics {input.train_metrics}"
        " --out-dir $(dirname {output.metrics_json}) --log {log}"


rule compare_models:
    input:
        teacher=f"{CLS}/teacher/eval/metrics.json",
        student=f"{CLS}/student/eval/metrics.json",
    output:
        md=f"{CLS}/comparison.md",
        csv=f"{CLS}/comparison.csv",
    log:
        "logs/classify/compare_models.log",
    conda:
        "../envs/vispipe.yaml"
    shell:
        "python scripts/compare_models.py --teacher {input.teacher} --student {input.student}"
        " --md {output.md} --csv {output.csv} --log {log}"
