"""Text -> instance boxes with an open-vocabulary detector: Grounding DINO or OWLv2.

Grounding DINO (Liu et al., "Grounding DINO: Marrying DINO with Grounded Pre-Training for Open-Set
Object Detection", 2023) reads one caption of phrases, each ending with a full stop ("a cat. a dog.")
and scores each box against every token; its post-processing keeps the boxes whose best token
reaches ``box_threshold`` and names each by its tokens above ``text_threshold``. OWLv2 (Minderer et
al., "Scaling Open-Vocabulary Object Detection", 2023) scores every box against each phrase as its
own query. Either way the boxes then go through one class-agnostic NMS (``torchvision.ops.nms``):
the same object matched by two phrases is one instance. SAM2 turns each box into a mask
(:meth:`vispipe.segment.sam2.Sam2Refiner.boxes`), as Grounded-SAM-2 does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import nms

from .models import Loaded


@dataclass
class Box:
    """One detected instance: ``xyxy`` in pixels (x1, y1 exclusive, inside the image), its score and phrase."""

    xyxy: list[float]
    score: float
    phrase: str


def caption(phrases: list[str]) -> str:
    """Grounding DINO's text: lower-case phrases, each ended by a full stop."""
    return " ".join(p.strip().lower().rstrip(".") + "." for p in phrases)


def matched_phrase(label: str, phrases: list[str]) -> str:
    """The configured phrase a Grounding DINO label names: its tokens above ``text_threshold`` may span
    two phrases or be partial words, so the phrase sharing most words with it (the first on a tie)."""
    words = set(label.replace(".", " ").lower().split())
    shared = [len(words & set(p.lower().rstrip(".").split())) for p in phrases]
    return phrases[shared.index(max(shared))]


def _keep(boxes: torch.Tensor, scores: torch.Tensor, phrases: list[str], size: tuple[int, int], nms_iou: float,
          max_instances: int) -> list[Box]:  # fmt: skip
    """Clip to the image, drop empty boxes, NMS across phrases, best ``max_instances`` first."""
    h, w = size
    boxes = boxes.float().clone()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    scores = scores.float()
    valid = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
    index = torch.nonzero(valid).flatten()
    keep = index[nms(boxes[index], scores[index], nms_iou)] if len(index) else index  # sorted by score
    return [
        Box([round(float(v), 2) for v in boxes[i]], round(float(scores[i]), 4), phrases[i])
        for i in keep[:max_instances].tolist()
    ]


@torch.inference_mode()
def grounding_dino(model: Loaded, image: np.ndarray, phrases: list[str], knobs: dict) -> list[Box]:
    """Grounding DINO's boxes for ``phrases`` on an RGB ``image`` (``segment.grounding_dino`` knobs)."""
    size = image.shape[:2]
    inputs = model.processor(images=image, text=caption(phrases), return_tensors="pt").to(model.device)
    outputs = model.model(**inputs)
    (result,) = model.processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=knobs["box_threshold"], text_threshold=knobs["text_threshold"],
        target_sizes=[size],
    )  # fmt: skip
    named = [matched_phrase(label, phrases) for label in result["text_labels"]]
    return _keep(result["boxes"].cpu(), result["scores"].cpu(), named, size, knobs["nms_iou"], knobs["max_instances"])


@torch.inference_mode()
def owlv2(model: Loaded, image: np.ndarray, phrases: list[str], knobs: dict) -> list[Box]:
    """OWLv2's boxes for ``phrases`` on an RGB ``image`` (``segment.owlv2`` knobs).

    OWLv2 pads the image to a square at the bottom and right before resizing it, so its relative boxes
    are fractions of the longer side on both axes; transformers' post-processing scales them so when
    given the image's own size, and they are then clipped to the image."""
    size = image.shape[:2]
    inputs = model.processor(text=[phrases], images=image, return_tensors="pt").to(model.device)
    outputs = model.model(**inputs)
    (result,) = model.processor.post_process_grounded_object_detection(
        outputs, threshold=knobs["score_threshold"], target_sizes=[size], text_labels=[phrases]
    )
    return _keep(result["boxes"].cpu(), result["scores"].cpu(), result["text_labels"], size, knobs["nms_iou"],
                 knobs["max_instances"])  # fmt: skip


DETECT = {"grounding_dino": grounding_dino, "owlv2": owlv2}
