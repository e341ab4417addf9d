"""The training loop shared by teacher and student: losses, schedule, EMA, checkpoints, resume.

One ``fit`` runs either recipe from its ``train`` config block. The student also gets a
teacher and a ``kd`` block: its CLS head learns the labels, its distillation head the
teacher's softened outputs on the same augmented batch (DeiT soft distillation).

``fit`` is four steps over a :class:`Run` (as timm's ``train_one_epoch``/``validate``):
:func:`restore_state`, then per epoch :func:`train_one_epoch`, :func:`evaluate` and
:func:`save_state`.

Speed (what a GPU needs, the CPU path is the same code): the training set sits on the
device as uint8 and is augmented there; bfloat16 autocast where supported (float16 with
a GradScaler elsewhere); channels_last for convolutional nets; fused optimizers; the
teacher in eval mode under ``inference_mode``; optional ``torch.compile``; and no host
synchronisation inside the step loop (loss and accuracy add up on the device).

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
from ..io import atomic_path, save_torch
from ..private import point_compiler_caches
from ..runtime import device_name, seed_everything
from .augment import BatchAugment, normalize, to_nchw, train_batches
from .data import Split
from .models import count_params

log = logging.getLogger(__name__)

HISTORY_FIELDS = [
    "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "clean",
    "train_time_s", "images_per_s", "epoch_time_s",
]  # fmt: skip


# --- losses --------------------------------------------------------------------------


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy against a (mixed) target distribution per row, with label smoothing."""
    return F.cross_entropy(logits.float(), targets, label_smoothing=smoothing)


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
    """Exponential moving average of a model's weights (persistent buffers copied as they are)."""

    def __init__(self, model: nn.Module) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._pairs: tuple[list, list, list, list] | None = None

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        if self._pairs is None:  # the tensors are fixed objects: list them once
            mine, theirs = self.module.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
            bufs = [k for k, v in mine.items() if not isinstance(v, nn.Parameter)]
            self._pairs = (
                list(self.module.parameters()), list(model.parameters()),
                [mine[k] for k in bufs], [theirs[k] for k in bufs],
            )  # fmt: skip
        ema_params, params, ema_bufs, bufs = self._pairs
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        if bufs:
            torch._foreach_copy_(ema_bufs, bufs)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and convolutions only; biases, norms, tokens and bias tables are not decayed."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "token" not in name and ".bias." not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: dict, device: torch.device) -> torch.optim.Optimizer:
    """AdamW or SGD (+Nesterov); the fused CUDA kernels on a GPU (one launch per step)."""
    groups = param_groups(model, cfg["weight_decay"])
    fused = {"fused": True} if device.type == "cuda" else {}
    if cfg["name"] == "adamw":
        return torch.optim.AdamW(groups, lr=cfg["lr"], **fused)
    return torch.optim.SGD(
        groups, lr=cfg["lr"], momentum=cfg.get("momentum", 0.9), nesterov=cfg.get("nesterov", True), **fused
    )


# --- devices ---------------------------------------------------------------------------


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """bfloat16 where the GPU supports it (no loss scaling needed), else float16; None on the CPU."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def wants_channels_last(model: nn.Module) -> bool:
    """Convolutional nets run faster in NHWC: on a GPU (tensor-core convolutions) and on the CPU
    (oneDNN): the demo's ResNet trains 1.3x faster on 2 cores (docs/measurements.md)."""
    return any(isinstance(m, nn.Conv2d) and m.kernel_size != m.stride for m in model.modules())


def use_compile(mode: str | bool, device: torch.device) -> bool:
    """``auto``: torch.compile on CUDA where Triton is installed; true/false force it."""
    if mode == "auto":
        if device.type != "cuda":
            return False
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    return bool(mode)


class MaybeCompiled:
    """``fn`` through ``torch.compile``; if compiling fails, warn once and run it eagerly.

    Compiled and eager calls share the module's parameters, so the fallback changes no state.
    """

    def __init__(self, fn, enabled: bool, name: str) -> None:
        self.eager, self.name = fn, name
        if enabled:
            point_compiler_caches()  # not /tmp/torchinductor_<user>, which another user can make first
        self.fn = torch.compile(fn) if enabled else fn

    def __call__(self, *args):
        if self.fn is self.eager:
            return self.eager(*args)
        try:
            return self.fn(*args)
        except Exception as e:  # compile errors come in many types; SIGTERM and Ctrl-C are not Exceptions
            log.warning("torch.compile failed for %s (%s: %s); running it eagerly", self.name, type(e).__name__, e)
            self.fn = self.eager
            return self.eager(*args)


