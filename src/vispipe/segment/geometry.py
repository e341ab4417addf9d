"""Boxes and masks compared: IoU, non-maximum suppression, and the one Hungarian assignment.

Every detector, tracker, the association and the evaluation compare instances with these, so that a
box's convention (``[x0, y0, x1, y1]``, x1 and y1 exclusive) and an IoU mean one thing everywhere.
NumPy (SciPy for the assignment; torchvision for NMS, imported where it runs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def box_xyxy(mask: np.ndarray) -> list[int]:
    """Tight box ``[x0, y0, x1, y1]`` (x1, y1 exclusive) of a boolean mask; ``[0, 0, 0, 0]`` when empty
    (as OpenCV's ``boundingRect``)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def box_area(box: Sequence[float]) -> float:
    """Area of an xyxy box."""
    return max(box[2] - box[0], 0) * max(box[3] - box[1], 0)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy boxes."""
    iw, ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0])), max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = box_area(a) + box_area(b) - iw * ih
    return float(iw * ih / union) if union > 0 else 0.0


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; 0 when both are empty."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def pair_iou(pred: np.ndarray, gt: np.ndarray, gt_ids: Sequence[int], pred_ids: Sequence[int]) -> np.ndarray:
    """The mask IoU of every (ground-truth id, predicted id) pair of two id images of one frame,
    ``(len(gt_ids), len(pred_ids))``; 0 where neither is present. One joint histogram of the two
    images, not a pass over the pixels per pair (300 objects: 90,000 pairs)."""

    def index(ids_image: np.ndarray, ids: Sequence[int]) -> np.ndarray:  # id -> 1..n, anything else 0
        lut = np.zeros(max(int(ids_image.max(initial=0)), max(ids, default=0)) + 1, np.int64)
        lut[list(ids)] = np.arange(1, len(ids) + 1)
        return lut[ids_image]

    n_g, n_p = len(gt_ids), len(pred_ids)
    joint = index(gt, gt_ids) * (n_p + 1) + index(pred, pred_ids)
    counts = np.bincount(joint.ravel(), minlength=(n_g + 1) * (n_p + 1)).reshape(n_g + 1, n_p + 1)
    inter = counts[1:, 1:].astype(np.float64)
    union = counts[1:, :].sum(1)[:, None] + counts[:, 1:].sum(0)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def assign(score: np.ndarray) -> list[tuple[int, int]]:
    """The one-to-one (row, column) pairs that maximise the summed ``score`` (Hungarian; Kuhn 1955,
    SciPy's ``linear_sum_assignment``), in row order. Callers drop the pairs their gate refuses."""
    from scipy.optimize import linear_sum_assignment

    if not score.size:
        return []
    rows, cols = linear_sum_assignment(-score)
    return [(int(r), int(c)) for r, c in zip(rows, cols)]


def keep_boxes(boxes, scores, size: tuple[int, int], nms_iou: float, max_instances: int, valid=None,
               min_side: float | None = None) -> list[int]:  # fmt: skip
    """Boxes (a float tensor ``(N, 4)``, xyxy) clipped to an image of ``size`` (h, w) in place, then
    one class-agnostic NMS (``torchvision.ops.nms``) over those ``valid`` (a bool tensor; default all)
    and, with ``min_side``, at least that wide and high once clipped: the indices kept, best first, at
    most ``max_instances``."""
    import torch
    from torchvision.ops import nms

    h, w = size
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    if valid is None:
        valid = torch.ones(len(boxes), dtype=torch.bool)
    if min_side is not None:
        valid = valid & ((boxes[:, 2] - boxes[:, 0]) >= min_side) & ((boxes[:, 3] - boxes[:, 1]) >= min_side)
    index = torch.nonzero(valid).flatten()
    keep = index[nms(boxes[index], scores[index], nms_iou)] if len(index) else index  # sorted by score
    return keep[:max_instances].tolist()
