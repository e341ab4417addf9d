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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .flow import backward_flow, warp_mask
from .masks import box_xyxy
from .sam2 import Refined

STATES = ("refined", "warped", "lost")


class Refiner(Protocol):
    """What the loop needs from SAM2 (tests script it)."""

    def refine(self, image: np.ndarray, masks: Sequence[np.ndarray], rng: np.random.Generator) -> list[Refined]: ...


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


def _info(state: str, reason: str, mask: np.ndarray | None, refined: Refined | None = None) -> dict:
    visible = mask is not None and state != "lost"
    return {
        "state": state,
        "reason": reason,
        "area": int(mask.sum()) if visible else 0,
        "box": box_xyxy(mask) if visible else None,
        "sam2_iou": None if refined is None else round(refined.iou_score, 4),
        "object_score": None if refined is None else round(refined.object_score, 4),
    }


def propagate(
    frames: Iterable[np.ndarray],
    first: dict[int, np.ndarray],
    refiner: Refiner | None,
    flow_params: dict,
    bounds: dict,
    seed: int,
) -> Iterator[FrameResult]:
    """Yield one :class:`FrameResult` per frame, the first frame's being ``first`` (id -> bool mask);
    ``refiner`` None warps without refining."""
    frames = iter(frames)
    previous = next(frames)
    carried: dict[int, np.ndarray] = {i: m for i, m in first.items() if m.any()}
    yield FrameResult(dict(carried), {i: _info("refined", "first frame", m) for i, m in carried.items()})
    ids = sorted(carried)
    for k, frame in enumerate(frames, start=1):
        result = FrameResult()
        flow = backward_flow(previous, frame, flow_params) if carried else None
        warped = {i: warp_mask(m, flow) for i, m in carried.items()}
        areas = {i: (int(carried[i].sum()), int(warped[i].sum())) for i in warped}
        alive = [i for i in warped if not vanished(*areas[i], bounds)]
        rng = np.random.default_rng([seed, k])
        refined = dict(zip(alive, refiner.refine(frame, [warped[i] for i in alive], rng))) if refiner else {}
        for i in ids:
            if i not in carried:
                result.info[i] = _info("lost", "lost earlier", None)
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
            result.info[i] = _info(d.state, d.reason, mask, refined.get(i))
        previous = frame
        yield result
