"""Re-identification: which instance a detection is, whether in view, hidden or lost.

Re-detection (``segment.redetect.every: N``): on every N-th frame a detector (the configured one ->
instances -> SAM2, as on the first frame) runs too, and its masks are matched one to one (Hungarian)
with every instance the video has had, whether it is in view, hidden, or lost for good, as trackers
match (SORT's motion, DeepSORT's appearance) on two cues, for every instance alike:

- where: :func:`match_score` against the instance's mask (in view: this frame's; out of view:
  carried forward while hidden, else the last one seen), or the box IoU with where its motion puts
  it: the box of its last anchor (a detection that confirmed it) moved on at the velocity between its
  last two anchors (:class:`Motion`), since a propagated mask drifts between detections;
- what: colour histograms (:func:`appearance`) of the detection and of the instance at its last
  anchors (the best of up to five), at least ``min_similarity`` alike.

A pair may match when it agrees by place (>= ``match_iou``), or when it looks alike and is near: out
of view (an object that comes back rarely comes back where it left), or in view with the detection's
centre within reach of the instance's (its mask's or its motion's): one box size, plus a quarter of
one per frame since its last anchor. Among those, the Hungarian
assignment maximises place + likeness summed. A detection that matches an instance in view
re-anchors it (``re-detected``); one that matches an instance out of view brings it back **with its
old id** (``revived``); one that matches nothing starts a new id (``born``). An instance in view
that no detection matches is hidden (``lost``, "not re-detected"), its mask carried on, until a
later detection finds it. Every birth, loss and revival is an event of its frame.

:class:`Association` keeps what this needs of every instance (its last visible mask, its looks at its
last anchors, its motion between them) and matches one frame's detections with them; the generic loop
(:mod:`.track.loop`) runs it for every tracker. SAM 3's tracker maps its own ids onto ours with
:func:`map_ids`, the same assignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import assign, box_iou, box_xyxy, mask_iou
from .types import FrameResult, instance_info


def match_score(detection: np.ndarray, track: np.ndarray) -> float:
    """How well a detection and a track's mask agree that they are one object: the largest of mask
    IoU, box IoU (forgives a mask that drifted or lost its inside) and the share of the track's mask
    inside the detection (an object coming into view grows faster than its warped mask)."""
    if not detection.any() or not track.any():
        return 0.0
    inter = np.logical_and(detection, track).sum()
    return float(max(mask_iou(detection, track), box_iou(box_xyxy(detection), box_xyxy(track)), inter / track.sum()))


@dataclass(frozen=True)
class Motion:
    """An instance's last anchor (frame and box) and its velocity (box corners per frame) between its
    last two anchors: a constant-velocity guess of where it is now, as SORT's Kalman filter makes one."""

    frame: int
    box: tuple[int, int, int, int] | list[int]
    velocity: tuple[float, float] = (0.0, 0.0)  # of the box centre, pixels per frame

    def anchored(self, frame: int, box) -> Motion:
        """The motion after a new anchor on ``frame``."""
        (x0, y0, x1, y1), (a0, b0, a1, b1) = self.box, box
        dt = max(frame - self.frame, 1)
        return Motion(frame, box, (((a0 + a1) - (x0 + x1)) / 2 / dt, ((b0 + b1) - (y0 + y1)) / 2 / dt))

    def predict(self, frame: int) -> tuple[float, float, float, float]:
        """The box on ``frame``: the last anchor's, moved on at the velocity."""
        dx, dy = (v * (frame - self.frame) for v in self.velocity)
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


GALLERY = 5  # the looks an instance keeps: those of its last anchors
REACH_PER_FRAME = 0.25  # how far an instance may have moved per frame since its last anchor, in its own sizes


def near(box, other, frames: int) -> bool:
    """Whether ``box``'s centre is within reach of ``other``'s: one size of ``other`` (its larger side),
    plus a quarter of it per frame since the instance's last anchor (the longer the wait, the farther
    it may have gone, as a tracker's gate widens with its uncertainty)."""
    dx = (box[0] + box[2] - other[0] - other[2]) / 2
    dy = (box[1] + box[3] - other[1] - other[3]) / 2
    size = max(other[2] - other[0], other[3] - other[1])
    return bool(np.hypot(dx, dy) <= size * (1 + REACH_PER_FRAME * frames))


