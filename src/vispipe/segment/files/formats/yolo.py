"""``segment.export.formats: [yolo]``: the Ultralytics segmentation layout, ``yolo/images/<frame>``
(relative links to the kept frames; copies with ``segment.export.yolo.copy_images``, for a dataset
moved to another machine), ``yolo/labels/<frame>.txt`` (``class x1 y1 x2 y2 ...``, normalised
polygons, one line per part of a mask, OpenCV's outer contours; a part too thin for one, its box)
and ``yolo/data.yaml``, without a ``path:`` line: Ultralytics then resolves ``images`` against the
file's own folder, from any working directory. YOLO has no track ids. (supervision's converter, tried first, fails on masks with holes: "No foreground-contained
seam found for a mask hole" on the demo's; its importer is the test's reader.)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import yaml

from . import polygons


class Writer:
    """``out_dir/yolo``, frame by frame."""

    def __init__(self, out_dir: Path, meta: dict, frames_dir: Path, target: str, video_url: str | None = None,
                 options: dict | None = None):  # fmt: skip
        self.out, self.meta, self.frames_dir, self.target = out_dir / "yolo", meta, frames_dir, target
        self.copy = bool((options or {}).get("copy_images", False))
        (self.out / "images").mkdir(parents=True)
        (self.out / "labels").mkdir()

    def add(self, k: int, ids: np.ndarray) -> None:
        out, name = self.out, self.meta["files"][k]
        if self.copy:  # the frame's bytes (a frame folder's own file, where it was linked)
            shutil.copyfile(self.frames_dir / name, out / "images" / name)
        else:
            os.symlink(os.path.relpath(self.frames_dir.resolve() / name, out / "images"), out / "images" / name)
        (out / "labels" / f"{Path(name).stem}.txt").write_text("".join(f"{line}\n" for line in yolo_lines(ids)))

    def close(self) -> str:
        # no "path": Ultralytics takes the yaml's folder (a "path: ." is the working directory's)
        data = {"train": "images", "val": "images", "names": {0: self.target}}
        (self.out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        return "yolo/"

    def discard(self) -> None:
        pass  # everything is in out_dir, which appears whole or not at all


def yolo_lines(frame_ids: np.ndarray) -> list[str]:
    """One ``0 x1 y1 x2 y2 ...`` line (normalised) per part of each instance on one frame (a YOLO
    polygon has no holes)."""
    h, w = frame_ids.shape
    return [
        "0 " + " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in poly)
        for i in np.unique(frame_ids) if i
        for poly in polygons(frame_ids == i)
    ]  # fmt: skip
