"""J (region IoU), F (boundary F-measure) and J&F of predicted instance masks against ground truth,
the DAVIS definitions as the ``vos-benchmark`` scorer computes them (tests compare the two).

- J of one object on one frame: IoU of the predicted and true masks; 1 when both are empty.
- F: the boundaries of both masks (one pixel wide, DAVIS's ``seg2bmap``) are matched within a disk of
  radius ``ceil(0.008 * image diagonal)``; F is the harmonic mean of boundary precision and recall.
- Means over frames skip the first frame (it is given to the tracker) and the last (DAVIS 2017's
  convention, which vos-benchmark keeps); the per-frame table holds every frame.
- An object counts from the first frame where it appears (in the ground truth or as its matched
  prediction), as vos-benchmark counts it: an object that enters late is not scored as a perfect
  "both empty" before it exists.

Predicted ids need not equal the ground truth's: they are matched once per video, one to one, by
the largest IoU summed over all frames (Hungarian), so a tracker is scored on keeping its objects,
not on numbering them like the annotator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd

from ..geometry import assign, pair_iou

BOUNDARY = 0.008  # DAVIS: boundary tolerance as a fraction of the image diagonal


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a binary mask (DAVIS's ``seg2bmap`` at full resolution)."""
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: int) -> np.ndarray:
    """The structuring element ``skimage.morphology.disk`` makes: pixels with x² + y² <= r²."""
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def region_j(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def boundary_f(pred: np.ndarray, gt: np.ndarray, boundary: float = BOUNDARY) -> float:
    radius = int(math.ceil(boundary * math.hypot(*pred.shape)))
    kernel = disk(radius)
    pb, gb = seg2bmap(pred), seg2bmap(gt)
    n_p, n_g = int(pb.sum()), int(gb.sum())
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0  # precision or recall is 0 (DAVIS: P=1,R=0 or P=0,R=1)
    precision = (pb & (cv2.dilate(gb.astype(np.uint8), kernel) > 0)).sum() / n_p
    recall = (gb & (cv2.dilate(pb.astype(np.uint8), kernel) > 0)).sum() / n_g
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def match_ids(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray]) -> dict[int, int]:
    """{ground-truth id: predicted id}, one to one, maximising the IoU summed over frames."""
    gt_ids = sorted({int(i) for g in gt for i in np.unique(g) if i})
    pred_ids = sorted({int(i) for p in pred for i in np.unique(p) if i})
    if not gt_ids or not pred_ids:
        return {}
    score = sum(pair_iou(p, g, gt_ids, pred_ids) for p, g in zip(pred, gt))
    pairs = assign(score)
    return {gt_ids[a]: pred_ids[b] for a, b in pairs if score[a, b] > 0}


def evaluate(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray], frames: Sequence[int] | None = None,
             boundary: float = BOUNDARY, match: bool = True) -> pd.DataFrame:  # fmt: skip
    """One row per (frame, ground-truth object): ``frame``, ``object``, ``pred_id``, ``J``, ``F``,
    ``scored`` (False for the first and last frame). ``pred``/``gt``: id masks of the same frames;
    ``frames`` their numbers (default 0..n-1); ``match`` False compares ids as they are."""
    if len(pred) != len(gt):
        raise ValueError(f"{len(pred)} predicted masks but {len(gt)} ground-truth masks")
    frames = list(range(len(gt))) if frames is None else list(frames)
    gt_ids = sorted({int(i) for g in gt for i in np.unique(g) if i})
    mapping = match_ids(pred, gt) if match else {i: i for i in gt_ids}
    rows, seen = [], set()
    for k, (p, g) in enumerate(zip(pred, gt)):
        if p.shape != g.shape:
            raise ValueError(f"frame {frames[k]}: predicted mask {p.shape} but ground truth {g.shape}")
        for obj in gt_ids:
            pm = p == mapping[obj] if obj in mapping else np.zeros_like(g, bool)
            gm = g == obj
            if obj not in seen and not (gm.any() or pm.any()):
                continue  # not in view yet
            seen.add(obj)
            rows.append({"frame": frames[k], "object": obj, "pred_id": mapping.get(obj), "J": region_j(pm, gm),
                         "F": boundary_f(pm, gm, boundary), "scored": 0 < k < len(gt) - 1})  # fmt: skip
    return pd.DataFrame(rows, columns=["frame", "object", "pred_id", "J", "F", "scored"])


def summary(per_frame: pd.DataFrame) -> pd.DataFrame:
    """Per object, and ``mean`` over objects: J, F and J&F (means over the scored frames)."""
    scored = per_frame[per_frame["scored"]] if per_frame["scored"].any() else per_frame
    objects = scored.groupby("object")[["J", "F"]].mean()
    objects["J&F"] = (objects["J"] + objects["F"]) / 2
    objects.index = objects.index.astype(str)
    mean = objects.mean().to_frame("mean").T
    return pd.concat([objects, mean]).rename_axis("object").reset_index()


IDENTITY_IOU = 0.5  # a predicted mask and a true one are the same object on a frame at this IoU or more