def appearance(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """What an object looks like, position aside: its pixels' hue-saturation histogram (16 x 8 bins)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], mask.astype(np.uint8), [16, 8], [0, 180, 0, 256])
    return cv2.normalize(hist, None).flatten()


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """1 for the same colour distribution, 0 for disjoint ones (1 - Bhattacharyya distance)."""
    if not a.any() or not b.any():
        return 0.0
    return float(1 - cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


class Association:
    """Each instance's last visible mask, its looks at its last anchors (with ``looks``; a gallery, as
    DeepSORT keeps one: a partial view, at an edge or half hidden, does not make the instance forget
    how it looked whole) and how it moved between anchors, from the first frame's ``first``
    instances on; ``cfg`` is the ``segment.redetect`` block."""

    def __init__(self, image: np.ndarray, first: dict[int, np.ndarray], cfg: dict, looks: bool = True):
        self.cfg = cfg
        self.last_seen = dict(first)
        self.looks = {i: [appearance(image, m)] for i, m in first.items()} if looks else {}
        self.motion = {i: Motion(0, box_xyxy(m)) for i, m in first.items()}

    def seen(self, i: int, mask: np.ndarray) -> None:
        """Instance ``i`` is visible with ``mask`` on the current frame."""
        self.last_seen[i] = mask

    def anchored(self, k: int, frame: np.ndarray, masks: dict[int, np.ndarray]) -> None:
        """Detections confirmed these instances on frame ``k``: their looks and motion are renewed."""
        for i, mask in masks.items():
            self.looks[i] = [*self.looks.get(i, [])[-(GALLERY - 1) :], appearance(frame, mask)]
            self.motion[i] = (
                self.motion[i].anchored(k, box_xyxy(mask)) if i in self.motion else Motion(k, box_xyxy(mask))
            )

    def match(self, result: FrameResult, frame: np.ndarray, detections: list[np.ndarray], ids: list[int],
              carried: dict, k: int) -> set[int]:  # fmt: skip
        """Match frame ``k``'s detections with every instance so far; re-anchor, revive, or start new
        ids (updates ``result``, ``ids`` and ``carried`` in place); return the ids a detection
        matched. See the module docstring."""
        last_seen, looks, motion, cfg = self.last_seen, self.looks, self.motion, self.cfg
        detections = [d for d in detections if d.any()]
        known = {i: result.masks.get(i, carried.get(i, last_seen.get(i))) for i in ids}
        tracks = sorted(i for i, m in known.items() if m is not None)
        predicted = {i: motion[i].predict(k) for i in tracks if i in motion}
        score = np.zeros((len(detections), len(tracks)))
        for r, d in enumerate(detections):
            look, box = appearance(frame, d), box_xyxy(d)
            for c, i in enumerate(tracks):
                where = match_score(d, known[i])
                if i in predicted:
                    where = max(where, box_iou(box, predicted[i]))
                alike = max((similarity(look, seen) for seen in looks.get(i, ())), default=0.0)
                waited = k - motion[i].frame if i in motion else 0
                close = (
                    i not in result.masks
                    or near(box, box_xyxy(known[i]), waited)
                    or (i in predicted and near(box, predicted[i], waited))
                )
                alike = alike if alike >= cfg["min_similarity"] else 0.0  # looks below it say nothing
                if where >= cfg["match_iou"] or (alike and close):
                    score[r, c] = where + alike
        pairs = {
            r: (tracks[c], score[r, c]) for r, c in assign(score) if score[r, c] > 0
        }  # detection -> (instance, score)
        in_view = set(result.masks)
        for r, mask in enumerate(detections):
            if r in pairs:
                i, s = pairs[r]
                reason = "re-detected" if i in in_view else "revived"
                if reason == "revived":
                    result.events.append({"id": i, "event": "revived", "reason": f"score {s:.2f}"})
            else:
                i = max(ids, default=0) + 1
                ids.append(i)
                reason = "born"
                result.events.append({"id": i, "event": "born", "reason": "re-detection"})
            carried[i] = mask
            result.masks[i] = mask
            result.info[i] = instance_info("refined", reason, mask)
        matched = {i for i, _ in pairs.values()}
        for i in in_view - matched:
            del result.masks[i]  # in view, but no detection agrees: hidden (its mask carried on) until one does
            result.info[i] = instance_info("lost", "not re-detected", None)
        return matched


def map_ids(theirs: dict[int, np.ndarray], ours: dict[int, np.ndarray], min_iou: float) -> dict[int, int]:
    """Another tracker's ids onto ours: each of ``theirs`` (id -> mask) takes the id of the one of
    ``ours`` it overlaps most, one to one (the Hungarian assignment on mask IoU), at ``min_iou`` or more."""
    a, b = sorted(theirs), sorted(ours)
    iou = np.array([[mask_iou(theirs[t], ours[i]) for i in b] for t in a]).reshape(len(a), len(b))
    return {a[r]: b[c] for r, c in assign(iou) if iou[r, c] >= min_iou}
