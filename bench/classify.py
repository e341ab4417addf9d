#!/usr/bin/env python
"""Classification benchmarks, each against a peer in the same run; prints a table, writes JSON.

1. Input pipeline: ours (the training set on the device, TrivialAugmentWide per image but
   batched there, then crop/flip/normalise/erase batched) against the seed's recipe (PIL
   images through torchvision transforms in a DataLoader, ToTensor/Normalize/RandomErasing
   per image). With --workers N > 0 both also run with N DataLoader workers (our worker path
   augments on the CPU with torchvision's TrivialAugmentWide, image by image).
2. Student step: our DistilledViT against timm's VisionTransformer of the same width, depth
   and heads (patch 4, 32x32): forward+backward images/s, parameters, FLOPs and (on a GPU) MFU.
   On CUDA both run under bf16 autocast, and --compile also times both under torch.compile.

    python bench/classify.py [--images 8192] [--threads 1] [--workers 0] [--device auto] [--out bench/out/classify.json]

`--threads 1 --workers 0` gives per-core figures. Real CIFAR-10 images are used when
../shared/data/cifar10-jpeg.tar.gz or --data is given, else the digits demo data. Numbers
depend on the machine: compare the ratio column, not the rates.
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
from vispipe.classify.flops import mfu, train_flops_per_image
from vispipe.classify.models import build_model, count_params
from vispipe.classify.train import autocast_dtype
from vispipe.runtime import device_name, pick_device

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
    """Images/s of one epoch's augmentation, ours and the seed's, delivered as batches on ``device``."""
    x, y = to_nchw(images), torch.from_numpy(labels)
    mean, std = torch.tensor(MEAN, device=device), torch.tensor(STD, device=device)
    aug = BatchAugment(RECIPE, 10, mean, std)
    x_dev, y_dev = x.to(device), y.to(device)  # the device path holds the set there, once

    def ours(n_workers: int):
        src = (x_dev, y_dev) if n_workers == 0 else (x, y)
        for imgs, lbls in train_batches(*src, batch, True, n_workers, seed=0):
            out, _ = aug(imgs.to(device, non_blocking=True), lbls.to(device, non_blocking=True), clean=False)

    def seed(n_workers: int):
        loader = DataLoader(
            SeedDataset(images, labels), batch_size=batch, shuffle=True, drop_last=True, num_workers=n_workers
        )
        for imgs, lbls in loader:
            imgs, lbls = imgs.to(device, non_blocking=True), lbls.to(device, non_blocking=True)

    n = (len(labels) // batch) * batch
    ours(0)  # warm-up (allocator, kernels)
    out = {"images": n, "workers": workers}
    out["ours_img_s"] = n / timed(lambda: ours(0), device)
    out["seed_img_s"] = n / timed(lambda: seed(0), device)
    out["speedup"] = out["ours_img_s"] / out["seed_img_s"]
    if workers:
        out["ours_workers_img_s"] = n / timed(lambda: ours(workers), device)
        out["seed_workers_img_s"] = n / timed(lambda: seed(workers), device)
    return out


def bench_student(
    dim: int, depth: int, heads: int, batch: int, steps: int, device: torch.device, compile: bool = False
) -> dict:
    """Training images/s of our student and timm's ViT of the same width, depth and heads."""
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
    amp = autocast_dtype(device, True)
    fused = {"fused": True} if device.type == "cuda" else {}

    def run(model, compiled: bool):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **fused)
        fwd = torch.compile(model) if compiled else model

        def step():
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                loss = torch.nn.functional.cross_entropy(fwd(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(3 if compiled else 1):  # warm-up (and compilation)
            step()
        return batch * steps / timed(lambda: [step() for _ in range(steps)], device)

    name = device_name(device)
    f_ours, f_peer = train_flops_per_image(ours), train_flops_per_image(peer)
    out = {
        "dim": dim, "depth": depth, "heads": heads, "batch": batch,
        "ours_params": count_params(ours), "timm_params": count_params(peer),
        "ours_gflop_per_img": f_ours / 1e9, "timm_gflop_per_img": f_peer / 1e9,
    }  # fmt: skip
    for mode in ["eager"] + (["compiled"] if compile else []):
        a, b = run(ours, mode == "compiled"), run(peer, mode == "compiled")
        out[mode] = {
            "ours_img_s": a, "timm_img_s": b, "ratio": a / b,
            "ours_mfu": mfu(f_ours, a, name), "timm_mfu": mfu(f_peer, b, name),
        }  # fmt: skip
    return out


def load_images(data: Path | None, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    if data:
        split, source = from_folder(data)["train"], f"CIFAR-10 ({data.name})"
    else:
        split, source = from_digits(0)["train"], "digits (demo)"
    split = stratified_subset(split, n, seed=0)
    return split.images, split.labels, source


def table(inp: dict, stu: dict, workers: int) -> str:
    rows = ["| benchmark | ours (img/s) | peer (img/s) | ours / peer |", "|---|---:|---:|---:|"]
    rows.append(
        f"| input pipeline, {inp['images']} imgs, in-process vs seed PIL/DataLoader (0 workers) "
        f"| {inp['ours_img_s']:.0f} | {inp['seed_img_s']:.0f} | {inp['speedup']:.2f}x |"
    )
    if workers:
        rows.append(
            f"| input pipeline, our worker path vs seed, {workers} workers each "
            f"| {inp['ours_workers_img_s']:.0f} | {inp['seed_workers_img_s']:.0f} "
            f"| {inp['ours_workers_img_s'] / inp['seed_workers_img_s']:.2f}x |"
        )
    for mode in ("eager", "compiled"):
        if mode in stu:
            m = stu[mode]
            util = f", MFU {m['ours_mfu']:.1%} vs {m['timm_mfu']:.1%}" if m["ours_mfu"] is not None else ""
            rows.append(
                f"| student train step {mode} ({stu['dim']}/{stu['depth']}/{stu['heads']}, "
                f"{stu['ours_params'] / 1e6:.2f}M, {stu['ours_gflop_per_img']:.2f} GFLOP/img) vs timm ViT "
                f"({stu['timm_params'] / 1e6:.2f}M, {stu['timm_gflop_per_img']:.2f} GFLOP/img){util} "
                f"| {m['ours_img_s']:.0f} | {m['timm_img_s']:.0f} | {m['ratio']:.2f}x |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg.tar.gz"
    p.add_argument(
        "--data",
        type=Path,
        default=default_data if default_data.exists() else None,
        help="CIFAR-10 folder/archive (default: digits)",
    )
    p.add_argument("--images", type=int, default=8192, help="images per input-pipeline pass")
    p.add_argument("--workers", type=int, default=0, help="also time both pipelines with this many DataLoader workers")
    p.add_argument("--batch", type=int, default=192)
    p.add_argument("--steps", type=int, default=5, help="training steps per student measurement")
    p.add_argument("--student", default="256,12,8", help="dim,depth,heads of the student (seed: 256,12,8)")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="also time both students under torch.compile")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("bench/out/classify.json"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)

    images, labels, source = load_images(args.data, args.images)
    inp = bench_input(images, labels, args.batch, args.workers, device)
    dim, depth, heads = map(int, args.student.split(","))
    batch = min(args.batch, 64) if device.type == "cpu" else args.batch
    stu = bench_student(dim, depth, heads, batch, args.steps, device, compile=args.compile)

    name = device_name(device)
    print(
        f"\ndevice: {name} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), data: {source}\n"
    )
    print(table(inp, stu, args.workers))
    result = {
        "device": name,
        "threads": torch.get_num_threads(),
        "data": source,
        "input_pipeline": inp,
        "student_step": stu,
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
