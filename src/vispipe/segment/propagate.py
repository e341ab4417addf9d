"""Carry the first frame's instances through the video: warp by optical flow, refine with SAM2, fall back.

For every next kept frame and every instance (the seed notebook's loop, with its fallbacks made explicit):

1. warp the instance's previous mask with the Farneback flow;
2. if the warped mask vanished (left the frame, or shrank below ``lost_area_ratio`` of its previous
   area) the instance is ``lost`` for good;
3. else SAM2 refines it from the warped mask's box and points. If SAM2 says the object is absent
   (object-presence logit < 0, with ``use_object_score``) it is occluded: ``lost`` on this frame, its
   warped mask carried on hidden, so it can come back;
4. a refined mask that collapsed or exploded (area ratio to the warped mask outside
   ``[min_area_ratio, max_area_ratio]``) or that SAM2 itself scores below ``min_sam2_score`` is not
   trusted: the state is ``warped`` and the warped mask is kept; otherwise the state is ``refined``.

Without a refiner (``segment.propagate.refine: false``) step 3 is skipped: every live instance is
``warped`` ("not refined"), which measures the flow alone.

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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from .flow import backward_flow, warp_mask
from .masks import box_xyxy
from .sam2 import Refined
from .timing import Stopwatch, ahead

STATES = ("refined", "warped", "lost")


class Refiner(Protocol):
    """What the loop needs from SAM2 (tests script it)."""

    def refine(self, image: np.ndarray, masks: Sequence[np.ndarray], rng: np.random.Generator) -> list[Refined]: ...


class Detector(Protocol):
    """What re-detection needs: the target's instance masks on one frame (tests script it)."""

    def detect(self, image: np.ndarray, k: int) -> list[np.ndarray]: ...


@dataclass
class Decision:
    state: str  # one of STATES
    reason: str  # ok, collapsed, exploded, low_score, occluded, vanished, lost earlier
    carry: str | None  # which mask goes on to the next frame: "refined", "warped" or None (gone)


def vanished(prev_area: int, warped_area: int, bounds: dict) -> bool:
    return warped_area == 0 or warped_area < bounds["lost_area_ratio"] * prev_area


def decide(prev_area: int, warped_area: int, refined: Refined | None, bounds: dict) -> Decision:
    """The state of one instance on one frame; ``bounds`` is the ``segment.propagate`` config block."""
    if vanished(prev_area, warped_area, bounds) or refined is None:
        return Decision("lost", "vanished", None)
    if bounds["use_object_score"] and refined.object_score < 0:
        return Decision("lost", "occluded", "warped")
    ratio = int(refined.mask.sum()) / warped_area
    if ratio < bounds["min_area_ratio"]:
        return Decision("warped", "collapsed", "warped")
    if ratio > bounds["max_area_ratio"]:
        return Decision("warped", "exploded", "warped")
    if refined.iou_score < bounds["min_sam2_score"]:
        return Decision("warped", "low_score", "warped")
    return Decision("refined", "ok", "refined")


@dataclass
class FrameResult:
    """The visible masks of one frame by instance id, and every instance's bookkeeping."""

    masks: dict[int, np.ndarray] = field(default_factory=dict)
    info: dict[int, dict] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)  # {"id", "event": born | lost | revived, "reason"}


def instance_info(state: str, reason: str, mask: np.ndarray | None, refined: Refined | None = None) -> dict:
    """One instance's bookkeeping on one frame (an entry of a tracks.json frame)."""
    visible = mask is not None and state != "lost"
    return {
        "state": state,
        "reason": reason,
        "area": int(mask.sum()) if visible else 0,
        "box": box_xyxy(mask) if visible else None,
        "sam2_iou": None if refined is None else round(refined.iou_score, 4),
        "object_score": None if refined is None else round(refined.object_score, 4),
    }


