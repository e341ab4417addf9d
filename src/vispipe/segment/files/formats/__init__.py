"""A video's tracked masks in the files the tools people annotate and train with read
(``segment.export.formats``): one module per format, each named in
:data:`vispipe.segment.registry.FORMATS`, each with a ``Writer(out_dir, meta, frames_dir, target,
video_url, options)`` (``options``: its own key of ``segment.export``, if any) that takes the frames' id images one at a time (``add(k, ids)``), then ``close()`` ->
the name it wrote (``discard()`` drops what it kept on disk).

They all read the same things: the id PNGs (one per kept frame, 0 = background, instance ``i`` =
track ``i``), ``meta.json`` (frame files, times, sizes) and ``tracks.json`` (the target). This module
holds what several share (the outlines of a mask, items kept per track) and :func:`export`, which
writes the configured ones into ``export/`` whole or not at all, in one pass over the frames. The masks as COCO with video and track ids are in
``masks.rle.json``, which propagate writes (:mod:`..coco`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ....io import Spool
from ... import registry
from ..masks import atomic_dir, read_id_mask
from ..tracks import frames

FORMATS = tuple(registry.FORMATS)


def polygons(mask: np.ndarray) -> list[np.ndarray]:
    """The outer outline (N, 2) of each part of a boolean mask, as OpenCV traces it (holes filled). A
    part too thin for a polygon (a line or a dot: an object entering as a sliver, whose outline has
    fewer than 3 points) gets its pixels' box instead, corner to corner, so that no format drops a
    frame the PNGs have."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c[:, 0, :] if len(c) >= 3 else _box(c[:, 0, :]) for c in contours]


def _box(points: np.ndarray) -> np.ndarray:
    """The 4 corners of the pixels' box around ``points`` (pixel centres), in image coordinates: a
    polygon whose area covers those pixels."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0) + 1
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], points.dtype)


def largest_polygon(mask: np.ndarray) -> np.ndarray | None:
    """The outline of the largest part of a boolean mask; None if empty."""
    return max(polygons(mask), key=cv2.contourArea, default=None)


def export(formats: list[str], masks_dir: Path, meta: dict, tracks_path: Path, tracks: dict, frames_dir: Path,
           out_dir: Path, video_url: str | None = None, options: dict | None = None) -> list[str]:  # fmt: skip
    """Write each of ``formats`` into ``out_dir`` (all or nothing), in one pass over the frames: each
    format's ``Writer`` takes them one at a time, so memory does not grow with the video. ``options``:
    ``segment.export`` (each format's own key goes to its writer). Returns what was written."""
    target, options = tracks["target"], options or {}
    with atomic_dir(out_dir) as tmp:
        writers = [registry.load(registry.FORMATS, name).Writer(tmp, meta, frames_dir, target, video_url,
                                                                options.get(name) or {})
                   for name in registry.FORMATS if name in formats]  # in the registry's order  # fmt: skip
        try:
            for k, entry in enumerate(frames(tracks_path, tracks)):
                ids = read_id_mask(masks_dir / entry["file"])
                for writer in writers:
                    writer.add(k, ids)
            return [writer.close() for writer in writers]
        finally:
            for writer in writers:
                writer.discard()


class PerTrack:
    """Items kept per track id on disk until the end (:class:`vispipe.io.Spool`), for the formats that
    list a track's frames together (CVAT's tracks, Label Studio's regions) but read the frames in order."""

    def __init__(self, near: Path):
        self.near, self.spools = near, {}

    def append(self, track_id: int, item) -> None:
        if track_id not in self.spools:
            self.spools[track_id] = Spool(self.near)
        self.spools[track_id].append(item)

    def __iter__(self):
        """(track id, its items) in id order."""
        return iter(sorted(self.spools.items()))

    def close(self) -> None:
        for spool in self.spools.values():
            spool.close()
