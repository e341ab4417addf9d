"""FLOPs per training image and model FLOPs utilisation (MFU), for benchmarks and the GPU check.

FLOPs come from the models themselves (``torch.utils.flop_counter``: matmuls, convolutions,
attention), counted for one forward and backward pass; a distilling student adds its
teacher's forward. MFU is achieved FLOP/s over the GPU's dense bf16 peak from its data
sheet (no sparsity); ``None`` where the peak is not known (and on the CPU).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

# Dense (not sparse) bf16 tensor-core peaks in FLOP/s, from NVIDIA's data sheets; matched by substring.
PEAK_BF16 = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 80GB HBM3": 989e12,  # the SXM part's name as CUDA reports it
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 756e12,  # other H100 names: assume the slower PCIe part
    "GH200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
}


def peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named like ``torch.cuda.get_device_name()``, if known."""
    for key, peak in PEAK_BF16.items():  # the more specific names come first
        if key in device_name:
            return peak
    return None


def train_flops_per_image(
    model: nn.Module, image_size: int = 32, teacher: nn.Module | None = None, batch: int = 2
) -> float:
    """FLOPs of one training image: the model's forward and backward, plus the teacher's forward."""
    device = next(model.parameters()).device
    x = torch.randn(batch, 3, image_size, image_size, device=device)
    was_training = model.training
    model.train()
    with FlopCounterMode(display=False) as counter:
        out = model.forward_heads(x) if teacher is not None else model(x)
        loss = sum(o.float().sum() for o in out) if isinstance(out, tuple) else out.float().sum()
        loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    total = counter.get_total_flops()
    if teacher is not None:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            teacher(x)
        total += counter.get_total_flops()
    return total / batch


def mfu(flops_per_image: float, images_per_s: float, device_name: str) -> float | None:
    """Achieved over peak FLOP/s (0..1), or None when the device's peak is unknown."""
    peak = peak_flops(device_name)
    return None if peak is None else flops_per_image * images_per_s / peak
