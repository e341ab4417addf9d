"""``segment.export.formats: [cvat]``: ``cvat.xml``, CVAT for video 1.1: one ``<track>`` per instance,
a polygon keyframe on every frame it is seen (its largest part), and ``outside="1"`` on the frame
after it leaves.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from . import largest_polygon, track_ids


def write(out_dir: Path, ids: list[np.ndarray], meta: dict, frames_dir: Path, target: str, video_url=None) -> str:
    cvat_video(out_dir / "cvat.xml", ids, meta, target)
    return "cvat.xml"


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
    for track_id in track_ids(ids):
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
