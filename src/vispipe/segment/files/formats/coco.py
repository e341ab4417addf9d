"""``segment.export.formats: [coco]``: ``coco/``, the COCO layout datumaro's ``coco_instances`` importer
(``datum``, ``Dataset.import_from(".../export/coco", "coco_instances")``) reads as it is:
``coco/annotations/instances_default.json`` (subset ``default``) and ``coco/images/default/<frame>``,
the file names the JSON gives. Each mask is a COCO RLE (exact, holes kept) with its box; its track
is in the annotation's ``attributes``, where datumaro's COCO importer keeps it (CVAT's COCO export
writes it there too): ``{"track_id": <the id PNG's value>, "keyframe": true, "occluded": false}``
(``cvat.xml`` numbers the same tracks from 0, as CVAT does: track_id - 1). Every kept frame is an
image, with or without masks.

The images are hard links to the kept frames (the same bytes, no second copy on disk), copies where
the file system will not link them (another device, a frame folder of someone else's files): the
export holds its own images, so it outlives ``segment.keep_frames: false`` and can be moved.
Symbolic links would not do: datumaro resolves them and refuses an image whose real path leaves the
images folder ("escapes base directory").

The images and annotations wait on disk (:class:`vispipe.io.Spool`) until the JSON is written, item
by item, at the end, so memory does not grow with the video. ``masks.rle.json`` beside the id PNGs
(:mod:`..coco`) holds the same masks, TAO style (video and track ids as fields), for pycocotools and
video tools; this folder is the layout datumaro and the tools built on it read.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ....io import Spool, write_json_streamed
from ...geometry import box_xyxy
from ..masks import encode_rle

SUBSET = "default"  # datumaro names the subset after the file (instances_<subset>.json); its own default


class Writer:
    """``out_dir/coco``: ``annotations/instances_default.json`` and ``images/default/``, frame by frame."""

    def __init__(self, out_dir: Path, meta: dict, frames_dir: Path, target: str, video_url: str | None = None,
                 options: dict | None = None):  # fmt: skip
        self.meta, self.frames_dir, self.target = meta, frames_dir, target
        self.images_dir = out_dir / "coco" / "images" / SUBSET
        self.path = out_dir / "coco" / "annotations" / f"instances_{SUBSET}.json"
        self.images_dir.mkdir(parents=True)
        self.path.parent.mkdir()
        self.images, self.annotations = Spool(self.path), Spool(self.path)

    def add(self, k: int, ids: np.ndarray) -> None:
        name = self.meta["files"][k]
        place(self.frames_dir / name, self.images_dir / name)
        height, width = ids.shape
        self.images.append({"id": k + 1, "file_name": name, "width": width, "height": height})
        for i in np.unique(ids):
            if not i:
                continue
            mask = ids == i
            x0, y0, x1, y1 = box_xyxy(mask)
            self.annotations.append({
                "id": self.annotations.count + 1, "image_id": k + 1, "category_id": 1,
                "segmentation": encode_rle(mask), "area": int(mask.sum()), "bbox": [x0, y0, x1 - x0, y1 - y0],
                "iscrowd": 0, "attributes": {"track_id": int(i), "keyframe": True, "occluded": False},
            })  # fmt: skip

    def close(self) -> str:
        doc = {
            "info": {"description": f"{self.target} masks of {Path(self.meta['video']).name} (COCO RLE; track ids"
                                    " in each annotation's attributes, where datumaro keeps them)"},
            "licenses": [],
            "categories": [{"id": 1, "name": self.target, "supercategory": ""}],
            "images": self.images, "annotations": self.annotations,
        }  # fmt: skip
        try:
            write_json_streamed(self.path, doc)
        finally:
            self.discard()
        return "coco/"

    def discard(self) -> None:
        self.images.close()
        self.annotations.close()


def place(frame: Path, image: Path) -> None:
    """``image``: a hard link to ``frame`` (to its file, where ``frame`` is a symbolic link), or a copy
    where the file system refuses one."""
    try:
        os.link(os.path.realpath(frame), image)  # the file itself: os.link may link a symbolic link as such
    except OSError:  # another device, or (protected_hardlinks) a file this user may not link
        shutil.copyfile(frame, image)
