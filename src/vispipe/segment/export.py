"""A video's tracked masks for the tools people annotate and train with (``segment.export.formats``).

From the id PNGs (one per kept frame, 0 = background, instance ``i`` = track ``i``), ``meta.json``
(frame files, times, sizes) and ``tracks.json`` (the target), into ``export/``:

- ``yolo``: the Ultralytics segmentation layout, ``yolo/images/<frame>`` (links to the kept frames),
  ``yolo/labels/<frame>.txt`` (``class x1 y1 x2 y2 ...``, normalised polygons, one line per part of
  a mask, OpenCV's outer contours) and ``yolo/data.yaml``; YOLO has no track ids. (supervision's
  converter, tried first, fails on masks with holes: "No foreground-contained seam found for a
  mask hole" on the demo's; its importer is the test's reader.)
- ``cvat``: ``cvat.xml``, CVAT for video 1.1: one ``<track>`` per instance, a polygon keyframe on
  every frame it is seen (its largest part), and ``outside="1"`` on the frame after it leaves.
- ``label_studio``: ``label_studio.json``, a Label Studio task for its video object tracking
  template (``<Video name="video">`` + ``<VideoRectangle name="box">``): one ``videorectangle``
  region per instance with a box per frame (Label Studio tracks boxes, not masks in video), frames
  counted from 1, ``enabled: false`` on the last frame before a gap so that it does not
  interpolate across it.

The masks as COCO with video and track ids stay in ``masks.rle.json`` (propagate writes it).
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import yaml

from .masks import atomic_dir, read_id_mask

FORMATS = ("yolo", "cvat", "label_studio")


def _track_ids(ids: list[np.ndarray]) -> list[int]:
    """Every instance id the PNGs show on some frame."""
    return sorted({int(i) for frame_ids in ids for i in np.unique(frame_ids) if i})


def polygons(mask: np.ndarray) -> list[np.ndarray]:
    """The outer outline (N, 2) of each part of a boolean mask, as OpenCV traces it (holes filled)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c[:, 0, :] for c in contours if len(c) >= 3]


def largest_polygon(mask: np.ndarray) -> np.ndarray | None:
    """The outline of the largest part of a boolean mask; None if empty."""
    return max(polygons(mask), key=cv2.contourArea, default=None)


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


def _points(polygon: np.ndarray) -> str:
    return ";".join(f"{x:.2f},{y:.2f}" for x, y in polygon.astype(float))


def cvat_video(path: Path, ids: list[np.ndarray], meta: dict, target: str) -> None:
    """CVAT for video 1.1: a track per instance, keyframes where it is seen, outside where it is not."""
    height, width = meta["source"]["height"], meta["source"]["width"]
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    for key, value in (("name", f"{Path(meta['video']).name} {target}"), ("size", len(ids)),
                       ("mode", "interpolation"), ("start_frame", 0), ("stop_frame", max(len(ids) - 1, 0))):  # fmt: skip
        ET.SubElement(task, key).text = str(value)
    label = ET.SubElement(ET.SubElement(task, "labels"), "label")
    ET.SubElement(label, "name").text = target
    ET.SubElement(label, "type").text = "polygon"
    size = ET.SubElement(task, "original_size")
    ET.SubElement(size, "width").text, ET.SubElement(size, "height").text = str(width), str(height)
    for track_id in _track_ids(ids):
        track = ET.SubElement(root, "track", id=str(track_id - 1), label=target, source="auto")
        last = None  # the last polygon written, repeated with outside="1" where the instance is not seen
        for k, frame_ids in enumerate(ids):
            polygon = largest_polygon(frame_ids == track_id)
            if polygon is not None:
                last = polygon
                outside = "0"
            elif last is not None and track[-1].get("outside") == "0":
                polygon, outside = last, "1"  # it left: CVAT hides it from here until the next keyframe
            else:
                continue
            ET.SubElement(track, "polygon", frame=str(k), keyframe="1", outside=outside, occluded="0",
                          points=_points(polygon), z_order="0")  # fmt: skip
    ET.indent(root)
    path.write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def label_studio_video(path: Path, ids: list[np.ndarray], meta: dict, target: str, video_url: str) -> None:
    """One Label Studio task: the video and a ``videorectangle`` region per instance."""
    height, width = meta["source"]["height"], meta["source"]["width"]
    fps = float(Fraction(meta["output_fps"]))  # "25/2" for 25 fps at stride 2
    times = meta.get("times_s") or [k / fps for k in range(len(ids))]
    duration = times[-1] + 1 / fps if times else 0.0
    regions = []
    for track_id in _track_ids(ids):
        sequence = []
        for k, frame_ids in enumerate(ids):
            mask = frame_ids == track_id
            if not mask.any():
                if sequence and sequence[-1]["enabled"]:
                    sequence[-1]["enabled"] = False  # no interpolation into the gap
                continue
            x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
            sequence.append({"frame": k + 1, "enabled": True, "rotation": 0, "time": round(times[k], 6),
                             "x": 100 * x / width, "y": 100 * y / height,
                             "width": 100 * w / width, "height": 100 * h / height})  # fmt: skip
        regions.append({
            "id": f"{target}_{track_id}", "type": "videorectangle", "from_name": "box", "to_name": "video",
            "origin": "prediction", "meta": {"track_id": track_id},
            "value": {"framesCount": len(ids), "duration": round(duration, 6), "sequence": sequence,
                      "labels": [target]},
        })  # fmt: skip
    task = {"data": {"video": video_url}, "predictions": [{"model_version": "vispipe", "result": regions}]}
    path.write_text(json.dumps([task], indent=1))


def export(formats: list[str], masks_dir: Path, meta: dict, tracks: dict, frames_dir: Path, out_dir: Path,
           video_url: str | None = None) -> list[str]:  # fmt: skip
    """Write each of ``formats`` into ``out_dir`` (all or nothing); return what was written."""
    target = tracks["target"]
    ids = [read_id_mask(masks_dir / f["file"]) for f in tracks["frames"]]
    written = []
    with atomic_dir(out_dir) as tmp:
        if "yolo" in formats:
            yolo(tmp / "yolo", ids, meta, frames_dir, target)
            written.append("yolo/")
        if "cvat" in formats:
            cvat_video(tmp / "cvat.xml", ids, meta, target)
            written.append("cvat.xml")
        if "label_studio" in formats:
            url = video_url or str(Path(meta["video"]).resolve())
            label_studio_video(tmp / "label_studio.json", ids, meta, target, url)
            written.append("label_studio.json")
    return written