def identity(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray], iou: float = IDENTITY_IOU) -> dict:
    """Whether the ids hold, frame by frame, scored by two maintained scorers with mask IoU as the
    similarity of a predicted and a true mask.

    motmetrics (py-motmetrics, the MOTChallenge definitions): on each frame a predicted and a true
    mask may pair at IoU >= ``iou``, and motmetrics keeps a pairing while it lasts. ``id_switches``:
    times a true object pairs with another predicted id than before; ``idf1``: the F1 of the
    one-to-one id correspondence over the whole video (IDP, IDR its precision and recall); ``mota``;
    ``fragmentations``; ``objects`` and ``predicted_ids``: how many ids each side used.

    TrackEval (the HOTA authors' code; Luiten et al., "HOTA: A Higher Order Metric for Evaluating
    Multi-Object Tracking", 2021): ``hota``, the geometric mean of detection (``deta``) and
    association (``assa``) accuracy, averaged over IoU thresholds 0.05 ... 0.95."""
    import motmetrics as mm  # here: only the evaluation needs them
    from trackeval.metrics import HOTA

    acc = mm.MOTAccumulator(auto_id=True)
    frames = []  # (true ids, predicted ids, IoU matrix) of each frame
    for p, g in zip(pred, gt):
        gt_ids = [int(i) for i in np.unique(g) if i]
        pred_ids = [int(i) for i in np.unique(p) if i]
        overlap = pair_iou(p, g, gt_ids, pred_ids)
        acc.update(gt_ids, pred_ids, np.where(overlap >= iou, 1 - overlap, np.nan))
        frames.append((gt_ids, pred_ids, overlap))
    names = {"idf1": "idf1", "idp": "idp", "idr": "idr", "num_switches": "id_switches", "mota": "mota",
             "num_fragmentations": "fragmentations", "num_unique_objects": "objects"}  # fmt: skip
    row = mm.metrics.create().compute(acc, metrics=list(names), name="video")
    row = row.iloc[0]  # one row: this video
    out = {names[k]: float(row[k]) if k in ("idf1", "idp", "idr", "mota") else int(row[k]) for k in names}
    hota = _hota(HOTA(), frames)
    return {**out, "predicted_ids": len({i for _, ids, _ in frames for i in ids}), **hota}


def _hota(metric, frames: list[tuple[list[int], list[int], np.ndarray]]) -> dict:
    """HOTA, DetA and AssA (means over TrackEval's IoU thresholds) of the frames' ids and IoUs, in
    the layout TrackEval's datasets hand its metrics (ids renumbered from 0 on each side)."""
    gt_index = {i: n for n, i in enumerate(sorted({i for ids, _, _ in frames for i in ids}))}
    pred_index = {i: n for n, i in enumerate(sorted({i for _, ids, _ in frames for i in ids}))}
    data = {
        "num_gt_ids": len(gt_index), "num_tracker_ids": len(pred_index),
        "num_gt_dets": sum(len(g) for g, _, _ in frames), "num_tracker_dets": sum(len(p) for _, p, _ in frames),
        "gt_ids": [np.array([gt_index[i] for i in g], int) for g, _, _ in frames],
        "tracker_ids": [np.array([pred_index[i] for i in p], int) for _, p, _ in frames],
        "similarity_scores": [overlap for _, _, overlap in frames],
    }  # fmt: skip
    res = metric.eval_sequence(data)
    return {name: float(np.mean(res[key])) for name, key in (("hota", "HOTA"), ("deta", "DetA"), ("assa", "AssA"))}


def db_statistics(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, recall (share above 0.5) and decay (first quarter's mean minus the last's) of one
    object's per-frame J or F, as the DAVIS 2017 evaluation computes them (its db_statistics)."""
    values = np.asarray(values, float)
    mean, recall = float(np.nanmean(values)), float(np.nanmean(values > 0.5))
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(int)
    bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
    return mean, recall, float(np.nanmean(bins[0]) - np.nanmean(bins[3]))


def davis_tables(per_frame: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A dataset's results in the layout of the DAVIS 2017 evaluation: the global row (J&F-Mean,
    J-Mean, J-Recall, J-Decay, F-Mean, F-Recall, F-Decay: means over every object of every sequence)
    and one row per sequence and object (``<sequence>_<object>``, J-Mean, F-Mean), from each
    sequence's :func:`evaluate` table (its scored frames: the first and the last skipped)."""
    stats, rows = {"J": [], "F": []}, []
    for seq, table in sorted(per_frame.items()):
        scored = table[table["scored"]] if table["scored"].any() else table
        for obj, frames in scored.groupby("object"):
            js, fs = db_statistics(frames["J"].to_numpy()), db_statistics(frames["F"].to_numpy())
            stats["J"].append(js)
            stats["F"].append(fs)
            rows.append({"Sequence": f"{seq}_{obj}", "J-Mean": js[0], "F-Mean": fs[0]})
    j, f = np.array(stats["J"]).mean(axis=0), np.array(stats["F"]).mean(axis=0)
    global_row = {"J&F-Mean": (j[0] + f[0]) / 2, "J-Mean": j[0], "J-Recall": j[1], "J-Decay": j[2],
                  "F-Mean": f[0], "F-Recall": f[1], "F-Decay": f[2]}  # fmt: skip
    return pd.DataFrame([global_row]), pd.DataFrame(rows, columns=["Sequence", "J-Mean", "F-Mean"])


def j_plot(per_frame: pd.DataFrame, path, title: str) -> None:
    """J of each object over the frames (one line per object; a gap where it is not in view yet)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...io import save_figure

    fig, ax = plt.subplots(figsize=(9, 3.6))
    for obj, rows in per_frame.groupby("object"):
        ax.plot(
            rows["frame"], rows["J"], marker=".", label=f"object {obj} (mean {rows['J'][rows['scored']].mean():.2f})"
        )
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("source frame")
    ax.set_ylabel("J (IoU)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
