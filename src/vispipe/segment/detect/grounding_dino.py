"""Grounding DINO (Liu et al., "Grounding DINO: Marrying DINO with Grounded Pre-Training for Open-Set
Object Detection", 2023): text -> boxes, ``segment.detector: grounding_dino``.

It reads one caption of phrases, each ending with a full stop ("a cat. a dog.") and scores each box
against every token; its post-processing keeps the boxes whose best token reaches ``box_threshold``
and names each by its tokens above ``text_threshold``. The boxes then go through one class-agnostic
NMS: the same object matched by two phrases is one instance. SAM2 turns each box into a mask, as
Grounded-SAM-2 does. The module is Grounding DINO's model family too (classes, a tiny random one).
"""

from __future__ import annotations

import numpy as np
import torch

from ..models.tokenizers import tiny_bert_tokenizer
from ..types import Box, Loaded
from .boxes import box_detector, kept_boxes, refines  # noqa: F401 (refines: SAM2 draws every box)

NOTHING_FOUND = "lower segment.grounding_dino.box_threshold"  # the hint when nothing is found
TINY_DETECTOR_SIZE = 224
CLASSES = ("GroundingDinoForObjectDetection", "GroundingDinoProcessor")  # transformers' model and processor


def caption(phrases: list[str]) -> str:
    """Grounding DINO's text: lower-case phrases, each ended by a full stop."""
    return " ".join(p.strip().lower().rstrip(".") + "." for p in phrases)


def matched_phrase(label: str, phrases: list[str]) -> str:
    """The configured phrase a Grounding DINO label names: its tokens above ``text_threshold`` may span
    two phrases or be partial words, so the phrase sharing most words with it (the first on a tie)."""
    words = set(label.replace(".", " ").lower().split())
    shared = [len(words & set(p.lower().rstrip(".").split())) for p in phrases]
    return phrases[shared.index(max(shared))]


@torch.inference_mode()
def boxes(model: Loaded, image: np.ndarray, phrases: list[str], knobs: dict) -> list[Box]:
    """Grounding DINO's boxes for ``phrases`` on an RGB ``image`` (``segment.grounding_dino`` knobs)."""
    size = image.shape[:2]
    inputs = model.processor(images=image, text=caption(phrases), return_tensors="pt").to(model.device)
    outputs = model.model(**inputs)
    (result,) = model.processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=knobs["box_threshold"], text_threshold=knobs["text_threshold"],
        target_sizes=[size],
    )  # fmt: skip
    named = [matched_phrase(label, phrases) for label in result["text_labels"]]
    return kept_boxes(
        result["boxes"].cpu(), result["scores"].cpu(), named, size, knobs["nms_iou"], knobs["max_instances"]
    )


def tiny():
    """Grounding DINO with a one-block-per-stage Swin, a one-layer BERT, one encoder and two decoder
    layers (the box heads of decoder layers after the first are tied to its own: two is the least)."""
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    tokenizer = tiny_bert_tokenizer()
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=7, image_size=TINY_DETECTOR_SIZE,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=BertConfig(
            vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=128, max_position_embeddings=256,
        ),
        d_model=64, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=30, encoder_n_points=2,
        decoder_n_points=2, max_text_len=64,
    )  # fmt: skip
    images = GroundingDinoImageProcessor(
        size={"shortest_edge": TINY_DETECTOR_SIZE, "longest_edge": 2 * TINY_DETECTOR_SIZE}
    )
    return GroundingDinoForObjectDetection(config), GroundingDinoProcessor(image_processor=images, tokenizer=tokenizer)


detect = box_detector(boxes, "box_threshold")  # its boxes as Instances
