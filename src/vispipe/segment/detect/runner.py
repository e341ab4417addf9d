"""The configured detector, then SAM2, on one picture: the first kept frame, a still image, and
re-detection during propagation.

The detector (``segment.detector``, loaded by name from :data:`vispipe.segment.registry.DETECTORS`)
returns :class:`~vispipe.segment.types.Instances`; SAM2 redraws each the way the instances ask
(``points``: its box and points sampled inside it, the seed's way for CLIPSeg; ``boxes``: the box
alone, as Grounded-SAM-2 does; ``None``: the detector's masks are final, SAM 3's without
``segment.sam3.refine``). The result is the same whichever detector ran.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import registry
from ..files.masks import encode_rle
from ..geometry import box_xyxy
from ..refine import Sam2Refiner
from ..timing import Stopwatch
from ..types import Instances, Loaded, Refined


@dataclass
class Found:
    """A detector's instances on one picture and SAM2's answer for each."""

    instances: Instances
    refined: list[Refined]
    union: np.ndarray  # what mask.png shows: CLIPSeg's components, or the final masks

    @property
    def masks(self) -> list[np.ndarray]:
        """SAM2's mask of each instance, or the detector's own where SAM2 gave nothing."""
        return [r.mask if r.mask.any() else c for c, r in zip(self.instances.masks, self.refined)]


class TextDetector:
    """The target's text -> instances -> SAM2's mask of each, with detector ``kind`` (its ``knobs``:
    the ``segment.<kind>`` block; ``model``: its loaded model; ``refiner``: SAM2, None where the
    detector's masks are final)."""

    def __init__(self, kind: str, phrases: list[str], knobs: dict, model: Loaded, refiner: Sam2Refiner | None,
                 seed: int, clock: Stopwatch | None = None):  # fmt: skip
        self.kind, self.phrases, self.knobs, self.model, self.seed = kind, phrases, knobs, model, seed
        self.family = registry.load(registry.DETECTORS, kind)
        self.refiner, self.clock = refiner, clock or Stopwatch()
        self.refines = self.family.refines(knobs)  # SAM2 redraws what the detector found

    def run(self, image: np.ndarray, k: int) -> Found:
        """The instances on kept frame ``k``."""
        inst = self.family.detect(self.model, image, self.phrases, self.knobs)
        if inst.refine == "points":
            rng = np.random.default_rng([self.seed, 0] if k == 0 else [self.seed, k, 1])
            refined = self.refiner.refine(image, inst.masks, rng)
        elif inst.refine == "boxes":
            refined = self.refiner.boxes(image, [b.xyxy for b in inst.boxes])
        else:  # the detector's mask is the instance: its score stands for SAM2's estimate, present by construction
            refined = [Refined(m, b.score, 1.0) for b, m in zip(inst.boxes, inst.masks)]
        found = Found(inst, refined, inst.union if inst.union is not None else np.zeros(image.shape[:2], bool))
        if inst.union is None:
            for m in found.masks:
                found.union |= m
        return found

    def detect(self, image: np.ndarray, k: int) -> list[np.ndarray]:
        """The instance masks on kept frame ``k`` (SAM2's, or the detector's region where SAM2 gave
        nothing). Timed as ``re-detection`` (the detector; SAM2's share goes to its own stages)."""
        with self.clock("re-detection"):
            return self.run(image, k).masks

    def entries(self, found: Found) -> list[dict]:
        """The instances of ``found`` as instances.json lists them."""
        return [
            {
                "id": i,
                "box": box_xyxy(mask),
                "area": int(mask.sum()),
                **info,
                "sam2_iou": round(ref.iou_score, 4) if self.refines else None,
                "sam2_object_score": round(ref.object_score, 4) if self.refines else None,
                # SAM2 gave nothing (or was not asked, sam3 without refine): the detector's own region
                "mask_from": "sam2" if self.refines and ref.mask.any() else self.kind,
                "segmentation": encode_rle(mask),
            }
            for i, (mask, info, ref) in enumerate(zip(found.masks, found.instances.info, found.refined), start=1)
        ]
