"""One function per pipeline step; the scripts in ``scripts/`` parse arguments and call these."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..config import block, to_json
from ..errors import UserError
from ..io import atomic_path, save_torch, write_json, write_text
from ..provenance import provenance
from ..runtime import device_name, pick_device
from . import layout, plots
from .augment import to_nchw
from .data import load_split, prepare, save_split
from .evaluate import compute_metrics, report_rows, report_text, softmax
from .flops import mfu, train_flops_per_image
from .layout import EVAL_BLOCKS, train_blocks
from .models import build_model, count_params, load_checkpoint
from .train import Teacher, autocast_dtype, fingerprint, finish, fit, predict, wants_channels_last
from .variants import uses_teacher

log = logging.getLogger(__name__)


def prepare_data(data_cfg: dict, seed: int, out_dir: Path, download_dir: Path) -> None:
    """Write ``out_dir/{train,test}.npz`` from the configured source."""
    splits = prepare(data_cfg, seed, download_dir)
    for name, split in splits.items():
        save_split(split, out_dir / layout.SPLITS[name])
        counts = np.bincount(split.labels, minlength=len(split.classes))
        log.info(
            "%s: %d images %s, %d classes, per class %d..%d",
            name,
            len(split),
            split.images.shape[1:],
            len(split.classes),
            counts.min(),
            counts.max(),
        )


def _file_id(path: Path) -> list:
    st = path.stat()
    return [path.name, st.st_size, int(st.st_mtime)]


def train_model(
    role: str,
    cfg: dict,
    data_dir: Path,
    out_dir: Path,
    teacher_path: Path | None = None,
    name: str | None = None,
    tracking: dict | None = None,
) -> dict:
    """Train the teacher or the student from the ``classify`` config; write its outputs.

    Teacher: ``model.pt``. Student: ``best.pt`` and ``last.pt``. Both: ``history.csv``,
    ``metrics.json``, ``curves.png``; the resume state lives in ``out_dir/resume/``. ``name``
    labels the run in its files and tables (an ablation variant's name; default: the role).
    A student with ``kd.alpha`` 0 trains on the labels alone: no teacher is loaded. ``tracking``
    (the config's tracking block) logs every epoch to TensorBoard / MLflow (vispipe/tracking.py).
    """
    name = name or role
    block = cfg["classify"][role]
    seed, device = cfg["classify"]["seed"], pick_device(cfg["classify"]["device"])
    train_path, test_path = data_dir / layout.SPLITS["train"], data_dir / layout.SPLITS["test"]
    train_split, test_split = load_split(train_path), load_split(test_path)
    if train_split.classes != test_split.classes:
        raise UserError(f"{data_dir}: train and test list different classes; rerun fetch_cifar10")
    image_size = block["model"].get("image_size")
    if image_size and train_split.images.shape[1:3] != (image_size, image_size):
        raise UserError(
            f"{role}.model.image_size is {image_size} but the images in {data_dir} are {train_split.images.shape[1:3]}"
        )
    torch.manual_seed(seed)
    model = build_model(block["model"], len(train_split.classes))
    log.info(
        "%s: %s with %s trainable parameters on %s", role, block["model"]["arch"], f"{count_params(model):,}", device
    )

    teacher = None
    inputs = [_file_id(train_path), _file_id(test_path)]
    if role == "student" and not uses_teacher(block):
        log.info(
            "%s: kd.alpha is 0, so it trains on the labels alone%s", name, "; --teacher is unused" * bool(teacher_path)
        )
    elif role == "student":
        if teacher_path is None:
            raise UserError(
                f"{name} needs --teacher (a checkpoint written by train_teacher), or kd.alpha 0 to train without one"
            )
        t_model, t_ckpt = load_checkpoint(teacher_path, device)
        if t_ckpt["classes"] != train_split.classes:
            raise UserError(
                f"teacher {teacher_path} was trained on other classes {t_ckpt['classes']}; retrain it on this data"
            )
        teacher = Teacher(t_model, block["kd"]["temperature"], block["kd"]["alpha"])
        inputs.append(_file_id(teacher_path))
        log.info("teacher %s: top-1 %.4f (epoch %d)", teacher_path, t_ckpt["metrics"]["test_acc"], t_ckpt["epoch"])

    run_id = fingerprint(role, block, seed, str(device), inputs)
    prov = provenance(device, cfg, train_blocks(role))  # now: the code this process loaded, not what is there later
    tracker = start_tracking(tracking, out_dir, name, prov, cfg, role)
    try:
        result = fit(
            model, train_split, test_split, block["train"],
            arch=block["model"], seed=seed, device=device, state_dir=out_dir / layout.RESUME,
            history_path=out_dir / layout.HISTORY, num_workers=cfg["classify"]["num_workers"],
            teacher=teacher, run_id=run_id, compile=cfg["classify"]["compile"], on_epoch=tracker.epoch,
        )  # fmt: skip
    except BaseException:
        tracker.close(finished=False)
        raise
    tracker.close()

    def save(ckpt: dict, filename: str) -> None:
        ckpt["role"], ckpt["name"], ckpt["config"] = role, name, to_json(block)
        with atomic_path(out_dir / filename) as tmp:
            save_torch(ckpt, tmp)

    if role == "teacher":
        save(result.last, layout.MODEL)
    else:
        save(result.best, layout.BEST)
        save(result.last, layout.LAST)
    metrics = {
        "role": role,
        "name": name,
        "seed": seed,
        **result.metrics,
        **throughput(model, result.history, teacher, device),
        "provenance": prov,
    }
    if tracker.run_id is not None:
        metrics["mlflow_run_id"] = tracker.run_id  # the evaluation logs its pictures into the same run
    write_json(out_dir / layout.METRICS, metrics)
    plots.training_curves(result.history, out_dir / layout.CURVES, f"{name}: training curves")
    finish(out_dir / layout.RESUME)
    log.info(
        "%s done: best top-1 %.4f (epoch %d), last %.4f, %.1f s",
        name,
        metrics["best_test_acc"],
        metrics["best_epoch"],
        metrics["last_test_acc"],
        metrics["train_time_s"],
    )
    return metrics


def start_tracking(tracking: dict | None, out_dir: Path, name: str, prov: dict, cfg: dict, role: str):
    """The run's tracker; a resumed run goes on in the MLflow run it started (its id kept with the
    resume state, which is removed with it once the outputs are written)."""
    from ..tracking import OFF, Tracker

    tracking = tracking or OFF
    saved = out_dir / layout.RESUME / "mlflow_run.json"
    prior = json.loads(saved.read_text())["run_id"] if tracking["mlflow"] and saved.is_file() else None
    tracker = Tracker(tracking, out_dir, name, prov, cfg["classify"][role], prior)
    if tracker.run_id is not None and prior is None:
        write_json(saved, {"run_id": tracker.run_id})
    return tracker


def throughput(model: torch.nn.Module, history: list[dict], teacher: Teacher | None, device: torch.device) -> dict:
    """Training speed: median images/s and seconds per epoch (the first epoch, with its warm-up and
    compilation, left out when there are more), FLOPs per image and MFU on a known GPU."""
    rows = history[1:] if len(history) > 1 else history
    images_per_s = float(np.median([r["images_per_s"] for r in rows]))
    flops = train_flops_per_image(model, teacher=teacher.model if teacher else None)
    return {
        "median_epoch_time_s": float(np.median([r["epoch_time_s"] for r in rows])),
        "median_train_time_s": float(np.median([r["train_time_s"] for r in rows])),
        "images_per_s": round(images_per_s, 1),
        "gflop_per_image": round(flops / 1e9, 4),
        "mfu": mfu(flops, images_per_s, device_name(device)) if device.type == "cuda" else None,
    }


def train_from_args(
    role: str,
    cfg: dict,
    data: Path,
    out_dir: Path,
    teacher: Path | None = None,
    name: str | None = None,
    tracking: dict | None = None,
) -> dict:
    """What ``scripts/train_{teacher,student}.py`` do: validate the blocks they read, then train."""
    for path in train_blocks(role):
        block(cfg, path)
    return train_model(role, cfg, data, out_dir, teacher_path=teacher, name=name, tracking=tracking)


def evaluate_checkpoint(
    checkpoint: Path,
    test_path: Path,
    eval_cfg: dict,
    device_name: str,
    out_dir: Path,
    train_metrics: Path | None = None,
    seed: int = 0,
    tracking: dict | None = None,
) -> dict:
    """Every evaluation artifact of one checkpoint on the test split; with ``tracking`` on, the
    normalised confusion matrix also goes to the training run's TensorBoard folder and MLflow run."""
    device = pick_device(device_name)
    model, ckpt = load_checkpoint(checkpoint, device)
    test = load_split(test_path)
    if test.classes != ckpt["classes"]:
        raise UserError(f"{checkpoint} predicts {ckpt['classes']} but {test_path} holds {test.classes}")
    mean = torch.tensor(ckpt["normalize"]["mean"], device=device)
    std = torch.tensor(ckpt["normalize"]["std"], device=device)
    channels_last = wants_channels_last(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    logits = predict(
        model, to_nchw(test.images), mean, std, eval_cfg["batch_size"], device, autocast_dtype(device, True),
        channels_last,
    ).numpy()  # fmt: skip
    metrics = compute_metrics(logits, test.labels, test.classes)
    role = ckpt.get("role", checkpoint.stem)
    label = ckpt.get("name", role)
    name = f"{label} ({ckpt['arch']['arch']})"
    metrics.update(
        {
            "role": role,
            "name": label,
            "arch": ckpt["arch"]["arch"],
            "params": count_params(model),
            "checkpoint": checkpoint.name,
            "epoch": ckpt["epoch"],
        }
    )
    if train_metrics is not None:
        tm = json.loads(Path(train_metrics).read_text())
        metrics["train_time_s"] = tm["train_time_s"]
        metrics["train_device"] = tm.get("device")
        metrics["train_provenance"] = tm.get("provenance")
        metrics["seed"] = tm.get("seed")  # the training run's: replicates pair by it
    mlflow_run_id = tm.get("mlflow_run_id") if train_metrics is not None else None
    cfg = {"classify": {"eval": eval_cfg, "device": device_name}}  # the blocks this step reads
    metrics["provenance"] = provenance(device, cfg, EVAL_BLOCKS)

    out_dir.mkdir(parents=True, exist_ok=True)
    plots.confusion(
        metrics["confusion"], test.classes, out_dir / layout.CONFUSION_COUNTS, False, f"{name}: confusion (counts)"
    )
    plots.confusion(
        metrics["confusion"],
        test.classes,
        out_dir / layout.CONFUSION_NORMALIZED,
        True,
        f"{name}: confusion (row-normalised)",
    )
    plots.per_class_accuracy(
        {c: m["accuracy"] for c, m in metrics["per_class"].items()},
        out_dir / layout.PER_CLASS_ACCURACY,
        f"{name}: per-class accuracy (top-1 {100 * metrics['top1']:.2f}%)",
    )
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(test), size=min(eval_cfg["grid_images"], len(test)), replace=False))
    plots.prediction_grid(
        test.images[pick],
        test.labels[pick],
        softmax(logits[pick]),
        test.classes,
        out_dir / layout.PRED_GRID,
        f"{name}: predictions on random test images",
    )
    write_text(
        out_dir / layout.REPORT_TXT,
        f"{name}, checkpoint {checkpoint.name} (epoch {ckpt['epoch']})\n\n"
        + report_text(logits, test.labels, test.classes, metrics),
    )
    write_csv(out_dir / layout.REPORT_CSV, report_rows(metrics))
    write_json(out_dir / layout.METRICS, metrics)
    if tracking and (tracking["tensorboard"] or tracking["mlflow"]):
        from ..tracking import Tracker

        tracker = Tracker(dict(tracking, mlflow=tracking["mlflow"] if mlflow_run_id else None), checkpoint.parent,
                          label, metrics["provenance"], eval_cfg, mlflow_run_id, step="eval")  # fmt: skip
        tracker.image("eval/confusion_normalized", out_dir / layout.CONFUSION_NORMALIZED, ckpt["epoch"])
        tracker.close(finished=False)
    log.info("%s: top-1 %.4f, top-5 %.4f on %d test images", name, metrics["top1"], metrics["top5"], len(test))
    return metrics


def write_csv(path: Path, rows: list[dict]) -> None:
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())
