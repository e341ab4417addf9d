"""``segment.export.formats: [label_studio]``: ``label_studio.json``, a Label Studio task for its video
object tracking template (``<Video name="video">`` + ``<VideoRectangle name="box">``): one
``videorectangle`` region per instance with a box per frame (Label Studio tracks boxes, not masks in
video), frames counted from 1, ``enabled: false`` on the last frame before a gap so that it does not
interpolate across it.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from . import track_ids


def write(out_dir: Path, ids: list[np.ndarray], meta: dict, frames_dir: Path, target: str,
          video_url: str | None = None) -> str:  # fmt: skip
    url = video_url or str(Path(meta["video"]).resolve())
    label_studio_video(out_dir / "label_studio.json", ids, meta, target, url)
    return "label_studio.json"


def label_studio_video(path: Path, ids: list[np.ndarray], meta: dict, target: str, video_url: str) -> None:
    """One Label Studio task: the video and a ``videorectangle`` region per instance."""
    height, width = meta["source"]["height"], meta["source"]["width"]
    fps = float(Fraction(meta["output_fps"]))  # "25/2" for 25 fps at stride 2
    times = meta.get("times_s") or [k / fps for k in range(len(ids))]
    duration = times[-1] + 1 / fps if times else 0.0
    regions = []
    for track_id in track_ids(ids):
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
