"""Training augmentation, every random op batched on the training device.

- Per epoch, on the device that holds the training set: a seeded shuffle, then
  TrivialAugmentWide with its own op and magnitude per image (``trivial_augment.py``:
  torchvision's ops, grouped by op and magnitude), on uint8 images.
- Per batch: random crop with zero padding, horizontal flip, normalisation, random erasing
  (each image draws its own parameters, vectorised), then Mixup or CutMix (torchvision v2,
  one mix per batch as in timm and DeiT).

With ``num_workers > 0`` the per-image part runs instead in DataLoader workers with
torchvision's ``TrivialAugmentWide`` one image at a time (the seed's way; ``bench/classify.py``
measures both). Workers ignore SIGTERM: Slurm and ``timeout`` signal the whole process
group, and only the main process should decide how to stop.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .trivial_augment import random_trivial_augment_wide


class UInt8Images(Dataset):
    """uint8 NCHW images with labels; optionally TrivialAugmentWide per image."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, trivial_augment: bool) -> None:
        self.images, self.labels = images, labels
        self.transform = v2.TrivialAugmentWide() if trivial_augment else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.images[i]
        return (self.transform(img) if self.transform else img), self.labels[i]


def to_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC array -> contiguous uint8 NCHW tensor."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def _worker_ignores_sigterm(_worker_id: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def worker_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, trivial_augment: bool, num_workers: int, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled uint8 CPU batches, TrivialAugmentWide per image in ``num_workers`` workers.

    SIGTERM is blocked while the workers start, so each is born blocking it and then ignores
    it: a signal to the whole process group (or the job's cgroup) reaches the main process
    alone. There it is held back while the DataLoader starts or stops its workers and acted
    on between batches: the workers are shut down, then the signal's own handler runs.
    """
    loader = DataLoader(
        UInt8Images(images, labels, trivial_augment),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_worker_ignores_sigterm,
    )
    pending: list[int] = []
    handler = signal.signal(signal.SIGTERM, lambda signum, frame: pending.append(signum))
    batches = None
    try:
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            batches = iter(loader)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for batch in batches:
            if pending:
                break
            yield batch
    finally:
        if batches is not None and hasattr(batches, "_shutdown_workers"):
            batches._shutdown_workers()  # now, not whenever the iterator is collected
        signal.signal(signal.SIGTERM, handler)
    if pending:
        signal.raise_signal(signal.SIGTERM)  # the real handler (a clean exit 143 in the scripts)


def device_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, trivial_augment: bool, chunk: int = 8192
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled uint8 batches where ``images`` live (global RNG of that device).

    TrivialAugmentWide runs per image over chunks of the shuffled set, so a whole epoch
    costs a few hundred batched calls. The last partial batch is dropped.
    """
    order = torch.randperm(len(labels), device=images.device)
    n = (len(order) // batch_size) * batch_size
    chunk = max(1, chunk // batch_size) * batch_size  # whole batches per chunk
    for c0 in range(0, n, chunk):
        idx = order[c0 : min(c0 + chunk, n)]
        x, y = images[idx], labels[idx]
        if trivial_augment:
            x = random_trivial_augment_wide(x)
        for b0 in range(0, len(idx), batch_size):
            yield x[b0 : b0 + batch_size], y[b0 : b0 + batch_size]


def train_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    trivial_augment: bool,
    num_workers: int,
    seed: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled uint8 batches (last partial batch dropped), seeded by ``seed``.

    ``num_workers == 0``: batched on the device of ``images`` (reseeds its RNG from ``seed``);
    otherwise DataLoader workers on the CPU.
    """
    if num_workers > 0:
        return worker_batches(images, labels, batch_size, trivial_augment, num_workers, seed)
    torch.manual_seed(seed)  # seeds every device's generator
    return device_batches(images, labels, batch_size, trivial_augment)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float, standardised per channel."""
    return (x.float() / 255.0 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """RandomCrop(size, padding, fill=0) with an independent offset per image (one gather)."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    wp = w + 2 * padding
    oy = torch.randint(0, 2 * padding + 1, (b,), device=x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), device=x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = ox[:, None] + torch.arange(w, device=x.device)  # (B, W)
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.flatten(2).gather(2, index).view(b, c, h, w)


def random_hflip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_erasing(
    x: torch.Tensor, p: float, scale: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3)
) -> torch.Tensor:
    """RandomErasing (Zhong et al. 2020; torchvision's defaults, value 0) with one box per image.

    Area and log-aspect are drawn as torchvision does; boxes that would not fit are
    clipped to the image rather than redrawn.
    """
    if p <= 0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    area = h * w * torch.empty(b, device=dev).uniform_(*scale)
    aspect = torch.exp(torch.empty(b, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    eh = torch.sqrt(area * aspect).round().clamp(1, h).long()
    ew = torch.sqrt(area / aspect).round().clamp(1, w).long()
    top = (torch.rand(b, device=dev) * (h - eh + 1)).long()
    left = (torch.rand(b, device=dev) * (w - ew + 1)).long()
    ys = torch.arange(h, device=dev)[None, :, None]
    xs = torch.arange(w, device=dev)[None, None, :]
    inside = (
        (ys >= top[:, None, None])
        & (ys < (top + eh)[:, None, None])
        & (xs >= left[:, None, None])
        & (xs < (left + ew)[:, None, None])
    )
    apply = (torch.rand(b, device=dev) < p)[:, None, None]
    return x.masked_fill((inside & apply)[:, None], 0.0)


class BatchAugment:
    """The per-batch part of the recipe; ``clean=True`` switches Mixup/CutMix off."""

    def __init__(self, cfg: dict, num_classes: int, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.aug = cfg["augment"]
        self.mean, self.std = mean, std
        self.num_classes = num_classes
        mixes = []
        if cfg["mixup_alpha"] > 0:
            mixes.append(v2.MixUp(alpha=cfg["mixup_alpha"], num_classes=num_classes))
        if cfg["cutmix_alpha"] > 0:
            mixes.append(v2.CutMix(alpha=cfg["cutmix_alpha"], num_classes=num_classes))
        self.mix = v2.RandomChoice(mixes) if mixes else None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, clean: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images + int labels -> normalised float images + soft targets (B, K)."""
        x = random_crop(images, self.aug["crop_padding"])
        if self.aug["hflip"]:
            x = random_hflip(x)
        x = random_erasing(normalize(x, self.mean, self.std), self.aug["erasing_p"])
        if self.mix is not None and not clean:
            return self.mix(x, labels)
        return x, torch.nn.functional.one_hot(labels, self.num_classes).float()
