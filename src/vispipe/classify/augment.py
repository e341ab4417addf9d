"""Training augmentation, split where it runs best.

- Per image, in DataLoader workers: torchvision's ``TrivialAugmentWide`` on uint8 tensors
  (its ops draw one magnitude per call, so they must see one image at a time).
- Per batch, on the training device: random crop with zero padding, horizontal flip,
  normalisation, random erasing (each image draws its own parameters, vectorised), then
  Mixup or CutMix (torchvision v2, one mix per batch as in timm and DeiT).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2


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


def train_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    trivial_augment: bool,
    num_workers: int,
    seed: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled uint8 batches (last partial batch dropped), seeded by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    if not trivial_augment:  # nothing per image: slice the in-memory tensors directly
        order = torch.randperm(len(labels), generator=gen)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            yield images[idx], labels[idx]
        return
    loader = DataLoader(
        UInt8Images(images, labels, trivial_augment),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
        generator=gen,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )
    yield from loader


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float, standardised per channel."""
    return (x.float() / 255.0 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """RandomCrop(size, padding, fill=0) with an independent offset per image."""
    if padding <= 0:
        return x
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    oy = torch.randint(0, 2 * padding + 1, (b,), device=x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B,1,H,1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B,1,1,W)
    bidx = torch.arange(b, device=x.device)[:, None, None, None]
    cidx = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[bidx, cidx, rows, cols]


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
