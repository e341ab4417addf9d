"""``segment.export.formats: [yolo]``: the Ultralytics segmentation layout, ``yolo/images/<frame>``
(links to the kept frames), ``yolo/labels/<frame>.txt`` (``class x1 y1 x2 y2 ...``, normalised
polygons, one line per part of a mask, OpenCV's outer contours) and ``yolo/data.yaml``; YOLO has no
track ids. (supervision's converter, tried first, fails on masks with holes: "No foreground-contained
seam found for a mask hole" on the demo's; its importer is the test's reader.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml

from . import polygons


def write(out_dir: Path, ids: list[np.ndarray], meta: dict, frames_dir: Path, target: str, video_url=None) -> str:
    yolo(out_dir / "yolo", ids, meta, frames_dir, target)
    return "yolo/"


def yolo_lines(frame_ids: np.ndarray) -> list[str]:
    """One ``0 x1 y1 x2 y2 ...`` line (normalised) per part of each instance on one frame (a YOLO
    polygon has no holes)."""
    h, w = frame_ids.shape
    return [
        "0 " + " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in poly)
        for i in np.unique(frame_ids) if i
        for poly in polygons(frame_ids == i)
    ]  # fmt: skip


def yolo(out: Path, ids: list[np.ndarray], meta: dict, frames_dir: Path, target: str) -> None:
    """``out/images``, ``out/labels``, ``out/data.yaml`` (one class: the target)."""
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    for name, frame_ids in zip(meta["files"], ids):
        os.symlink(os.path.relpath(frames_dir.resolve() / name, out / "images"), out / "images" / name)
        (out / "labels" / f"{Path(name).stem}.txt").write_text("".join(f"{line}\n" for line in yolo_lines(frame_ids)))
    data = {"path": ".", "train": "images", "val": "images", "names": {0: target}}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
