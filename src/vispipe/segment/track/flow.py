"""The seed's propagator (``segment.propagate.method: flow``): warp by optical flow, refine with SAM2,
fall back.

For every next kept frame and every instance (the seed notebook's loop, with its fallbacks made explicit):

1. warp the instance's previous mask with the optical flow;
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

The flow: Farnebäck ("Two-Frame Motion Estimation Based on Polynomial Expansion", SCIA 2003;
``cv2.calcOpticalFlowFarneback``, the seed's) or DIS (Kroeger et al., "Fast Optical Flow using Dense
Inverse Search", ECCV 2016; ``cv2.DISOpticalFlow``), by ``segment.flow.method``. It is computed from
the current frame back to the previous one, so every pixel of the current frame knows where it came
from and samples the previous mask there (backward warping with ``cv2.remap``): the warped mask has
no holes, which forward splatting would leave.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..timing import Stopwatch, ahead
from ..types import Detector, FrameResult, Refined, Refiner, Stepper, instance_info
from . import Context
from .loop import track


def gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}  # fmt: skip


@lru_cache(maxsize=4)
def dis(preset: str) -> cv2.DISOpticalFlow:
    """OpenCV's DIS flow object for ``preset`` (made once per process: it holds only settings)."""
    return cv2.DISOpticalFlow_create(DIS_PRESETS[preset])


def backward_flow(previous: np.ndarray, current: np.ndarray, params: dict) -> np.ndarray:
    """Flow ``(H, W, 2)`` such that ``current[y, x] ~ previous[y + f[..., 1], x + f[..., 0]]``.

    ``params`` is the ``segment.flow`` config block (``method`` farneback or dis); with ``scale`` < 1
    the flow is computed on downsized frames and scaled back up."""
    prev, cur = gray(previous), gray(current)
    h, w = cur.shape
    scale = params["scale"]
    if scale != 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        prev = cv2.resize(prev, size, interpolation=cv2.INTER_AREA)
        cur = cv2.resize(cur, size, interpolation=cv2.INTER_AREA)
    if params.get("method", "farneback") == "dis":
        flow = dis(params.get("dis_preset", "fast")).calc(cur, prev, None)
    else:
        flow = cv2.calcOpticalFlowFarneback(
            cur, prev, None, params["pyr_scale"], params["levels"], params["winsize"],
            params["iterations"], params["poly_n"], params["poly_sigma"], 0,
        )  # fmt: skip
    if scale != 1:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / scale
    return flow


def warp_mask(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The boolean ``mask`` of the previous frame, moved onto the current one by a backward flow."""
    h, w = mask.shape
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(
        mask.astype(np.float32), grid_x + flow[..., 0], grid_y + flow[..., 1],
        interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip
    return warped >= 0.5


# -------------------------------------------------------------------------------- the propagator


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


def propagate(frames: Iterable[np.ndarray], first: dict[int, np.ndarray], refiner: Refiner | None, flow_params: dict,
              bounds: dict, seed: int, detector: Detector | None = None, redetect: dict | None = None,
              clock: Stopwatch | None = None, prefetch: bool = False) -> Iterator[FrameResult]:  # fmt: skip
    """The flow propagator over ``frames`` (see :func:`track`); ``refiner`` None warps without
    refining; ``prefetch`` computes the next flows in a background thread."""
    items = with_flow(frames, flow_params, clock)
    return track(ahead(items) if prefetch else items, first, FlowStepper(refiner, bounds, seed), detector, redetect)


def refines(s) -> bool:
    """SAM2 refines every warped mask unless ``segment.propagate.refine`` is false."""
    return s.propagate.get("refine", True)


def build(ctx: Context) -> tuple[Iterable[tuple[np.ndarray, object]], Stepper]:
    """The frames paired with their flows (computed ahead in a thread with ``prefetch``), and the stepper."""
    items = with_flow(ctx.frames, ctx.settings.flow, ctx.clock)
    stepper = FlowStepper(ctx.refiner, ctx.settings.propagate, ctx.settings.seed)
    return (ahead(items) if ctx.prefetch else items), stepper
