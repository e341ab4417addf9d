#!/usr/bin/env python
"""The GPU check: the real classification chain on real CIFAR-10, timed, in one command.

    python bench/gpu_check.py --data PATH/cifar10-jpeg.tar.gz      # or: make gpu-check DATA=PATH
    python bench/gpu_check.py --device cpu --tiny                  # the CPU smoke test CI runs

Made for a GPU machine without internet and without Snakemake: it needs torch, torchvision,
numpy, Pillow, scikit-learn, matplotlib, PyYAML and tqdm (timm for the student-vs-timm line;
jsonschema only to validate the config), and imports vispipe from this checkout. It runs
the pipeline's own step functions, the ones the Snakemake rules call:

1. data preparation (fetch_cifar10's code) from a CIFAR-10 folder or archive;
2. the teacher for --teacher-epochs, then the student with distillation for --student-epochs:
   the full recipe of config/config.yaml with the schedules shortened (warmup, cosine and the
   clean tail scale with them), nothing else changed;
3. evaluation of both (every artifact), and the student's checkpoint reloaded on the CPU;
4. bench/classify.py on the same device (input pipeline vs the seed's, student vs timm);
5. bench/segment.py on the same device: our two video propagators vs transformers' SAM2 video loop,
   and the box detectors (Grounding DINO, OWLv2) vs their own transformers loops.

It writes <out>/report.json and <out>/report.md: the device, torch and CUDA versions, seconds
per epoch, images/s and MFU of both models, their accuracies, and the projected wall time of
the full recipe (teacher 200 + student 300 epochs).
"""

from __future__ import annotations

import argparse
import csv
import functools
import importlib.util
import json
import logging
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    import vispipe  # noqa: F401
except ImportError:  # a bare GPU machine: use this checkout's package without installing it
    sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from vispipe.classify import steps  # noqa: E402
from vispipe.classify.augment import to_nchw  # noqa: E402
from vispipe.classify.data import load_split  # noqa: E402
from vispipe.classify.models import load_checkpoint  # noqa: E402
from vispipe.classify.train import predict  # noqa: E402
from vispipe.cli import setup_logging  # noqa: E402
from vispipe.config import deep_merge, load  # noqa: E402
from vispipe.runtime import device_name, pick_device  # noqa: E402

log = logging.getLogger("gpu_check")
TARGET_EPOCH_S = {"teacher": 1.3, "student": 1.4}  # the speed targets, one H100 in bf16


def build_config(args: argparse.Namespace) -> tuple[dict, dict]:
    """The config this check runs, and the full recipe it projects to."""
    files = [ROOT / "config/config.yaml"] + ([ROOT / "config/demo.yaml"] if args.tiny else [])
    full = load(files)
    if args.data == "digits":
        data = {"source": "digits", "name": "digits"}
    else:
        data = {"source": "folder", "name": "cifar10", "path": str(Path(args.data).resolve())}
    data.update(limit_train=args.limit_train, limit_test=args.limit_test)
    student_epochs = args.student_epochs
    full_student = full["classify"]["student"]["train"]
    clean = round(full_student["clean_last_epochs"] * student_epochs / full_student["epochs"])
    override = {
        "classify": {
            "device": args.device,
            "compile": args.compile,
            "data": data,
            "teacher": {"train": {"epochs": args.teacher_epochs}},
            "student": {"train": {"epochs": student_epochs, "clean_last_epochs": max(1, clean)}},
        }
    }
    cfg = deep_merge(full, override)  # a copy: ``full`` stays the recipe it projects to
    try:
        from vispipe.config import block

        block(cfg, "classify")
    except ImportError:
        log.warning("jsonschema is not installed: the config is not validated")
    return cfg, full


