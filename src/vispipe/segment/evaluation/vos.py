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
from array import array
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
    frames = range(len(gt)) if frames is None else frames
    gt_ids = sorted({int(i) for g in gt for i in np.unique(g) if i})
    mapping = match_ids(pred, gt) if match else {i: i for i in gt_ids}
    # the rows' columns as flat arrays (a few bytes a row, not a dict): memory barely grows with the video
    cols = {"frame": array("q"), "object": array("q"), "pred_id": array("d"), "J": array("d"), "F": array("d"),
            "scored": array("b")}  # fmt: skip
    seen = set()
    for k, (p, g) in enumerate(zip(pred, gt)):
        if p.shape != g.shape:
            raise ValueError(f"frame {frames[k]}: predicted mask {p.shape} but ground truth {g.shape}")
        for obj in gt_ids:
            pm = p == mapping[obj] if obj in mapping else np.zeros_like(g, bool)
            gm = g == obj
            if obj not in seen and not (gm.any() or pm.any()):
                continue  # not in view yet
            seen.add(obj)
            row = (frames[k], obj, mapping.get(obj, np.nan), region_j(pm, gm), boundary_f(pm, gm, boundary),
                   0 < k < len(gt) - 1)  # fmt: skip
            for column, value in zip(cols.values(), row):
                column.append(value)
    table = pd.DataFrame({name: np.frombuffer(column, column.typecode) if column else [] for name, column in cols.items()},
                         columns=list(cols))  # fmt: skip
    table["scored"] = table["scored"].astype(bool)
    if table["pred_id"].notna().all():  # as pandas types a list of rows: ints, or floats with NaN for None
        table["pred_id"] = table["pred_id"].astype(np.int64)
    return table


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
    """Whether the ids hold, frame by frame, with mask IoU as the similarity of a predicted and a
    true mask, in memory that does not grow with the video (each frame read once, counted, let go).

    The CLEAR MOT and ID measures as py-motmetrics defines them (:class:`MotCounts`, equal to its
    numbers on every test sequence): on each frame a predicted and a true mask may pair at IoU >=
    ``iou``, and a pairing is kept while it lasts. ``id_switches``: times a true object pairs with
    another predicted id than before; ``idf1``: the F1 of the one-to-one id correspondence over the
    whole video (IDP, IDR its precision and recall); ``mota``; ``fragmentations``; ``objects`` and
    ``predicted_ids``: how many ids each side used.

    TrackEval (the HOTA authors' code; Luiten et al., "HOTA: A Higher Order Metric for Evaluating
    Multi-Object Tracking", 2021): ``hota``, the geometric mean of detection (``deta``) and
    association (``assa``) accuracy, averaged over IoU thresholds 0.05 ... 0.95, on the frames' ids
    and IoUs kept in flat arrays (:class:`FrameStore`)."""
    from trackeval.metrics import HOTA  # here: only the evaluation needs it

    counts, store = MotCounts(), FrameStore()
    for p, g in zip(pred, gt):
        gt_ids = [int(i) for i in np.unique(g) if i]
        pred_ids = [int(i) for i in np.unique(p) if i]
        overlap = pair_iou(p, g, gt_ids, pred_ids)
        counts.update(gt_ids, pred_ids, np.where(overlap >= iou, 1 - overlap, np.nan))
        store.add(gt_ids, pred_ids, overlap)
    return {**counts.metrics(), "predicted_ids": len(store.pred_index), **_hota(HOTA(), store)}


