"""What the box detectors (Grounding DINO, OWLv2) share: their boxes kept (clipped, one NMS across
phrases) and turned into :class:`~vispipe.segment.types.Instances` that SAM2 draws from the box alone,
as Grounded-SAM-2 does."""

from __future__ import annotations

import numpy as np

from ..geometry import keep_boxes
from ..types import Box, Instances


def kept_boxes(boxes, scores, phrases: list[str], size: tuple[int, int], nms_iou: float,
               max_instances: int) -> list[Box]:  # fmt: skip
    """Clip to the image, drop empty boxes, NMS across phrases, best ``max_instances`` first."""
    boxes, scores = boxes.float().clone(), scores.float()
    keep = keep_boxes(boxes, scores, size, nms_iou, max_instances, min_side=1)
    return [Box([round(float(v), 2) for v in boxes[i]], round(float(scores[i]), 4), phrases[i]) for i in keep]


def refines(knobs: dict) -> bool:
    """SAM2 draws every box's mask."""
    return True


def box_instances(boxes: list[Box], shape: tuple[int, int], key: str, knobs: dict) -> Instances:
    """A box detector's boxes as instances: each box filled is its region, SAM2 draws its mask;
    ``key``: the knob the detector thresholded its scores at."""
    threshold = {"method": key, "value": knobs[key]}
    regions = []
    for b in boxes:
        region = np.zeros(shape, bool)
        x0, y0, x1, y1 = (round(v) for v in b.xyxy)
        region[y0:y1, x0:x1] = True
        regions.append(region)
    info = [{"detector_score": b.score, "detector_box": b.xyxy, "phrase": b.phrase} for b in boxes]
    return Instances(regions, info, threshold, "boxes", boxes=boxes)


def box_detector(find_boxes, key: str):
    """A box detector's ``detect``: ``find_boxes(model, image, phrases, knobs) -> list[Box]`` as
    :class:`~vispipe.segment.types.Instances`, thresholded at the knob ``key``."""

    def detect(model, image: np.ndarray, phrases: list[str], knobs: dict) -> Instances:
        return box_instances(find_boxes(model, image, phrases, knobs), image.shape[:2], key, knobs)

    return detect
