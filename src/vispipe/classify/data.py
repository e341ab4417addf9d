"""Image-classification data in one format, whatever the source.

Every source (the official CIFAR-10 download, an image folder or archive, scikit-learn's
digits) becomes ``{train,test}.npz`` holding ``images`` (uint8, N x H x W x 3),
``labels`` (int64, N) and ``classes`` (str, K). Training and evaluation read only that.
"""

from __future__ import annotations

import io
import logging
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import UserError
from ..io import atomic_path

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm"}


class DataError(UserError, ValueError):
    """The source data is missing or malformed; the message names the file and the fix."""


@dataclass
class Split:
    images: np.ndarray  # uint8 (N, H, W, 3)
    labels: np.ndarray  # int64 (N,)
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise DataError(f"images must be uint8 N x H x W x 3, got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(f"labels must lie in [0, {len(self.classes)})")

    def __len__(self) -> int:
        return len(self.labels)


def save_split(split: Split, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, images=split.images, labels=split.labels, classes=np.array(split.classes))


def load_split(path: str | Path) -> Split:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; run the fetch_cifar10 rule (or scripts/fetch_cifar10.py) first")
    try:
        with np.load(path, allow_pickle=False) as z:
            return Split(z["images"], z["labels"].astype(np.int64), [str(c) for c in z["classes"]])
    # a truncated or corrupt archive raises BadZipFile, EOFError or zlib.error, not OSError
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(
            f"{path} is truncated, corrupt or not a dataset written by the fetch_cifar10 rule ({e}); "
            "delete it and rerun the fetch_cifar10 rule (or scripts/fetch_cifar10.py)"
        ) from e


def stratified_subset(split: Split, n: int | None, seed: int) -> Split:
    """Keep ``n`` samples with the class proportions of ``split`` (seeded); None keeps all."""
    if n is None or n >= len(split):
        return split
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    for c in range(len(split.classes)):
        idx = np.flatnonzero(split.labels == c)
        k = int(round(n * len(idx) / len(split)))
        keep.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    order = np.sort(np.concatenate(keep))
    return Split(split.images[order], split.labels[order], split.classes)


# --- sources -------------------------------------------------------------------------


def from_cifar10(root: str | Path) -> dict[str, Split]:
    """Download CIFAR-10 with torchvision (checks the archive's MD5) and read both splits."""
    from torchvision.datasets import CIFAR10

    out = {}
    for split in SPLITS:
        try:
            ds = CIFAR10(str(root), train=split == "train", download=True)
        except (OSError, RuntimeError) as e:
            raise DataError(
                f"could not download CIFAR-10 into {root} ({e}). Without internet, put "
                "cifar-10-python.tar.gz there, or use data.source: folder with an offline copy"
            ) from e
        out[split] = Split(
            np.asarray(ds.data, dtype=np.uint8), np.asarray(ds.targets, dtype=np.int64), list(ds.classes)
        )
    return out


def _check_size(size: int, name: str, max_bytes: int | None) -> None:
    """A file (or archive member) larger than ``max_bytes`` is refused before it is read."""
    if max_bytes is not None and size > max_bytes:
        raise DataError(f"{name} is {size / 2**20:,.1f} MB, more than classify.data.max_file_mb "
                        f"({max_bytes / 2**20:g} MB): no image of a dataset is that large; remove it, or raise the key")  # fmt: skip


def _iter_folder(path: Path, max_bytes: int | None = None) -> Iterator[tuple[str, bytes, str]]:
    """Yield (relative path, file bytes, display name) for image files in a dir or archive; one over
    ``max_bytes`` is an error before its bytes are read (its size is in the folder's or the
    archive's listing)."""
    if path.is_dir():
        for f in sorted(path.rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                _check_size(f.stat().st_size, str(f), max_bytes)
                yield f.relative_to(path).as_posix(), f.read_bytes(), str(f)
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            for m in tar:
                if m.isfile() and Path(m.name).suffix.lower() in IMAGE_SUFFIXES:
                    _check_size(m.size, f"{path}:{m.name}", max_bytes)
                    yield m.name.lstrip("./"), tar.extractfile(m).read(), f"{path}:{m.name}"
    else:
        raise DataError(f"{path} is neither a folder nor a .tar/.tar.gz archive")


def from_folder(path: str | Path, max_file_mb: float | None = None) -> dict[str, Split]:
    """Read ``{train,test}/<class>/<image>`` from a directory or tar archive.

    Class names are the sorted folder names (torchvision's ImageFolder convention), so
    an offline copy of CIFAR-10 keeps the official label order.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"data.path {path} does not exist; point it at a folder or archive with train/<class>/* and test/<class>/*"
        )
    found: dict[str, list[tuple[str, np.ndarray]]] = {s: [] for s in SPLITS}
    max_bytes = None if max_file_mb is None else int(max_file_mb * 2**20)
    for rel, blob, name in tqdm(_iter_folder(path, max_bytes), desc=f"reading {path.name}", unit="img", mininterval=2):
        parts = rel.split("/")
        # accept an extra top-level folder (archive/train/cls/img.jpg)
        while parts and parts[0] not in SPLITS:
            parts = parts[1:]
        if len(parts) != 3:
            continue
        try:
            img = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
        except Exception as e:  # PIL raises several types for broken files
            raise DataError(f"cannot decode image {name}: {e}") from e
        found[parts[0]].append((parts[1], img))
    missing = [s for s in SPLITS if not found[s]]
    if missing:
        raise DataError(
            f"{path} has no images under {', '.join(missing)}/<class>/; expected train/<class>/* and test/<class>/*"
        )
    classes = sorted({c for s in SPLITS for c, _ in found[s]})
    out = {}
    for s in SPLITS:
        shapes = {img.shape for _, img in found[s]}
        if len(shapes) != 1:
            raise DataError(
                f"{path}: images in {s}/ differ in size {sorted(shapes)[:3]}; resize them to one size first"
            )
        images = np.stack([img for _, img in found[s]])
        labels = np.array([classes.index(c) for c, _ in found[s]], dtype=np.int64)
        out[s] = Split(images, labels, classes)
    return out


def from_digits(seed: int, test_fraction: float = 0.2, size: int = 32) -> dict[str, Split]:
    """scikit-learn's 8x8 digits (1,797 images) upscaled to ``size`` x ``size`` RGB: the offline demo."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
    labels = d.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=labels)
    classes = [str(c) for c in d.target_names]
    return {"train": Split(images[tr], labels[tr], classes), "test": Split(images[te], labels[te], classes)}


def prepare(cfg: dict, seed: int, download_root: str | Path = "data/downloads") -> dict[str, Split]:
    """Build both splits from the ``classify.data`` config block."""
    source = cfg["source"]
    if source == "cifar10":
        splits = from_cifar10(cfg["path"] or download_root)
    elif source == "folder":
        if not cfg["path"]:
            raise DataError("data.source is folder but data.path is null; set it to the folder or archive to read")
        splits = from_folder(cfg["path"], cfg.get("max_file_mb"))
    elif source == "digits":
        splits = from_digits(seed)
    else:  # the schema rejects this first
        raise DataError(f"unknown data.source {source!r}")
    splits["train"] = stratified_subset(splits["train"], cfg["limit_train"], seed)
    splits["test"] = stratified_subset(splits["test"], cfg["limit_test"], seed + 1)
    return splits