# --- evaluation ----------------------------------------------------------------------


@torch.no_grad()
def predict(
    model: nn.Module | MaybeCompiled,
    images: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Float32 logits (N, K) on the CPU for uint8 NCHW ``images`` (one copy back at the end)."""
    if isinstance(model, nn.Module):
        model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size].to(device, non_blocking=True), mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out.append(model(x).float())
    return torch.cat(out).cpu()


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


@dataclass
class Run:
    """Everything one training run holds: what it trains, how, and where it stands."""

    model: nn.Module
    cfg: dict
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEma | None
    augment: BatchAugment
    amp_dtype: torch.dtype | None
    channels_last: bool
    total_steps: int
    steps_per_epoch: int
    forward: MaybeCompiled  # training forward: logits, or (CLS, distillation) logits for the student
    evaluate_fn: MaybeCompiled  # inference forward of the evaluated weights (EMA or raw)
    teacher: Teacher | None = None
    teacher_fn: MaybeCompiled | None = None
    teacher_channels_last: bool = False
    history: list[dict] = field(default_factory=list)
    best_acc: float = -1.0
    best_state: dict | None = None
    epoch: int = 0  # epochs finished

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model


def fingerprint(*parts: object) -> str:
    """A stable hash of the config and inputs: a saved state is resumed only if it matches."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_history(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
            w.writeheader()
            w.writerows(rows)


def restore_state(run: Run, state_path: Path, run_id: str) -> None:
    """Continue from ``state_path`` if it belongs to this run; set aside a damaged one.

    The state holds tensors and plain Python values only and loads with
    ``weights_only=True``: a file that would run code when unpickled is refused.
    """
    if not state_path.is_file():
        return
    try:
        state = torch.load(state_path, map_location=run.device, weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"expected a dict, found {type(state).__name__}")
    except Exception as e:  # a truncated file, garbage, or a pickle that is not plain data
        aside = state_path.with_name(state_path.name + ".damaged")
        state_path.replace(aside)
        log.warning(
            "cannot read the resume state %s (%s); moved it to %s and training from scratch", state_path, e, aside
        )
        return
    if state.get("run_id") != run_id:
        log.warning("ignoring %s: it belongs to another config or input; training from scratch", state_path)
        return
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    if run.ema is not None:
        run.ema.module.load_state_dict(state["ema"])
    run.history, run.best_acc, run.best_state = state["history"], state["best_acc"], state["best_state"]
    run.epoch = state["epoch"]
    log.info("resuming from %s at epoch %d/%d", state_path, run.epoch + 1, run.cfg["epochs"])


def save_state(run: Run, state_path: Path, run_id: str) -> None:
    """The whole training state after a finished epoch, written atomically."""
    state = {
        "run_id": run_id,
        "epoch": run.epoch,
        "model": run.model.state_dict(),
        "ema": run.ema.module.state_dict() if run.ema is not None else None,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "history": run.history,
        "best_acc": run.best_acc,
        "best_state": run.best_state,
    }
    with atomic_path(state_path) as tmp:
        save_torch(state, tmp)


def train_one_epoch(run: Run, batches, epoch: int, check_every: int = 50) -> dict:
    """One pass over ``batches``; returns mean loss, accuracy and seconds (synchronised once).

    Loss and accuracy add up on the device; the host reads them every ``check_every``
    steps (to stop on a non-finite loss) and at the end.
    """
    cfg, device, teacher = run.cfg, run.device, run.teacher
    phase = training_phase(epoch, cfg)
    run.model.train()
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    bar = tqdm(
        batches, total=run.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg['epochs']}", leave=False, mininterval=1
    )
    for step, (images, labels) in enumerate(bar, 1):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        x, targets = run.augment(images, labels, phase["clean"])
        with torch.autocast(device.type, dtype=run.amp_dtype or torch.float32, enabled=run.amp_dtype is not None):
            if teacher is None:
                logits = run.forward(x.contiguous(memory_format=torch.channels_last) if run.channels_last else x)
                loss = soft_cross_entropy(logits, targets, phase["smoothing"])
            else:
                logits, dist_logits = run.forward(x)
                with torch.inference_mode():
                    xt = x.contiguous(memory_format=torch.channels_last) if run.teacher_channels_last else x
                    teacher_logits = run.teacher_fn(xt)
                teacher_logits = teacher_logits.clone()  # an ordinary tensor again, usable by autograd
                loss = (1 - teacher.alpha) * soft_cross_entropy(logits, targets, phase["smoothing"]) + (
                    teacher.alpha * kd_loss(dist_logits, teacher_logits, teacher.temperature)
                )
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if cfg["grad_clip"]:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.model.parameters(), cfg["grad_clip"])
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        if run.ema is not None:
            decay = ema_decay(
                run.scheduler.last_epoch, run.total_steps, cfg["ema"]["decay_start"], cfg["ema"]["decay_end"]
            )
            run.ema.update(run.model, decay)
        loss_sum += loss.detach().float() * len(labels)
        correct += (logits.argmax(1) == targets.argmax(1)).sum()
        seen += len(labels)
        if step % check_every == 0:
            mean_loss = loss_sum.item() / seen
            if not math.isfinite(mean_loss):
                raise FloatingPointError(
                    f"loss became {mean_loss} at epoch {epoch + 1}; lower optimizer.lr or enable grad_clip"
                )
            bar.set_postfix(loss=f"{mean_loss:.3f}", refresh=False)
    mean_loss, accuracy = loss_sum.item() / seen, correct.item() / seen  # waits for the device
    if not math.isfinite(mean_loss):
        raise FloatingPointError(
            f"loss became {mean_loss} at epoch {epoch + 1}; lower optimizer.lr or enable grad_clip"
        )
    seconds = time.perf_counter() - t0
    return {"loss": mean_loss, "acc": accuracy, "seconds": seconds, "images": seen, "clean": phase["clean"]}