def history(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def model_report(role: str, out: Path, metrics: dict, evaluation: dict, full_epochs: int) -> dict:
    rows = history(out / "history.csv")
    first = rows[0]
    return {
        "epochs": len(rows),
        "first_epoch_s": first["epoch_time_s"],  # includes warm-up and compilation
        "median_epoch_s": metrics["median_epoch_time_s"],
        "median_train_s": metrics["median_train_time_s"],
        "images_per_s": metrics["images_per_s"],
        "gflop_per_image": metrics["gflop_per_image"],
        "mfu": metrics["mfu"],
        "top1": evaluation["top1"],
        "top5": evaluation["top5"],
        "best_epoch_top1": metrics["best_test_acc"],
        "params": evaluation["params"],
        "full_recipe_epochs": full_epochs,
        "projected_full_recipe_min": round(
            (first["epoch_time_s"] + (full_epochs - 1) * metrics["median_epoch_time_s"]) / 60, 2
        ),
        "target_epoch_s_h100": TARGET_EPOCH_S[role],
    }


def reload_on_cpu(checkpoint: Path, test_npz: Path, device: torch.device, n: int = 512) -> dict:
    """The trained checkpoint loaded on the CPU predicts what it predicts on the training device."""
    test = load_split(test_npz)
    x = to_nchw(test.images[:n])
    preds = {}
    for dev in {torch.device("cpu"), device}:
        model, ckpt = load_checkpoint(checkpoint, dev)
        mean = torch.tensor(ckpt["normalize"]["mean"], device=dev)
        std = torch.tensor(ckpt["normalize"]["std"], device=dev)
        preds[dev.type] = predict(model, x, mean, std, 256, dev).argmax(1)
    agree = (preds["cpu"] == preds[device.type]).float().mean().item()
    return {"images": len(x), "cpu_vs_device_agreement": agree}


@functools.cache
def bench_module(name: str = "classify"):
    """bench/<name>.py, imported from its path (bench/ is no package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / f"bench/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_bench(args: argparse.Namespace, device: torch.device, out: Path) -> dict | None:
    argv = ["--device", str(device), "--out", str(out / "bench_classify.json")]
    if args.data != "digits":
        argv += ["--data", str(args.data)]
    if args.tiny:
        argv += ["--images", "512", "--steps", "1", "--student", "64,2,2"]
    if device.type == "cuda":
        argv += ["--compile", "--steps", "20"]
    try:
        return bench_module().main(argv)
    except ImportError as e:  # timm missing: the rest of the report stands
        log.warning("bench/classify.py skipped: %s", e)
        return None


def run_segment_bench(args: argparse.Namespace, device: torch.device, out: Path) -> dict | None:
    """bench/segment.py: our flow and sam2_video propagators against transformers' SAM2 video loop
    (full-size SAM2.1-hiera-small, random weights, 1280x720), then the detectors and the other trackers
    (EdgeTAM, SAM 3) against their own loops; --tiny: the demo's tiny SAM2, small frames, no others."""
    argv = ["--device", str(device), "--out", str(out / "bench_segment.json")]
    if args.tiny:
        argv += [
            "--model",
            "tiny",
            "--frames",
            "3",
            "--size",
            "120x160",
            "--detector-frames",
            "0",
            "--tracker-frames",
            "0",
        ]
    elif device.type == "cuda":
        argv += ["--frames", "60"]
    try:
        return bench_module("segment").main(argv)
    except ImportError as e:  # transformers or OpenCV missing: the rest of the report stands
        log.warning("bench/segment.py skipped: %s", e)
        return None


def markdown(r: dict) -> str:
    lines = [
        f"# GPU check: {r['device']}",
        "",
        f"torch {r['torch']}, CUDA {r['cuda']}, Python {r['python']}, vispipe {r['vispipe']}; data: {r['data']}; "
        f"torch.compile: {r['compile']}; wall time of this check: {r['wall_s'] / 60:.1f} min.",
        "",
        "| model | epochs | first epoch (s) | median epoch (s) | train img/s | GFLOP/img | MFU "
        "| top-1 | top-5 | projected full recipe (min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for role in ("teacher", "student"):
        m = r[role]
        mfu = f"{m['mfu']:.1%}" if m["mfu"] is not None else "n/a"
        lines.append(
            f"| {role} | {m['epochs']} | {m['first_epoch_s']:.2f} | {m['median_epoch_s']:.2f} "
            f"| {m['images_per_s']:.0f} | {m['gflop_per_image']:.2f} | {mfu} | {100 * m['top1']:.2f} "
            f"| {100 * m['top5']:.2f} | {m['projected_full_recipe_min']:.1f} ({m['full_recipe_epochs']} epochs) |"
        )
    lines += [
        "",
        f"Projected full recipe (teacher + student): **{r['projected_full_recipe_min']:.1f} min**. "
        f"Speed targets on one H100: teacher epoch ≤ {TARGET_EPOCH_S['teacher']} s, "
        f"student epoch ≤ {TARGET_EPOCH_S['student']} s.",
        f"Student checkpoint reloaded on the CPU: {100 * r['cpu_reload']['cpu_vs_device_agreement']:.1f}% "
        f"of {r['cpu_reload']['images']} predictions agree with the {r['device_type']} ones.",
        "",
        "Stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in r["stages_s"].items()),
    ]
    if r.get("bench"):
        b = r["bench"]
        table = bench_module().table(b["input_pipeline"], b["student_step"], 0)
        lines += ["", "## bench/classify.py on this device", "", table]
    if r.get("segment_bench"):
        seg = bench_module("segment")
        lines += ["", "## bench/segment.py on this device", "", seg.table(r["segment_bench"])]
        if r["segment_bench"].get("detectors"):
            lines.append(seg.detector_table(r["segment_bench"]))
        if r["segment_bench"].get("trackers"):
            lines.append(seg.tracker_table(r["segment_bench"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = ROOT.parent / "shared/data/cifar10-jpeg.tar.gz"
    p.add_argument("--data", default=str(default_data) if default_data.exists() else "digits",
                   help="CIFAR-10 folder or .tar.gz with train/<class>/*, test/<class>/* ('digits': the demo data)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--teacher-epochs", type=int, default=None, help="default 10 (--tiny: 1)")
    p.add_argument("--student-epochs", type=int, default=None, help="default 20 (--tiny: 2)")
    p.add_argument("--limit-train", type=int, default=None, help="stratified subset of the training set")
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--compile", default="auto", choices=["auto", "true", "false"])
    p.add_argument("--tiny", action="store_true", help="demo-size models and data: a smoke test in about a minute")
    p.add_argument("--no-bench", action="store_true", help="skip bench/classify.py and bench/segment.py")
    p.add_argument("--out", type=Path, default=ROOT / "bench/out/gpu_check")
    args = p.parse_args(argv)
    args.compile = {"true": True, "false": False}.get(args.compile, args.compile)
    if args.tiny:
        args.limit_train = args.limit_train or 512
        args.limit_test = args.limit_test or 256
    args.teacher_epochs = args.teacher_epochs or (1 if args.tiny else 10)
    args.student_epochs = args.student_epochs or (2 if args.tiny else 20)
    args.out.mkdir(parents=True, exist_ok=True)
    setup_logging(args.out / "gpu_check.log")

    t_start = time.perf_counter()
    stages: dict[str, float] = {}
    cfg, full = build_config(args)
    device = pick_device(args.device)
    data_dir = args.out / "data"

    def stage(name: str, fn, *a, **kw):
        t0 = time.perf_counter()
        result = fn(*a, **kw)
        stages[name] = round(time.perf_counter() - t0, 2)
        log.info("stage %s: %.1f s", name, stages[name])
        return result

    c = cfg["classify"]
    stage("data", steps.prepare_data, c["data"], c["seed"], data_dir, args.out / "downloads")
    t_metrics = stage("teacher", steps.train_model, "teacher", cfg, data_dir, args.out / "teacher")
    teacher_ckpt = args.out / "teacher/model.pt"
    s_metrics = stage(
        "student", steps.train_model, "student", cfg, data_dir, args.out / "student", teacher_path=teacher_ckpt
    )
    evals = {}
    for role, ckpt in (("teacher", teacher_ckpt), ("student", args.out / "student/best.pt")):
        evals[role] = stage(
            f"evaluate_{role}", steps.evaluate_checkpoint, ckpt, data_dir / "test.npz", c["eval"], c["device"],
            args.out / role / "eval", train_metrics=args.out / role / "metrics.json",
        )  # fmt: skip
    cpu_reload = stage("cpu_reload", reload_on_cpu, args.out / "student/best.pt", data_dir / "test.npz", device)
    bench = None if args.no_bench else stage("bench", run_bench, args, device, args.out)
    segment_bench = None if args.no_bench else stage("segment_bench", run_segment_bench, args, device, args.out)

    from vispipe import __version__

    report = {
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "vispipe": __version__,
        "data": c["data"]["path"] or c["data"]["source"],
        "compile": args.compile,
        "teacher": model_report(
            "teacher", args.out / "teacher", t_metrics, evals["teacher"], full["classify"]["teacher"]["train"]["epochs"]
        ),
        "student": model_report(
            "student", args.out / "student", s_metrics, evals["student"], full["classify"]["student"]["train"]["epochs"]
        ),
        "cpu_reload": cpu_reload,
        "bench": bench,
        "segment_bench": segment_bench,
        "stages_s": stages,
    }
    report["projected_full_recipe_min"] = round(
        report["teacher"]["projected_full_recipe_min"] + report["student"]["projected_full_recipe_min"], 2
    )
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    (args.out / "report.md").write_text(md)
    print("\n" + md)
    print(f"wrote {args.out / 'report.json'} and {args.out / 'report.md'}")
    return report


if __name__ == "__main__":
    main()