class MotCounts:
    """py-motmetrics' ``MOTAccumulator.update`` and the metrics it computes from its events (CLEAR MOT:
    Bernardin and Stiefelhagen 2008; ID measures: Ristani et al. 2016), kept as counts instead of an
    event table that grows with every frame (1.4 kB a frame for two objects): the same matching
    (carry a pairing while both are present and close enough, then the Hungarian assignment of the
    rest) and the same events counted (matches, switches, misses, false positives; its ASCEND,
    TRANSFER and MIGRATE annotations enter none of the metrics here). tests/test_redetect.py checks
    the numbers against motmetrics' own on random sequences."""

    def __init__(self):
        self.frame = 0
        self.m: dict[int, int] = {}  # object -> the hypothesis it was last paired with
        self.objects = self.predictions = self.misses = self.false_positives = self.switches = 0
        self.obj_events: dict[int, int] = {}  # object -> its non-RAW events (motmetrics' obj_frequencies)
        self.obj_frames: dict[int, int] = {}  # frames each id is present on (the ID measures' counts)
        self.hyp_frames: dict[int, int] = {}
        self.pairs: dict[tuple[int, int], int] = {}  # frames each (object, hypothesis) pair could match
        self.tracked: dict[int, bool] = {}  # object -> matched on its last frame
        self.gap: set[int] = set()  # objects missed since they were last matched
        self.fragmentations = 0

    def _event(self, o=None, h=None) -> None:
        if o is not None:
            self.objects += 1
            self.obj_events[o] = self.obj_events.get(o, 0) + 1
        if h is not None:
            self.predictions += 1

    def update(self, oids: list[int], hids: list[int], dists: np.ndarray) -> None:
        """One frame: the true and predicted ids on it and their distances (NaN: may not pair)."""
        dists = np.atleast_2d(np.asarray(dists, float)).reshape(len(oids), len(hids)).copy()
        for o in oids:
            self.obj_frames[o] = self.obj_frames.get(o, 0) + 1
        for h in hids:
            self.hyp_frames[h] = self.hyp_frames.get(h, 0) + 1
        for r, c in zip(*np.nonzero(np.isfinite(dists))):
            self.pairs[oids[r], hids[c]] = self.pairs.get((oids[r], hids[c]), 0) + 1
        o_done, h_done, status = np.zeros(len(oids), bool), np.zeros(len(hids), bool), {}
        if oids and hids:
            for r, o in enumerate(oids):  # 1. pairings that last
                if o in self.m and self.m[o] in hids:
                    c = hids.index(self.m[o])
                    if not h_done[c] and np.isfinite(dists[r, c]):
                        o_done[r] = h_done[c] = True
                        self._event(o, hids[c])
                        status[o] = True
            dists[o_done, :] = np.nan
            dists[:, h_done] = np.nan
            from scipy.optimize import linear_sum_assignment

            # NaN-free costs: a pair that may not match costs more than any that may (and is dropped)
            rows, cols = linear_sum_assignment(np.where(np.isfinite(dists), dists, 1e9))
            for r, c in zip(rows, cols):  # 2. the rest, by the Hungarian assignment
                if not np.isfinite(dists[r, c]):
                    continue
                o, h = oids[r], hids[c]
                if o in self.m and self.m[o] != h:  # a switch
                    self.switches += 1
                self._event(o, h)  # MATCH or SWITCH
                o_done[r] = h_done[c] = True
                self.m[o] = h
                status[o] = True
        for r, o in enumerate(oids):  # 3. misses
            if not o_done[r]:
                self.misses += 1
                self._event(o)
                status[o] = False
        for c, h in enumerate(hids):  # 4. false positives
            if not h_done[c]:
                self.false_positives += 1
                self._event(h=h)
        for o, tracked in status.items():  # a gap between two matches is a fragmentation
            if tracked and o in self.gap:
                self.fragmentations += 1
                self.gap.discard(o)
            elif not tracked and self.tracked.get(o):
                self.gap.add(o)
            self.tracked[o] = tracked
        self.frame += 1

    def metrics(self) -> dict:
        """IDF1, IDP, IDR (the global min-cost assignment of ids), ID switches, MOTA, fragmentations
        and the number of objects, as motmetrics computes them from its events."""
        from scipy.optimize import linear_sum_assignment

        oids, hids = sorted(self.obj_frames), sorted(self.hyp_frames)
        no, nh = len(oids), len(hids)
        fp, fn = np.zeros((no + nh, no + nh)), np.zeros((no + nh, no + nh))
        fp[no:, :nh] = np.nan
        fn[:no, nh:] = np.nan
        for r, o in enumerate(oids):
            fn[r, :nh] = self.obj_frames[o]
            fn[r, nh + r] = self.obj_frames[o]
        for c, h in enumerate(hids):
            fp[:no, c] = self.hyp_frames[h]
            fp[c + no, c] = self.hyp_frames[h]
        for (o, h), n in self.pairs.items():
            fp[oids.index(o), hids.index(h)] -= n
            fn[oids.index(o), hids.index(h)] -= n
        rows, cols = linear_sum_assignment(np.nan_to_num(fp + fn, nan=1e12)) if no + nh else ([], [])
        idfp, idfn = float(fp[rows, cols].sum()), float(fn[rows, cols].sum())
        idtp = self.objects - idfn

        def ratio(a: float, b: float) -> float:  # motmetrics' quiet_divide: inf or nan where b is 0
            with np.errstate(divide="ignore", invalid="ignore"):
                return float(np.float64(a) / np.float64(b))

        return {
            "idf1": ratio(2 * idtp, self.objects + self.predictions),
            "idp": ratio(idtp, idtp + idfp),
            "idr": ratio(idtp, idtp + idfn),
            "id_switches": self.switches,
            "mota": 1 - ratio(self.misses + self.switches + self.false_positives, self.objects),
            "fragmentations": self.fragmentations,
            "objects": len(self.obj_events),
        }


