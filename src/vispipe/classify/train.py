"""The training loop shared by teacher and student: losses, schedule, EMA, checkpoints, resume.

One ``fit`` runs either recipe from its ``train`` config block. The student also gets a
teacher and a ``kd`` block: its CLS head learns the labels, its distillation head the
teacher's softened outputs on the same augmented batch (DeiT soft distillation).

Resuming: after every epoch the whole training state (model, EMA, optimizer, scheduler,
scaler, history, best weights) is written atomically to ``state_dir``, outside the rule's
declared outputs. A rerun with the same config and inputs continues from the last finished
epoch. No RNG state needs saving: each epoch reseeds every RNG (shuffling, augmentation,
dropout, Mixup) from (seed, epoch), so a resumed CPU run ends exactly where an
uninterrupted one does. The state is removed once the outputs are written. A kill (or
Slurm's SIGTERM) loses at most the epoch in progress.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import UserError
from ..io import atomic_path
from ..runtime import seed_everything
from .augment import BatchAugment, normalize, to_nchw, train_batches
from .data import Split
from .models import count_params

log = logging.getLogger(__name__)

HISTORY_FIELDS = [
    "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "clean", "epoch_time_s",
]  # fmt: skip


# --- losses --------------------------------------------------------------------------


def smooth_targets(targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Label smoothing on (possibly mixed) soft targets: t * (1 - e) + e / K."""
    return targets * (1.0 - smoothing) + smoothing / targets.shape[-1]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a target distribution per row, averaged over the batch."""
    return -(targets * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al. (2015): T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch."""
    t = temperature
    s_log = F.log_softmax(student_logits.float() / t, dim=-1)
    t_log = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return F.kl_div(s_log, t_log, reduction="batchmean", log_target=True) * t * t


# --- schedules and EMA ---------------------------------------------------------------


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear 0 -> 1 over ``warmup`` steps, then cosine 1 -> 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def training_phase(epoch: int, cfg: dict) -> dict:
    """The last ``clean_last_epochs`` epochs drop Mixup/CutMix and label smoothing (the seed's clean tail)."""
    clean = epoch >= cfg["epochs"] - cfg["clean_last_epochs"]
    return {"clean": clean, "smoothing": 0.0 if clean else cfg["label_smoothing"]}


def ema_decay(step: int, total: int, start: float, end: float) -> float:
    """EMA decay ramped linearly from ``start`` to ``end`` over training."""
    return start + (end - start) * min(step / max(1, total - 1), 1.0)


class ModelEma:
    """Exponential moving average of a model's weights (buffers copied as they are)."""

    def __init__(self, model: nn.Module) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        ema_params = list(self.module.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)
        for e, m in zip(self.module.buffers(), model.buffers()):
            e.copy_(m)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and convolutions only; biases, norms, tokens and bias tables are not decayed."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "token" not in name and ".bias." not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg["weight_decay"])
    if cfg["name"] == "adamw":
        return torch.optim.AdamW(groups, lr=cfg["lr"])
    return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg.get("momentum", 0.9), nesterov=cfg.get("nesterov", True))


# --- evaluation ----------------------------------------------------------------------


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, batch_size: int, device: torch.device
) -> torch.Tensor:
    """Float32 logits (N, K) on the CPU for uint8 NCHW ``images``."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size].to(device, non_blocking=True), mean, std)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            out.append(model(x).float().cpu())
    return torch.cat(out)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(1).float().mean().item()


# --- the loop ------------------------------------------------------------------------


@dataclass
class Teacher:
    model: nn.Module
    temperature: float
    alpha: float


@dataclass
class FitResult:
    history: list[dict]
    best: dict  # checkpoint dict of the best epoch
    last: dict  # checkpoint dict of the last epoch
    metrics: dict = field(default_factory=dict)


def fingerprint(*parts: object) -> str:
    """A stable hash of the config and inputs: a saved state is resumed only if it matches."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_history(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
            w.writeheader()
            w.writerows(rows)


