"""The batched, on-device TrivialAugmentWide against torchvision's functional ops, image by image."""

import math

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from vispipe.classify import trivial_augment as ta
from vispipe.classify.augment import device_batches, train_batches
from vispipe.classify.data import from_digits

NEAREST = InterpolationMode.NEAREST


def reference(img: torch.Tensor, op: str, m: float) -> torch.Tensor:
    """What torchvision's TrivialAugmentWide does to one image for (op, signed magnitude), via the public API."""
    affine = dict(angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, 0.0], interpolation=NEAREST, fill=None)
    if op == "Identity":
        return img
    if op == "ShearX":
        return TF.affine(img, **{**affine, "shear": [math.degrees(math.atan(m)), 0.0]}, center=[0, 0])
    if op == "ShearY":
        return TF.affine(img, **{**affine, "shear": [0.0, math.degrees(math.atan(m))]}, center=[0, 0])
    if op == "TranslateX":
        return TF.affine(img, **{**affine, "translate": [int(m), 0]})
    if op == "TranslateY":
        return TF.affine(img, **{**affine, "translate": [0, int(m)]})
    if op == "Rotate":
        return TF.rotate(img, angle=m, interpolation=NEAREST, fill=None)
    if op == "Brightness":
        return TF.adjust_brightness(img, 1.0 + m)
    if op == "Color":
        return TF.adjust_saturation(img, 1.0 + m)
    if op == "Contrast":
        return TF.adjust_contrast(img, 1.0 + m)
    if op == "Sharpness":
        return TF.adjust_sharpness(img, 1.0 + m)
    if op == "Posterize":
        return TF.posterize(img, int(m))
    if op == "Solarize":
        return TF.solarize(img, 255.0 * m)
    if op == "AutoContrast":
        return TF.autocontrast(img)
    if op == "Equalize":
        return TF.equalize(img)
    raise AssertionError(f"torchvision has an op this test does not know: {op}")


@pytest.fixture(scope="module")
def images():
    """Real pictures (digits upscaled to 32x32 RGB, tinted per channel so colour ops act) plus noise."""
    split = from_digits(0)["train"]
    x = torch.from_numpy(split.images[:6]).permute(0, 3, 1, 2).contiguous()
    x = (x.float() * torch.tensor([1.0, 0.6, 0.3])[None, :, None, None] + 20).clamp(0, 255).to(torch.uint8)
    noise = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return torch.cat([x, noise])


def test_op_set_and_bins_are_torchvisions():
    assert ta.OPS == tuple(v2.TrivialAugmentWide._AUGMENTATION_SPACE)
    assert len(ta.OPS) == 14 and ta.NUM_BINS == 31
    table, signed = ta.magnitude_table(32, 32)
    assert table[ta.OPS.index("Rotate")].tolist()[-1] == 135.0 and table[ta.OPS.index("TranslateX")].max() == 32.0
    assert table[ta.OPS.index("Posterize")].tolist()[:2] == [8.0, 8.0] and table[ta.OPS.index("Posterize")][-1] == 2
    assert [ta.OPS[i] for i in range(14) if signed[i]] == [
        "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness",
    ]  # fmt: skip


def test_every_op_and_magnitude_equals_torchvision_image_by_image(images):
    table, signed = ta.magnitude_table(32, 32)
    n = len(images)
    for o, name in enumerate(ta.OPS):
        for b in range(ta.NUM_BINS):
            for neg in (False, True) if signed[o] else (False,):
                out = ta.trivial_augment_wide(images, torch.full((n,), o), torch.full((n,), b), torch.full((n,), neg))
                m = float(table[o, b]) * (-1.0 if neg else 1.0)
                for i in range(n):
                    assert torch.equal(out[i], reference(images[i], name, m)), (name, b, neg, i)


def test_each_image_of_a_batch_gets_its_own_op(images):
    torch.manual_seed(1)
    x = images.repeat(75, 1, 1, 1)  # 600 images: every op many times over, mixed in one call
    op, bins, neg = ta.sample_params(len(x), 32, 32)
    out = ta.trivial_augment_wide(x, op, bins, neg)
    table, _ = ta.magnitude_table(32, 32)
    for i in range(len(x)):
        m = float(table[op[i], bins[i]]) * (-1.0 if neg[i] else 1.0)
        assert torch.equal(out[i], reference(x[i], ta.OPS[op[i]], m)), i
    assert len(set(op.tolist())) == 14  # so every op went through the grouped path together with others


def test_parameters_follow_torchvisions_distribution():
    torch.manual_seed(0)
    n = 14 * 31 * 40
    op, bins, neg = ta.sample_params(n, 32, 32)
    _, signed = ta.magnitude_table(32, 32)
    counts = np.bincount(op.numpy(), minlength=14)
    assert counts.min() > 0.85 * n / 14 and counts.max() < 1.15 * n / 14  # uniform over the 14 ops
    assert np.bincount(bins.numpy(), minlength=31).min() > 0.8 * n / 31  # uniform over the 31 bins
    assert not neg[~signed[op]].any()  # unsigned ops are never negated ...
    assert 0.45 < neg[signed[op]].float().mean() < 0.55  # ... signed ones half the time


def test_device_batches_shuffle_each_image_once_in_whole_batches():
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 3, 4, 4).contiguous()
    labels = torch.arange(100)
    batches = list(device_batches(images, labels, 12, trivial_augment=False, chunk=30))  # chunk -> 24
    assert len(batches) == 8 and all(len(y) == 12 for _, y in batches)
    seen = torch.cat([y for _, y in batches])
    assert len(set(seen.tolist())) == 96 and seen.tolist() != sorted(seen.tolist())
    assert all(torch.equal(x[:, 0, 0, 0].long(), y) for x, y in batches)  # images stay with their labels
    again = [y.tolist() for _, y in train_batches(images, labels, 12, False, 0, seed=5)]
    assert again == [y.tolist() for _, y in train_batches(images, labels, 12, False, 0, seed=5)]  # seeded


def test_trivial_augment_on_device_batches_changes_images_and_keeps_dtype(images):
    labels = torch.arange(len(images))
    x, y = next(iter(device_batches(images, labels, len(images), trivial_augment=True)))
    assert x.dtype == torch.uint8 and x.shape == images.shape
    assert any(not torch.equal(x[i], images[y[i]]) for i in range(len(y)))