class Stepper(Protocol):
    """A propagator: what carries the instances from one kept frame to the next (:class:`FlowStepper`
    here, ``sam2_video.TrackerStepper`` for SAM2's own tracker)."""

    def start(self, image: np.ndarray, first: dict[int, np.ndarray]) -> None:
        """Begin on the first frame and its instances."""

    def step(self, k: int, frame: np.ndarray, extra, ids: Sequence[int], carried: dict, hidden: set) -> FrameResult:
        """Frame ``k``'s masks and bookkeeping for every id; updates ``carried`` (id -> the mask that
        goes on). ``extra`` is what the frame iterator paired with the frame (the flow, for the flow)."""

    def anchor(self, k: int, frame: np.ndarray, masks: dict[int, np.ndarray]) -> None:
        """Re-detection found these masks on frame ``k`` (re-anchored, revived or new ids)."""


class FlowStepper:
    """The seed's loop: warp each mask by the flow, refine it with SAM2, fall back (module docstring)."""

    def __init__(self, refiner: Refiner | None, bounds: dict, seed: int):
        self.refiner, self.bounds, self.seed = refiner, bounds, seed

    def start(self, image: np.ndarray, first: dict[int, np.ndarray]) -> None:
        pass

    def step(self, k: int, frame: np.ndarray, flow, ids: Sequence[int], carried: dict, hidden: set) -> FrameResult:
        result, bounds, refiner = FrameResult(), self.bounds, self.refiner
        warped = {i: warp_mask(m, flow) for i, m in carried.items()}
        areas = {i: (int(carried[i].sum()), int(warped[i].sum())) for i in warped}
        moving = [i for i in warped if not vanished(*areas[i], bounds)]
        alive = [i for i in moving if i not in hidden]
        rng = np.random.default_rng([self.seed, k])
        refined = dict(zip(alive, refiner.refine(frame, [warped[i] for i in alive], rng))) if refiner else {}
        for i in ids:
            if i not in carried:
                result.info[i] = instance_info("lost", "lost earlier", None)
                continue
            if i in hidden:  # no detection agreed with it: carried on out of view until one does
                carried[i] = warped[i] if i in moving else carried[i]
                result.info[i] = instance_info("lost", "not re-detected", None)
                continue
            if refiner is None:
                d = Decision("warped", "not refined", "warped") if i in alive else Decision("lost", "vanished", None)
            else:
                d = decide(*areas[i], refined.get(i), bounds)
            mask = refined[i].mask if d.carry == "refined" else warped[i] if d.carry == "warped" else None
            if mask is None:
                del carried[i]
            else:
                carried[i] = mask
            if d.state != "lost":
                result.masks[i] = mask
            result.info[i] = instance_info(d.state, d.reason, mask, refined.get(i))
        return result

    def anchor(self, k: int, frame: np.ndarray, masks: dict[int, np.ndarray]) -> None:
        pass  # re-detection put the masks in ``carried``: the flow carries them on


