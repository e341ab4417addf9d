"""OWLv2 (Minderer et al., "Scaling Open-Vocabulary Object Detection", 2023): text -> boxes,
``segment.detector: owlv2``.

It scores every box against each phrase as its own query; the boxes then go through one
class-agnostic NMS (the same object matched by two phrases is one instance), and SAM2 turns each box
into a mask. The module is OWLv2's model family too (classes, a tiny random one).
"""

from __future__ import annotations

import numpy as np
import torch

from ..models.tokenizers import tiny_clip_tokenizer
from ..types import Box, Loaded
from .boxes import box_detector, kept_boxes, refines  # noqa: F401 (refines: SAM2 draws every box)

NOTHING_FOUND = "lower segment.owlv2.score_threshold"  # the hint when nothing is found
TINY_DETECTOR_SIZE = 224
CLASSES = ("Owlv2ForObjectDetection", "Owlv2Processor")  # transformers' model and processor


@torch.inference_mode()
def boxes(model: Loaded, image: np.ndarray, phrases: list[str], knobs: dict) -> list[Box]:
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
    return kept_boxes(result["boxes"].cpu(), result["scores"].cpu(), result["text_labels"], size, knobs["nms_iou"],
                 knobs["max_instances"])  # fmt: skip


def tiny():
    """OWLv2 with a 2-layer ViT at 224 px (patch 16) and a 1-layer text tower over the tiny CLIP tokenizer."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tokenizer = tiny_clip_tokenizer()
    config = Owlv2Config(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            image_size=TINY_DETECTOR_SIZE, patch_size=16,
        ),
        projection_dim=64,
    )  # fmt: skip
    images = Owlv2ImageProcessor(size={"height": TINY_DETECTOR_SIZE, "width": TINY_DETECTOR_SIZE})
    return Owlv2ForObjectDetection(config), Owlv2Processor(image_processor=images, tokenizer=tokenizer)


detect = box_detector(boxes, "score_threshold")  # its boxes as Instances
