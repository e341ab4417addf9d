#!/usr/bin/env python
"""Classification benchmarks, each against a peer in the same run; prints a table, writes JSON.

1. Input pipeline: our split (TrivialAugmentWide per image on uint8 tensors, then crop/flip/
   normalise/erase batched on the device) against the seed's recipe (PIL images through
   torchvision transforms in a DataLoader, ToTensor/Normalize/RandomErasing per image).
2. Student step: our DistilledViT against timm's VisionTransformer of the same width, depth
   and heads (patch 4, 32x32): forward+backward images/s and parameter counts.

    python bench/classify.py [--images 4096] [--workers 0] [--device auto] [--out bench/out/classify.json]

Real CIFAR-10 images are used when ../shared/data/cifar10-jpeg.tar.gz or --data is given, else
the digits demo data. Numbers depend on the machine: compare the ratio column, not the rates.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from vispipe.classify.augment import BatchAugment, to_nchw, train_batches
from vispipe.classify.data import from_digits, from_folder, stratified_subset
from vispipe.classify.models import build_model, count_params
from vispipe.runtime import pick_device

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
RECIPE = {
    "augment": {"trivial_augment": True, "crop_padding": 4, "hflip": True, "erasing_p": 0.25},
    "mixup_alpha": 0.4,
    "cutmix_alpha": 1.0,
}


class SeedDataset(Dataset):
    """The seed notebook's input path: PIL image -> torchvision transforms, one image at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.tf = T.Compose([
            T.TrivialAugmentWide(), T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
            T.ToTensor(), T.Normalize(MEAN, STD), T.RandomErasing(p=0.25),
        ])  # fmt: skip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.tf(Image.fromarray(self.images[i])), int(self.labels[i])


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench_input(images: np.ndarray, labels: np.ndarray, batch: int, workers: int, device: torch.device) -> dict:
    x, y = to_nchw(images), torch.from_numpy(labels)
    mean, std = torch.tensor(MEAN, device=device), torch.tensor(STD, device=device)
    aug = BatchAugment(RECIPE, 10, mean, std)

    def ours():
        for imgs, lbls in train_batches(x, y, batch, True, workers, seed=0):
            out, _ = aug(imgs.to(device, non_blocking=True), lbls.to(device, non_blocking=True), clean=False)

    def seed():
        loader = DataLoader(
            SeedDataset(images, labels), batch_size=batch, shuffle=True, drop_last=True, num_workers=workers
        )
        for imgs, lbls in loader:
            imgs, lbls = imgs.to(device, non_blocking=True), lbls.to(device, non_blocking=True)

    n = (len(labels) // batch) * batch
    t_ours, t_seed = timed(ours, device), timed(seed, device)
    return {"images": n, "ours_img_s": n / t_ours, "seed_img_s": n / t_seed, "speedup": t_seed / t_ours}


def bench_student(dim: int, depth: int, heads: int, batch: int, steps: int, device: torch.device) -> dict:
    import timm

    arch = dict(arch="vit", image_size=32, patch_size=4, dim=dim, depth=depth, heads=heads, mlp_ratio=4,
                class_attn_blocks=min(4, depth - 1), dropout=0.05, drop_path=0.15)  # fmt: skip
    ours = build_model(arch, 10).to(device)
    peer = timm.models.vision_transformer.VisionTransformer(
        img_size=32,
        patch_size=4,
        num_classes=10,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        drop_rate=0.05,
        drop_path_rate=0.15,
    ).to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    amp = device.type == "cuda"

    def run(model):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # warm-up
        return timed(lambda: [step() for _ in range(steps)], device)

    t_ours, t_peer = run(ours), run(peer)
    return {
        "dim": dim, "depth": depth, "heads": heads, "batch": batch,
        "ours_params": count_params(ours), "timm_params": count_params(peer),
        "ours_img_s": batch * steps / t_ours, "timm_img_s": batch * steps / t_peer, "ratio": t_peer / t_ours,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg.tar.gz"
    p.add_argument(
        "--data",
        type=Path,
        default=default_data if default_data.exists() else None,
        help="CIFAR-10 folder/archive (default: digits)",
    )
    p.add_argument("--images", type=int, default=4096, help="images per input-pipeline pass")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers for both pipelines")
    p.add_argument("--batch", type=int, default=192)
    p.add_argument("--steps", type=int, default=5, help="training steps per student measurement")
    p.add_argument("--student", default="256,12,8", help="dim,depth,heads of the student (seed: 256,12,8)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("bench/out/classify.json"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)

    if args.data:
        split, source = from_folder(args.data)["train"], f"CIFAR-10 ({args.data.name})"
    else:
        split, source = from_digits(0)["train"], "digits (demo)"
    split = stratified_subset(split, args.images, seed=0)
    inp = bench_input(split.images, split.labels, args.batch, args.workers, device)
    dim, depth, heads = map(int, args.student.split(","))
    stu = bench_student(
        dim, depth, heads, min(args.batch, 64) if device.type == "cpu" else args.batch, args.steps, device
    )

    print(
        f"\ndevice: {device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), data: {source}"
    )
    print("\n| benchmark | ours (img/s) | peer (img/s) | ours / peer |")
    print("|---|---:|---:|---:|")
    print(
        f"| input pipeline, {inp['images']} imgs, {args.workers} workers vs seed PIL/DataLoader | {inp['ours_img_s']:.0f} | {inp['seed_img_s']:.0f} | {inp['speedup']:.2f}x |"
    )
    print(
        f"| student train step ({dim}/{depth}/{heads}, {stu['ours_params'] / 1e6:.2f}M) vs timm ViT ({stu['timm_params'] / 1e6:.2f}M) | {stu['ours_img_s']:.0f} | {stu['timm_img_s']:.0f} | {stu['ratio']:.2f}x |"
    )
    result = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "data": source,
        "input_pipeline": inp,
        "student_step": stu,
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