def with_flow(frames: Iterable[np.ndarray], flow_params: dict, clock: Stopwatch | None = None
              ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:  # fmt: skip
    """Each frame with the backward flow from it to the frame before (None for the first). It depends
    on the frames alone, so it can run ahead in another thread (:func:`~.timing.ahead`)."""
    clock = clock or Stopwatch()
    previous = None
    for frame in frames:
        if previous is None:
            yield frame, None
        else:
            with clock("flow"):
                flow = backward_flow(previous, frame, flow_params)
            yield frame, flow
        previous = frame


def propagate(
    frames: Iterable[np.ndarray],
    first: dict[int, np.ndarray],
    refiner: Refiner | None,
    flow_params: dict,
    bounds: dict,
    seed: int,
    detector: Detector | None = None,
    redetect: dict | None = None,
    clock: Stopwatch | None = None,
    prefetch: bool = False,
) -> Iterator[FrameResult]:
    """The flow propagator over ``frames`` (see :func:`track`); ``refiner`` None warps without
    refining; ``prefetch`` computes the next flows in a background thread."""
    items = with_flow(frames, flow_params, clock)
    return track(ahead(items) if prefetch else items, first, FlowStepper(refiner, bounds, seed), detector, redetect)


# a detection that re-anchors, revives or starts an instance: the propagator is told (Stepper.anchor)
ANCHORING = ("re-detected", "revived", "born")


def track(
    items: Iterable[tuple[np.ndarray, object]],
    first: dict[int, np.ndarray],
    stepper: Stepper,
    detector: Detector | None = None,
    redetect: dict | None = None,
) -> Iterator[FrameResult]:
    """Yield one :class:`FrameResult` per frame of ``items`` (frame, extra), the first frame's being
    ``first`` (id -> bool mask); ``detector`` with ``redetect`` (the ``segment.redetect`` block,
    ``every`` > 0) re-detects. Re-detection and the events are the same whatever the propagator."""
    items = iter(items)
    image, _ = next(items)
    carried: dict[int, np.ndarray] = {i: m for i, m in first.items() if m.any()}
    stepper.start(image, dict(carried))
    yield FrameResult(
        dict(carried),
        {i: instance_info("refined", "first frame", m) for i, m in carried.items()},
        [{"id": i, "event": "born", "reason": "first frame"} for i in sorted(carried)],
    )
    ids = sorted(carried)
    last_seen = dict(carried)  # each instance's last visible mask ...
    every = (redetect or {}).get("every", 0) if detector is not None else 0
    # ... how it looked at its last anchors (a gallery, as DeepSORT keeps one: a partial view, at an
    # edge or half hidden, does not make the instance forget how it looked whole) ...
    looks = {i: [appearance(image, m)] for i, m in carried.items()} if every else {}
    motion = {i: Motion(0, box_xyxy(m)) for i, m in carried.items()}  # ... and how it moved between anchors
    visible_before, hidden = set(carried), set()
    for k, (frame, extra) in enumerate(items, start=1):
        result = stepper.step(k, frame, extra, ids, carried, hidden)
        if every and k % every == 0:
            in_view = set(result.masks)
            matched = _redetect(result, frame, detector.detect(frame, k), ids, carried, last_seen, looks, motion, k,
                                redetect)  # fmt: skip
            hidden = (hidden | (in_view - matched)) - matched
            anchored = {i: result.masks[i] for i, v in result.info.items() if v["reason"] in ANCHORING}
            for i, mask in anchored.items():
                looks[i] = [*looks.get(i, [])[-(GALLERY - 1) :], appearance(frame, mask)]
                motion[i] = motion[i].anchored(k, box_xyxy(mask)) if i in motion else Motion(k, box_xyxy(mask))
            if anchored:
                stepper.anchor(k, frame, anchored)
        for i in ids:
            noted = any(e["id"] == i for e in result.events)
            if i in result.masks:
                last_seen[i] = result.masks[i]
                if i not in visible_before and not noted:  # back in view by the propagator itself
                    result.events.append({"id": i, "event": "revived", "reason": result.info[i]["reason"]})
            elif i in visible_before and not noted:
                result.events.append({"id": i, "event": "lost", "reason": result.info[i]["reason"]})
        visible_before = set(result.masks)
        yield result


def match_score(detection: np.ndarray, track: np.ndarray) -> float:
    """How well a detection and a track's mask agree that they are one object: the largest of mask
    IoU, box IoU (forgives a mask that drifted or lost its inside) and the share of the track's mask
    inside the detection (an object coming into view grows faster than its warped mask)."""
    if not detection.any() or not track.any():
        return 0.0
    inter = np.logical_and(detection, track).sum()
    union = np.logical_or(detection, track).sum()
    return float(max(inter / union, box_iou(box_xyxy(detection), box_xyxy(track)), inter / track.sum()))


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


def box_iou(a, b) -> float:
    """IoU of two xyxy boxes."""
    iw, ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0])), max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return float(iw * ih / union) if union > 0 else 0.0


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


def _redetect(result: FrameResult, frame: np.ndarray, detections: list[np.ndarray], ids: list[int], carried: dict,
              last_seen: dict, looks: dict, motion: dict, k: int, cfg: dict) -> set[int]:  # fmt: skip
    """Match this frame's detections with every instance so far; re-anchor, revive, or start new ids
    (updates ``result``, ``ids`` and ``carried`` in place); return the ids a detection matched. See
    the module docstring."""
    from scipy.optimize import linear_sum_assignment

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
    pairs = {}  # detection -> (instance, score)
    if score.size:
        rows, cols = linear_sum_assignment(-score)
        pairs = {r: (tracks[c], score[r, c]) for r, c in zip(rows, cols) if score[r, c] > 0}
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
