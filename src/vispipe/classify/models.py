"""Build a model from its ``model`` config block, count parameters, load checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..errors import UserError
from .resnet import ResNet
from .vit import DistilledViT


def build_model(arch: dict, num_classes: int) -> nn.Module:
    """A model from a ``classify.{teacher,student}.model`` block."""
    kwargs = {k: v for k, v in arch.items() if k != "arch"}
    if arch["arch"] == "vit":
        return DistilledViT(num_classes=num_classes, **kwargs)
    if arch["arch"] == "resnet":
        return ResNet(num_classes=num_classes, **kwargs)
    raise ValueError(f"unknown arch {arch['arch']!r}")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def param_breakdown(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per top-level child (and per block kind for ``blocks``)."""
    out: dict[str, int] = {}
    for name, child in model.named_children():
        if name == "blocks":
            for blk in child:
                kind = "class-attention blocks" if getattr(blk, "class_attention", False) else "self-attention blocks"
                out[kind] = out.get(kind, 0) + count_params(blk)
        else:
            out[name] = count_params(child)
    for name, p in model.named_parameters(recurse=False):
        out[name] = p.numel()
    return out


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Load a checkpoint written by training (``weights_only``: no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; run the training rule that writes it first")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises several types for broken files
        raise UserError(f"{path} is not a readable checkpoint ({e}); delete it and rerun its training rule") from e
    model = build_model(ckpt["arch"], len(ckpt["classes"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt
