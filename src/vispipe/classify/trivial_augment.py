"""TrivialAugmentWide (Müller & Hutter, 2021) for a whole batch at once, each image its own op.

torchvision's ``TrivialAugmentWide`` draws one op and one magnitude per call, so it must see
one image at a time: on the CPU, in DataLoader workers. Here every image of a batch draws its
own op, magnitude bin and sign from the same distribution (op uniform over torchvision's 14,
bin uniform over 31, sign flipped with probability 1/2 for signed ops). The images are then
grouped by (op, magnitude), and each group goes through torchvision's own implementation of
that op in one batched call. The result equals torchvision applied image by image
(``tests/test_classify_train.py`` checks every op and magnitude), and it runs wherever the
images are: on the GPU, a training set held in device memory is augmented without a copy
to the host. Large batches (a whole epoch) make few, large groups: at most 14 x 61.
"""

from __future__ import annotations

from functools import cache

import torch
from torchvision.transforms import v2

NUM_BINS = 31
_TAW = v2.TrivialAugmentWide(num_magnitude_bins=NUM_BINS)  # interpolation nearest, fill 0: the defaults
OPS: tuple[str, ...] = tuple(_TAW._AUGMENTATION_SPACE)


@cache
def magnitude_table(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's magnitude bins per op as a float64 (ops, bins) table, and which ops are signed.

    Built once per image size; treat the tensors as read-only."""
    rows, signed = [], []
    for fn, is_signed in _TAW._AUGMENTATION_SPACE.values():
        m = fn(NUM_BINS, height, width)
        # float32 bins become the same Python floats torchvision's float(magnitudes[i]) gives
        rows.append(torch.zeros(NUM_BINS, dtype=torch.float64) if m is None else m.to(torch.float64))
        signed.append(is_signed and m is not None)
    return torch.stack(rows), torch.tensor(signed)


def sample_params(n: int, height: int, width: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """Draw (op index, bin, negate) for ``n`` images from the global RNG of ``device``."""
    op = torch.randint(len(OPS), (n,), device=device)
    bins = torch.randint(NUM_BINS, (n,), device=device)
    _, signed = magnitude_table(height, width)
    negate = (torch.rand(n, device=device) <= 0.5) & signed.to(device)[op]
    return op, bins, negate


def apply_op(images: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
    """One op at one magnitude on a batch of uint8 NCHW images: torchvision's code path."""
    return _TAW._apply_image_or_video_transform(
        images, op, magnitude, interpolation=_TAW.interpolation, fill=_TAW._fill
    )


def trivial_augment_wide(
    images: torch.Tensor, op: torch.Tensor, bins: torch.Tensor, negate: torch.Tensor
) -> torch.Tensor:
    """Apply each image's (op, bin, sign) to uint8 NCHW ``images``; returns a new tensor.

    One host synchronisation per call (the group sizes), not one per image.
    """
    table, _ = magnitude_table(*images.shape[-2:])
    key = (op * NUM_BINS + bins) * 2 + negate.long()
    order = torch.argsort(key)
    keys, counts = torch.unique_consecutive(key[order], return_counts=True)
    out = torch.empty_like(images)
    start = 0
    for k, c in zip(keys.tolist(), counts.tolist()):
        idx = order[start : start + c]
        start += c
        o, b, neg = k // (2 * NUM_BINS), (k // 2) % NUM_BINS, k % 2
        magnitude = float(table[o, b]) * (-1.0 if neg else 1.0)
        out[idx] = apply_op(images[idx], OPS[o], magnitude)
    return out


def random_trivial_augment_wide(images: torch.Tensor) -> torch.Tensor:
    """Every image its own random TrivialAugmentWide op (global RNG of the images' device)."""
    return trivial_augment_wide(images, *sample_params(len(images), *images.shape[-2:], device=images.device))
