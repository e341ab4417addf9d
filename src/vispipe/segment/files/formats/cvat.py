"""``segment.export.formats: [cvat]``: ``cvat.xml``, CVAT for video 1.1: one ``<track>`` per instance,
a polygon keyframe on every frame it is seen (its largest part; a part too thin for a polygon, its
box), and ``outside="1"`` on the frame after it leaves.

Which CVAT task it fits (``segment.export.cvat.frames``; the file says so in a comment and in its
task's meta): ``kept`` (default) numbers the kept frames 0, 1, 2, ...: create the task from the
images in the video's ``frames/`` folder. ``source`` numbers them by the source video's frames, as
CVAT writes and reads a task made from the video with a frame step (CVAT's frame = start frame +
task frame x step): create the task from the source video with start frame 0 and frame step =
``segment.frames.stride``.

The frames come in order but the file lists each track's together: each track's polygons wait on disk
(:class:`.PerTrack`) and the file is written at the end, element by element, as ElementTree indents
it, so memory does not grow with the video.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from . import PerTrack, largest_polygon


class Writer:
    """``out_dir/cvat.xml``: a track per instance, keyframes where it is seen, outside where it is not."""

    def __init__(self, out_dir: Path, meta: dict, frames_dir: Path, target: str, video_url: str | None = None,
                 options: dict | None = None):  # fmt: skip
        self.path, self.meta, self.target = out_dir / "cvat.xml", meta, target
        self.source = (options or {}).get("frames", "kept") == "source"
        self.polygons = PerTrack(self.path)  # track id -> [frame, outside, points]
        self.last: dict[int, tuple[str, str]] = {}  # track id -> (its last points, that element's outside)

    def add(self, k: int, ids: np.ndarray) -> None:
        seen = {int(i) for i in np.unique(ids) if i}
        for track_id in sorted(seen | set(self.last)):
            polygon = largest_polygon(ids == track_id) if track_id in seen else None
            if polygon is not None:
                points, outside = _points(polygon), "0"
            elif track_id in self.last and self.last[track_id][1] == "0":
                points, outside = self.last[track_id][0], "1"  # it left: CVAT hides it until the next keyframe
            else:
                continue
            self.last[track_id] = (points, outside)
            self.polygons.append(track_id, [self.meta["kept"][k] if self.source else k, outside, points])

    def close(self) -> str:
        meta, target, count = self.meta, self.target, self.meta["count"]
        root = ET.Element("annotations")
        ET.SubElement(root, "version").text = "1.1"
        task = ET.SubElement(ET.SubElement(root, "meta"), "task")
        if self.source:  # the task CVAT makes from the source video, every stride-th frame
            stride = meta.get("stride", 1)
            numbering = [("start_frame", 0), ("stop_frame", meta["kept"][-1] if count else 0),
                         ("frame_filter", f"step={stride}")]  # fmt: skip
            fits = f"a task made from {Path(meta['video']).name} with start frame 0 and frame step {stride}"
        else:
            numbering = [("start_frame", 0), ("stop_frame", max(count - 1, 0))]
            fits = f"a task made from the {count} kept frames' images (the video's frames/ folder), in name order"
        for key, value in (("name", f"{Path(meta['video']).name} {target}"), ("size", count), ("mode", "interpolation"),
                           *numbering):  # fmt: skip
            ET.SubElement(task, key).text = str(value)
        label = ET.SubElement(ET.SubElement(task, "labels"), "label")
        ET.SubElement(label, "name").text = target
        ET.SubElement(label, "type").text = "polygon"
        size = ET.SubElement(task, "original_size")
        ET.SubElement(size, "width").text = str(meta["source"]["width"])
        ET.SubElement(size, "height").text = str(meta["source"]["height"])
        ET.indent(root)
        head = ET.tostring(root, encoding="unicode")  # ... </meta>\n</annotations>: the tracks go before the end
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(f"<?xml version='1.0' encoding='utf-8'?>\n<!-- frame numbers fit {fits} -->\n")
            f.write(head[: head.rindex("\n</annotations>")])
            for track_id, polygons in self.polygons:
                track = ET.Element("track", id=str(track_id - 1), label=target, source="auto")
                f.write("\n  " + ET.tostring(track, encoding="unicode").replace(" />", ">"))
                for frame, outside, points in polygons:
                    element = ET.Element("polygon", frame=str(frame), outside=outside, occluded="0", keyframe="1",
                                         points=points, z_order="0")  # CVAT's order  # fmt: skip
                    f.write("\n    " + ET.tostring(element, encoding="unicode"))
                f.write("\n  </track>")
            f.write("\n</annotations>")
        self.polygons.close()
        return "cvat.xml"

    def discard(self) -> None:
        self.polygons.close()


def _points(polygon: np.ndarray) -> str:
    return ";".join(f"{x:.2f},{y:.2f}" for x, y in polygon.astype(float))
