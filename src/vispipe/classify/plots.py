"""Pictures of a classifier: confusion matrices, per-class accuracy, a prediction grid, curves."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import save_figure  # noqa: E402


def confusion(cm: np.ndarray, classes: list[str], path: Path, normalized: bool, title: str) -> None:
    """Heatmap with class names on both axes and the value in every cell."""
    cm = np.asarray(cm, dtype=np.float64)
    values = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalized else cm
    k = len(classes)
    size = max(6.0, 0.75 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalized else max(values.max(), 1))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = values.max() / 2 if values.max() > 0 else 0.5
    fontsize = 9 if k <= 10 else 7
    for i in range(k):
        for j in range(k):
            text = f"{values[i, j]:.2f}" if normalized else f"{int(values[i, j])}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if values[i, j] > threshold else "black",
            )
    fig.tight_layout()
    save_figure(fig, path, dpi=130)


def per_class_accuracy(acc: dict[str, float], path: Path, title: str) -> None:
    names, values = list(acc), [100 * v for v in acc.values()]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(names) + 2), 4.5))
    bars = ax.bar(names, values, color="#4C72B0")
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=8, padding=2)
    low = min(values) if values else 0
    ax.set_ylim(max(0, low - 10), 100 + 3)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    ax.axhline(np.mean(values), color="gray", linestyle="--", linewidth=1, label=f"mean {np.mean(values):.1f}%")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, dpi=130)


def prediction_grid(
    images: np.ndarray, labels: np.ndarray, probs: np.ndarray, classes: list[str], path: Path, title: str
) -> None:
    """Square grid of test images titled 'pred (confidence) / true', green if right, red if wrong."""
    n = len(images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.05 * rows))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for i, ax in enumerate(np.atleast_1d(axes).ravel()[:n]):
        pred = int(probs[i].argmax())
        ax.imshow(images[i], interpolation="nearest")
        ok = pred == labels[i]
        ax.set_title(
            f"{classes[pred]} ({probs[i, pred]:.0%})\ntrue: {classes[labels[i]]}",
            fontsize=8,
            color="green" if ok else "red",
        )
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def training_curves(history: list[dict], path: Path, title: str) -> None:
    """Loss and accuracy per epoch; the clean (no Mixup/CutMix) tail is shaded."""
    ep = [r["epoch"] for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(ep, [r["train_loss"] for r in history], label="train (augmented)")
    a1.plot(ep, [r["test_loss"] for r in history], label="test")
    a1.set_xlabel("epoch")
    a1.set_ylabel("loss")
    a2.plot(ep, [100 * r["train_acc"] for r in history], label="train (augmented)")
    a2.plot(ep, [100 * r["test_acc"] for r in history], label="test top-1")
    a2.plot(ep, [100 * r["test_top5"] for r in history], label="test top-5", alpha=0.6)
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy (%)")
    clean = [r["epoch"] for r in history if int(r["clean"])]
    for ax in (a1, a2):
        if clean:
            ax.axvspan(min(clean) - 0.5, max(clean) + 0.5, color="gray", alpha=0.15, label="clean epochs")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def ablation_chart(runs: list[str], top1: list[float], train_min: list[float], params_m: list[float], path: Path,
                   title: str, top1_std: list[float] | None = None) -> None:  # fmt: skip
    """Top-1 and training time of each run, side by side, one bar per run (the first is the
    reference: its top-1 is the dashed line); parameters in the run's label. ``top1_std`` (over
    seeds; NaN for one seed) draws error bars of one standard deviation."""
    n = len(runs)
    spread = [0.0 if s is None or math.isnan(s) else s for s in (top1_std or [math.nan] * n)]
    fig, (acc, time_ax) = plt.subplots(
        1, 2, figsize=(11, 2.0 + 0.6 * n), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
    )
    y = np.arange(n)
    colors = ["#1f77b4"] + ["#ff7f0e"] * (n - 2) + ["#7f7f7f"] if n > 1 else ["#1f77b4"]
    acc.barh(y, top1, color=colors, xerr=spread if any(spread) else None, capsize=4, ecolor="#333333")
    lo = max(0.0, min(t - s for t, s in zip(top1, spread)) - 5)
    acc.set_xlim(lo, min(100.0, max(t + s for t, s in zip(top1, spread)) + 2.5))
    acc.axvline(top1[0], color="#1f77b4", linestyle="--", linewidth=1)
    for yi, v, s in zip(y, top1, spread):
        acc.text(v + s + 0.1, yi, f"{v:.2f}" + (f" ± {s:.2f}" if s else ""), va="center", fontsize=9)
    acc.set_yticks(y, [f"{r}\n{p:.2f}M params" for r, p in zip(runs, params_m)], fontsize=9)
    acc.invert_yaxis()
    acc.set_xlabel("top-1 (%)")
    time_ax.barh(y, [0 if math.isnan(t) else t for t in train_min], color=colors)
    for yi, t in zip(y, train_min):
        time_ax.text((0 if math.isnan(t) else t), yi, " n/a" if math.isnan(t) else f" {t:.1f}", va="center", fontsize=9)
    time_ax.set_xlim(0, 1.25 * max([t for t in train_min if not math.isnan(t)], default=1.0))
    time_ax.set_xlabel("training time (min)")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
