"""``segment.export.formats: [label_studio]``: ``label_studio.json``, a Label Studio task for its video
object tracking template (``<Video name="video">`` + ``<VideoRectangle name="box">``): one
``videorectangle`` region per instance with a box per frame (Label Studio tracks boxes, not masks in
video), frames counted from 1, ``enabled: false`` on the last frame before a gap so that it does not
interpolate across it.

Label Studio places a box's frame n at (n - 1) / the ``<Video>`` tag's ``framerate`` seconds (24 when
the tag has none), and our frames count the kept frames: ``label_studio.xml`` beside the task is the
labeling config to create the project with, its ``framerate`` the source's fps / the stride, so that
kept frame k shows at its time in the source video (a variable-rate phone video: at its mean rate).

Each region's boxes wait on disk (:class:`.PerTrack`) until the file is written, item by item, at
the end (:func:`vispipe.io.dump_json`), so memory does not grow with the video.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from ....io import dump_json
from ...geometry import box_xyxy
from . import PerTrack


class Writer:
    """``out_dir/label_studio.json``: the video (``video_url``, default the source's absolute path)
    and a ``videorectangle`` region per instance."""

    def __init__(self, out_dir: Path, meta: dict, frames_dir: Path, target: str, video_url: str | None = None,
                 options: dict | None = None):  # fmt: skip
        self.path, self.meta, self.target = out_dir / "label_studio.json", meta, target
        self.url = video_url or str(Path(meta["video"]).resolve())
        fps = float(Fraction(meta["output_fps"]))  # "25/2" for 25 fps at stride 2
        self.fps, self.times = fps, meta.get("times_s")
        self.boxes = PerTrack(self.path)
        self.pending: dict[int, dict] = {}  # track id -> its last box, not yet kept (a gap may disable it)

    def add(self, k: int, ids: np.ndarray) -> None:
        height, width = ids.shape
        seen = {int(i) for i in np.unique(ids) if i}
        for track_id in sorted(seen | set(self.pending)):
            if track_id not in seen:
                self.pending[track_id]["enabled"] = False  # no interpolation into the gap
                continue
            if track_id in self.pending:
                self.boxes.append(track_id, self.pending[track_id])
            x0, y0, x1, y1 = box_xyxy(ids == track_id)
            time = self.times[k] if self.times else k / self.fps
            self.pending[track_id] = {"frame": k + 1, "enabled": True, "rotation": 0, "time": round(time, 6),
                                      "x": 100 * x0 / width, "y": 100 * y0 / height,
                                      "width": 100 * (x1 - x0) / width, "height": 100 * (y1 - y0) / height}  # fmt: skip

    def close(self) -> str:
        for track_id, box in self.pending.items():
            self.boxes.append(track_id, box)
        count, target = self.meta["count"], self.target
        last = self.times[-1] if self.times else (count - 1) / self.fps
        duration = last + 1 / self.fps if count else 0.0
        regions = [
            {"id": f"{target}_{track_id}", "type": "videorectangle", "from_name": "box", "to_name": "video",
             "origin": "prediction", "meta": {"track_id": track_id},
             "value": {"framesCount": count, "duration": round(duration, 6), "sequence": boxes, "labels": [target]}}
            for track_id, boxes in self.boxes
        ]  # fmt: skip
        task = {"data": {"video": self.url}, "predictions": [{"model_version": "vispipe", "result": regions}]}
        with open(self.path, "w") as f:
            dump_json([task], f, indent=1)
        self.boxes.close()
        self.path.with_name(CONFIG).write_text(labeling_config(target, self.fps))
        return "label_studio.json"

    def discard(self) -> None:
        self.boxes.close()


CONFIG = "label_studio.xml"


def labeling_config(target: str, fps: float) -> str:
    """Label Studio's labeling config for the task: its video object tracking template, the names the
    regions use (``video``, ``box``), the target as the label and the kept frames' rate."""
    from xml.sax.saxutils import quoteattr

    return (
        "<View>\n"
        f'  <Labels name="label" toName="video" allowEmpty="true"><Label value={quoteattr(target)}/></Labels>\n'
        f'  <Video name="video" value="$video" framerate="{round(fps, 6)}"/>\n'
        '  <VideoRectangle name="box" toName="video"/>\n'
        "</View>\n"
    )
