"""The segmentation package's shared vocabulary: what detectors, refiners and trackers hand each other.

NumPy only, so that every module can import it and it imports none of theirs (the arrows point
here). A detector returns :class:`Instances`; SAM2 answers each with a :class:`Refined`; a tracker
turns frames into :class:`FrameResult`; the Protocols say what the generic loops need of each, so
tests can script any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .geometry import box_xyxy

STATES = ("refined", "warped", "lost")  # an instance's state on a frame (tracks.json)


@dataclass
class Loaded:
    """A model in eval mode on its device, its processor and what ``source.json`` says about it."""

    model: Any
    processor: Any
    source: dict
    device: Any  # torch.device

    @property
    def random(self) -> bool:
        return bool(self.source.get("random_weights"))


@dataclass
class Box:
    """One detected instance: ``xyxy`` in pixels (x1, y1 exclusive, inside the image), its score and phrase."""

    xyxy: list[float]
    score: float
    phrase: str


@dataclass
class Instances:
    """What a detector found on one picture, best first: every detector converts its own output into
    this (as supervision's ``Detections`` ``from_<model>``), and the rest of the pipeline reads
    nothing else of it.

    ``refine`` says how SAM2 redraws each instance: ``points`` (its box and points sampled from
    ``masks``, the seed's way for CLIPSeg's components), ``boxes`` (the box alone) or ``None`` (the
    masks are the instances, e.g. SAM 3's own)."""

    masks: list[np.ndarray]  # the detector's own region of each: a component, a box filled, a mask
    info: list[dict]  # what the detector said of each (instances.json): score, box, area, phrase
    threshold: dict  # {"method": how it thresholded, "value": at what}
    refine: str | None  # "points", "boxes" or None
    boxes: list[Box] | None = None  # a box detector's boxes (drawn in heatmap.png) ...
    heat: np.ndarray | None = None  # ... or CLIPSeg's heatmap
    union: np.ndarray | None = None  # mask.png: CLIPSeg's components; None: the final masks' union


@dataclass
class Refined:
    """SAM2's answer for one instance."""

    mask: np.ndarray  # bool, image size
    iou_score: float  # SAM2's own estimate of the mask's IoU
    object_score: float  # logit that the object is present (< 0: absent, e.g. occluded)


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


def scored_info(state: str, reason: str, mask: np.ndarray | None, score: float | None) -> dict:
    """An instance's bookkeeping from a tracker that gives a score of its own but no IoU estimate
    (SAM2's and EdgeTAM's object score, SAM 3's detection score)."""
    info = instance_info(state, reason, mask)
    info["object_score"] = None if score is None else round(score, 4)
    return info


class Refiner(Protocol):
    """What the loops need from SAM2 (tests script it)."""

    def refine(self, image: np.ndarray, masks: Sequence[np.ndarray], rng: np.random.Generator) -> list[Refined]: ...


class Detector(Protocol):
    """What re-detection needs: the target's instance masks on one frame (tests script it)."""

    def detect(self, image: np.ndarray, k: int) -> list[np.ndarray]: ...


class Stepper(Protocol):
    """A tracker: what carries the instances from one kept frame to the next (one per
    ``segment.propagate.method``, in ``track/``), inside the generic loop of :mod:`.track.loop`."""

    def start(self, image: np.ndarray, first: dict[int, np.ndarray]) -> None:
        """Begin on the first frame and its instances."""

    def step(self, k: int, frame: np.ndarray, extra, ids: Sequence[int], carried: dict, hidden: set) -> FrameResult:
        """Frame ``k``'s masks and bookkeeping for every id; updates ``carried`` (id -> the mask that
        goes on). ``extra`` is what the frame iterator paired with the frame (the flow, for the flow)."""

    def anchor(self, k: int, frame: np.ndarray, masks: dict[int, np.ndarray]) -> None:
        """Re-detection found these masks on frame ``k`` (re-anchored, revived or new ids)."""