def fit(
    model: nn.Module,
    train: Split,
    test: Split,
    cfg: dict,
    *,
    arch: dict,
    seed: int,
    device: torch.device,
    state_dir: Path,
    history_path: Path,
    num_workers: int = 0,
    teacher: Teacher | None = None,
    run_id: str = "",
) -> FitResult:
    """Train ``model`` with the ``train`` block ``cfg``; return history and checkpoints.

    ``run_id`` (a fingerprint of config and inputs) decides whether a saved state resumes.
    """
    num_classes = len(train.classes)
    seed_everything(seed)
    x_train, y_train = to_nchw(train.images), torch.from_numpy(train.labels)
    x_test, y_test = to_nchw(test.images), torch.from_numpy(test.labels)
    mean = (x_train.float() / 255).mean(dim=(0, 2, 3)).to(device)
    std = (x_train.float() / 255).std(dim=(0, 2, 3)).clamp_min(1e-3).to(device)

    epochs, bs = cfg["epochs"], cfg["batch_size"]
    steps_per_epoch = len(train) // bs
    if steps_per_epoch == 0:
        raise UserError(f"batch_size {bs} is larger than the training set ({len(train)} images)")
    total_steps = epochs * steps_per_epoch
    warmup_steps = int(cfg["warmup_frac"] * total_steps)

    model.to(device)
    optimizer = make_optimizer(model, cfg["optimizer"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total_steps, warmup_steps))
    use_amp = cfg["amp"] and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ema = ModelEma(model) if cfg["ema"]["enabled"] else None
    augment = BatchAugment(cfg, num_classes, mean, std)
    if teacher is not None:
        teacher.model.to(device).eval()

    history: list[dict] = []
    best_acc, best_state, start_epoch = -1.0, None, 0
    state_path = state_dir / "state.pt"
    if state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=False)
        if state.get("run_id") == run_id:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            if ema is not None:
                ema.module.load_state_dict(state["ema"])
            history, best_acc, best_state = state["history"], state["best_acc"], state["best_state"]
            start_epoch = state["epoch"]
            log.info("resuming from %s at epoch %d/%d", state_path, start_epoch + 1, epochs)
        else:
            log.warning("ignoring %s: it belongs to another config or input; training from scratch", state_path)

    def checkpoint(weights: nn.Module, epoch: int, metrics: dict) -> dict:
        return {
            "model": {k: v.detach().cpu().clone() for k, v in weights.state_dict().items()},
            "arch": arch,
            "classes": list(train.classes),
            "normalize": {"mean": mean.cpu().tolist(), "std": std.cpu().tolist()},
            "train_config": cfg,
            "epoch": epoch,
            "metrics": metrics,
            "params": count_params(model),
        }

    for epoch in range(start_epoch, epochs):
        seed_everything(seed * 100_003 + epoch)
        phase = training_phase(epoch, cfg)
        clean = phase["clean"]
        model.train()
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        batches = train_batches(
            x_train, y_train, bs, cfg["augment"]["trivial_augment"], num_workers, seed * 100_003 + epoch
        )
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", leave=False, mininterval=1)
        for images, labels in bar:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            x, targets = augment(images, labels, clean)
            targets = smooth_targets(targets, phase["smoothing"])
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                if teacher is None:
                    logits = model(x)
                    loss = soft_cross_entropy(logits, targets)
                else:
                    logits, dist_logits = model.forward_heads(x)
                    with torch.no_grad():
                        teacher_logits = teacher.model(x)
                    loss = (1 - teacher.alpha) * soft_cross_entropy(logits, targets) + teacher.alpha * kd_loss(
                        dist_logits, teacher_logits, teacher.temperature
                    )
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at epoch {epoch + 1}; lower optimizer.lr or enable grad_clip"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg["grad_clip"]:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                step = scheduler.last_epoch
                ema.update(model, ema_decay(step, total_steps, cfg["ema"]["decay_start"], cfg["ema"]["decay_end"]))
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(1) == targets.argmax(1)).sum().item()
            seen += len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", refresh=False)
        train_time = time.perf_counter() - t0

        eval_model = ema.module if ema is not None else model
        logits_test = predict(eval_model, x_test, mean, std, cfg["eval_batch_size"], device)
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": round(loss_sum / seen, 6),
            "train_acc": round(correct / seen, 6),
            "test_loss": round(F.cross_entropy(logits_test, y_test).item(), 6),
            "test_acc": round(topk_accuracy(logits_test, y_test, 1), 6),
            "test_top5": round(topk_accuracy(logits_test, y_test, 5), 6),
            "clean": int(clean),
            "epoch_time_s": round(time.perf_counter() - t0, 3),
        }
        history.append(row)
        log.info(
            "epoch %d/%d  loss %.4f  train acc %.4f  test acc %.4f  top5 %.4f  lr %.2e  %.1fs (train %.1fs)%s",
            epoch + 1, epochs, row["train_loss"], row["train_acc"], row["test_acc"], row["test_top5"],
            row["lr"], row["epoch_time_s"], train_time, "  [clean]" if clean else "",
        )  # fmt: skip
        if row["test_acc"] > best_acc:
            best_acc = row["test_acc"]
            best_state = checkpoint(eval_model, epoch + 1, dict(row))
        state = {
            "run_id": run_id,
            "epoch": epoch + 1,
            "model": model.state_dict(),
            "ema": ema.module.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "history": history,
            "best_acc": best_acc,
            "best_state": best_state,
        }
        with atomic_path(state_path) as tmp:
            torch.save(state, tmp)
        write_history(history, history_path)  # after the state: the CSV never runs ahead of it

    eval_model = ema.module if ema is not None else model
    last = checkpoint(eval_model, epochs, dict(history[-1]))
    result = FitResult(history=history, best=best_state, last=last)
    result.metrics = {
        "best_test_acc": best_acc,
        "best_epoch": best_state["epoch"],
        "last_test_acc": history[-1]["test_acc"],
        "last_test_top5": history[-1]["test_top5"],
        "train_time_s": round(sum(r["epoch_time_s"] for r in history), 2),
        "epochs": epochs,
        "params": count_params(model),
        "device": str(device),
        "ema": ema is not None,
    }
    return result


def finish(state_dir: Path) -> None:
    """Remove the resume state once the outputs are written."""
    shutil.rmtree(state_dir, ignore_errors=True)