def evaluate(run: Run, x_test: torch.Tensor, y_test: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> dict:
    """Test loss, top-1 and top-5 of the evaluated weights (the EMA when enabled)."""
    run.eval_model.eval()
    logits = predict(
        run.evaluate_fn, x_test, mean, std, run.cfg["eval_batch_size"], run.device, run.amp_dtype, run.channels_last
    )
    return {
        "test_loss": round(F.cross_entropy(logits, y_test).item(), 6),
        "test_acc": round(topk_accuracy(logits, y_test, 1), 6),
        "test_top5": round(topk_accuracy(logits, y_test, 5), 6),
    }


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
    compile: str | bool = "auto",
    on_epoch=None,
) -> FitResult:
    """Train ``model`` with the ``train`` block ``cfg``; return history and checkpoints.

    ``run_id`` (a fingerprint of config and inputs) decides whether a saved state resumes.
    ``on_epoch(row)`` is called with each finished epoch's history row (experiment tracking).
    With ``num_workers == 0`` the training set is copied to ``device`` once and every
    augmentation runs there; otherwise DataLoader workers augment each image on the CPU.
    """
    num_classes = len(train.classes)
    seed_everything(seed)
    x_train, y_train = to_nchw(train.images), torch.from_numpy(train.labels)
    x_test, y_test = to_nchw(test.images), torch.from_numpy(test.labels)
    mean = (x_train.float() / 255).mean(dim=(0, 2, 3)).to(device)
    std = (x_train.float() / 255).std(dim=(0, 2, 3)).clamp_min(1e-3).to(device)
    if num_workers == 0:
        x_train, y_train, x_test = x_train.to(device), y_train.to(device), x_test.to(device)

    epochs, bs = cfg["epochs"], cfg["batch_size"]
    steps_per_epoch = len(train) // bs
    if steps_per_epoch == 0:
        raise UserError(f"batch_size {bs} is larger than the training set ({len(train)} images)")
    total_steps = epochs * steps_per_epoch
    warmup_steps = int(cfg["warmup_frac"] * total_steps)

    channels_last = wants_channels_last(model)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    optimizer = make_optimizer(model, cfg["optimizer"], device)
    amp_dtype = autocast_dtype(device, cfg["amp"])
    ema = ModelEma(model) if cfg["ema"]["enabled"] else None
    compiled = use_compile(compile, device)
    run = Run(
        model=model, cfg=cfg, device=device, optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total_steps, warmup_steps)),
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
        ema=ema, augment=BatchAugment(cfg, num_classes, mean, std), amp_dtype=amp_dtype, channels_last=channels_last,
        total_steps=total_steps, steps_per_epoch=steps_per_epoch,
        forward=MaybeCompiled(model.forward_heads if teacher else model, compiled, "the training forward"),
        evaluate_fn=MaybeCompiled(ema.module if ema is not None else model, compiled, "evaluation"),
    )  # fmt: skip
    if teacher is not None:
        t_model = teacher.model.eval()
        run.teacher_channels_last = wants_channels_last(t_model)
        t_model.to(device, memory_format=torch.channels_last if run.teacher_channels_last else torch.preserve_format)
        run.teacher, run.teacher_fn = teacher, MaybeCompiled(t_model, compiled, "the teacher")
    log.info(
        "device %s, autocast %s, channels_last %s, torch.compile %s, augmentation on %s",
        device, amp_dtype or "off", channels_last, compiled, "the CPU in workers" if num_workers else device,
    )  # fmt: skip

    state_path = state_dir / "state.pt"
    restore_state(run, state_path, run_id)

    def checkpoint(weights: nn.Module, epoch: int, metrics: dict) -> dict:
        return {
            "model": {k: v.detach().cpu().clone().contiguous() for k, v in weights.state_dict().items()},
            "arch": arch,
            "classes": list(train.classes),
            "normalize": {"mean": mean.cpu().tolist(), "std": std.cpu().tolist()},
            "train_config": cfg,
            "epoch": epoch,
            "metrics": metrics,
            "params": count_params(model),
        }

    for epoch in range(run.epoch, epochs):
        t0, epoch_seed = time.perf_counter(), seed * 100_003 + epoch
        seed_everything(epoch_seed)
        batches = train_batches(x_train, y_train, bs, cfg["augment"]["trivial_augment"], num_workers, epoch_seed)
        t = train_one_epoch(run, batches, epoch)
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": round(t["loss"], 6),
            "train_acc": round(t["acc"], 6),
            **evaluate(run, x_test, y_test, mean, std),
            "clean": int(t["clean"]),
            "train_time_s": round(t["seconds"], 3),
            "images_per_s": round(t["images"] / t["seconds"], 1),
        }
        row["epoch_time_s"] = round(time.perf_counter() - t0, 3)
        run.history.append(row)
        log.info(
            "epoch %d/%d  loss %.4f  train acc %.4f  test acc %.4f  top5 %.4f  lr %.2e  %.2fs (train %.2fs, %.0f img/s)%s",
            epoch + 1, epochs, row["train_loss"], row["train_acc"], row["test_acc"], row["test_top5"], row["lr"],
            row["epoch_time_s"], row["train_time_s"], row["images_per_s"], "  [clean]" if t["clean"] else "",
        )  # fmt: skip
        run.epoch = epoch + 1
        if row["test_acc"] > run.best_acc:
            run.best_acc = row["test_acc"]
            run.best_state = checkpoint(run.eval_model, epoch + 1, dict(row))
        save_state(run, state_path, run_id)
        write_history(run.history, history_path)  # after the state: the CSV never runs ahead of it
        if on_epoch is not None:
            on_epoch(row)

    # again after the loop: a run resumed from its last epoch's state (killed before the CSV was
    # written, or its outputs deleted as incomplete by the rerun) trains no epoch, yet needs the CSV
    write_history(run.history, history_path)
    last = checkpoint(run.eval_model, epochs, dict(run.history[-1]))
    result = FitResult(history=run.history, best=run.best_state, last=last)
    result.metrics = {
        "best_test_acc": run.best_acc,
        "best_epoch": run.best_state["epoch"],
        "last_test_acc": run.history[-1]["test_acc"],
        "last_test_top5": run.history[-1]["test_top5"],
        "train_time_s": round(sum(r["epoch_time_s"] for r in run.history), 2),
        "epochs": epochs,
        "params": count_params(model),
        "device": device_name(device),
        "ema": ema is not None,
    }
    return result


def finish(state_dir: Path) -> None:
    """Remove the resume state once the outputs are written."""
    shutil.rmtree(state_dir, ignore_errors=True)
