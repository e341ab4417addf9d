"""``masks.rle.json``: a target's masks as COCO run-length encoding with video and track ids, as TAO
writes them: pycocotools reads it as plain COCO, video tools (TAO's, MOTS-style evaluations) group
the annotations by ``video_id`` and ``track_id`` (= the instance id). Propagate writes it beside the
id PNGs, each mask as the PNGs show it (where masks overlap, the lower id)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...io import Spool, write_json_streamed
from ..geometry import box_xyxy
from .masks import encode_rle


class VideoCoco:
    """The COCO document of one video's masks, frame by frame (:meth:`add`), then whole (:meth:`write`):
    the images and annotations wait on disk (:class:`vispipe.io.Spool`), so memory does not grow
    with the video."""

    def __init__(self, meta: dict, target: str, near: Path):
        self.meta, self.target = meta, target
        self.height, self.width = meta["source"]["height"], meta["source"]["width"]
        self.images, self.annotations = Spool(near), Spool(near)
        self.track_ids: set[int] = set()

    def add(self, k: int, ids: np.ndarray, masks: dict[int, np.ndarray], info: dict[int, dict]) -> None:
        """Kept frame ``k``: its id image, the instances' masks and their tracks.json entries."""
        meta = self.meta
        self.images.append({"id": k, "file_name": meta["files"][k], "width": self.width, "height": self.height,
                            "source_index": meta["kept"][k], "video_id": 1, "frame_index": k})  # fmt: skip
        for i in sorted(masks):  # each instance as the PNG shows it (where masks overlap, the lower id)
            mask = ids == i
            if not mask.any():
                continue  # wholly behind a lower id on this frame
            x0, y0, x1, y1 = box_xyxy(mask)
            self.annotations.append({
                "id": self.annotations.count + 1, "image_id": k, "category_id": 1, "instance_id": i, "track_id": i,
                "video_id": 1, "segmentation": encode_rle(mask), "area": int(mask.sum()),
                "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0, "state": info[i]["state"],
            })  # fmt: skip
            self.track_ids.add(i)

    def write(self, path: Path, weights: dict) -> None:
        """``masks.rle.json``, written item by item from the spools (the bytes ``json.dumps`` would write)."""
        meta, target = self.meta, self.target
        doc = {
            "info": {"description": f"{target} masks of {meta['video']} (COCO RLE, pycocotools; video and track ids as TAO;"
                            " each mask as the id PNGs show it)",
                     "weights": weights},
            "videos": [{"id": 1, "name": meta["video"], "width": self.width, "height": self.height,
                        "length": self.images.count}],
            "images": self.images, "annotations": self.annotations, "categories": [{"id": 1, "name": target}],
            "tracks": [{"id": t, "category_id": 1, "video_id": 1} for t in sorted(self.track_ids)],
        }  # fmt: skip
        try:
            write_json_streamed(path, doc)
        finally:
            self.close()

    def close(self) -> None:
        self.images.close()
        self.annotations.close()