class FrameStore:
    """Every frame's true ids, predicted ids and their IoU matrix, in flat arrays with offsets (a few
    dozen bytes a frame, not Python objects), read back frame by frame as TrackEval's metrics read
    their data (ids renumbered from 0 on each side)."""

    def __init__(self):
        self.gt, self.pred, self.iou = array("q"), array("q"), array("d")
        self.ends = array("q")  # each frame's end in gt, pred (interleaved) and iou
        self.gt_index: dict[int, int] = {}
        self.pred_index: dict[int, int] = {}

    def add(self, gt_ids: list[int], pred_ids: list[int], overlap: np.ndarray) -> None:
        for i in gt_ids:
            self.gt_index.setdefault(i, len(self.gt_index))
        for i in pred_ids:
            self.pred_index.setdefault(i, len(self.pred_index))
        self.gt.extend(gt_ids)
        self.pred.extend(pred_ids)
        self.iou.extend(np.asarray(overlap, float).ravel())
        self.ends.extend((len(self.gt), len(self.pred), len(self.iou)))

    def __len__(self) -> int:
        return len(self.ends) // 3

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame ``t``'s (true ids, predicted ids, IoU), each side's ids renumbered in order of sorted ids."""
        g0, p0, s0 = self.ends[3 * t - 3 : 3 * t] if t else (0, 0, 0)
        g1, p1, s1 = self.ends[3 * t : 3 * t + 3]
        gt, pred = self.gt[g0:g1], self.pred[p0:p1]
        return np.array(gt, int), np.array(pred, int), np.frombuffer(self.iou[s0:s1], float).reshape(len(gt), len(pred))


class _Lazy(Sequence):
    """One field of a :class:`FrameStore`'s frames as a sequence, renumbered as TrackEval wants it."""

    def __init__(self, store: FrameStore, field: int, index: dict[int, int] | None = None):
        self.store, self.field, self.index = store, field, index

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, t: int):
        if not 0 <= t < len(self.store):
            raise IndexError(t)
        value = self.store.frame(t)[self.field]
        return value if self.index is None else np.array([self.index[int(i)] for i in value], int)


def _hota(metric, store: FrameStore) -> dict:
    """HOTA, DetA and AssA (means over TrackEval's IoU thresholds) of the stored frames' ids and
    IoUs, in the layout TrackEval's datasets hand its metrics (ids renumbered from 0 on each side,
    in sorted order)."""
    gt_index = {i: n for n, i in enumerate(sorted(store.gt_index))}
    pred_index = {i: n for n, i in enumerate(sorted(store.pred_index))}
    data = {
        "num_gt_ids": len(gt_index), "num_tracker_ids": len(pred_index),
        "num_gt_dets": len(store.gt), "num_tracker_dets": len(store.pred),
        "gt_ids": _Lazy(store, 0, gt_index), "tracker_ids": _Lazy(store, 1, pred_index),
        "similarity_scores": _Lazy(store, 2),
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
