"""A video's tracked masks in the files the tools people annotate and train with read
(``segment.export.formats``): one module per format, each named in
:data:`vispipe.segment.registry.FORMATS`, each with ``write(out_dir, ids, meta, frames_dir, target,
video_url) -> the name it wrote``.

They all read the same things: the id PNGs (one per kept frame, 0 = background, instance ``i`` =
track ``i``), ``meta.json`` (frame files, times, sizes) and ``tracks.json`` (the target). This module
holds what several share (the outlines of a mask) and :func:`export`, which writes the configured
ones into ``export/`` whole or not at all. The masks as COCO with video and track ids are in
``masks.rle.json``, which propagate writes (:mod:`..coco`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ... import registry
from ..masks import atomic_dir, read_id_mask

FORMATS = tuple(registry.FORMATS)


def track_ids(ids: list[np.ndarray]) -> list[int]:
    """Every instance id the PNGs show on some frame."""
    return sorted({int(i) for frame_ids in ids for i in np.unique(frame_ids) if i})


def polygons(mask: np.ndarray) -> list[np.ndarray]:
    """The outer outline (N, 2) of each part of a boolean mask, as OpenCV traces it (holes filled)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c[:, 0, :] for c in contours if len(c) >= 3]


def largest_polygon(mask: np.ndarray) -> np.ndarray | None:
    """The outline of the largest part of a boolean mask; None if empty."""
    return max(polygons(mask), key=cv2.contourArea, default=None)


def export(formats: list[str], masks_dir: Path, meta: dict, tracks: dict, frames_dir: Path, out_dir: Path,
           video_url: str | None = None) -> list[str]:  # fmt: skip
    """Write each of ``formats`` into ``out_dir`` (all or nothing); return what was written."""
    target = tracks["target"]
    ids = [read_id_mask(masks_dir / f["file"]) for f in tracks["frames"]]
    written = []
    with atomic_dir(out_dir) as tmp:
        for name in (f for f in registry.FORMATS if f in formats):  # in the registry's order
            written.append(registry.load(registry.FORMATS, name).write(tmp, ids, meta, frames_dir, target, video_url))
    return written
