"""SAM 3 (Carion et al., "SAM 3: Segment Anything with Concepts", 2025) as a detector: text -> every
instance's mask in one model (``segment.detector: sam3``). Its concept tracker
(``segment.propagate.method: sam3_video``) is :mod:`vispipe.segment.track.sam3_video`.

One folder serves both, as for SAM2: fetch_models saves ``Sam3VideoModel`` + ``Sam3VideoProcessor``
(the detector and the tracker), and ``Sam3Model`` + ``Sam3Processor`` load the detector's share; this
module is the family of both (classes, a tiny random one).

``Sam3Model`` scores its queries against each phrase (one batch, a phrase per image copy);
``post_process_instance_segmentation`` keeps those at ``score_threshold`` and binarises their masks
at ``mask_threshold``; one class-agnostic NMS across phrases (the same object named by two phrases is
one instance) and ``max_instances`` follow, as for the box detectors. SAM2 refines each box only with
``refine: true``: SAM 3's own masks are the instances otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...errors import UserError
from ..geometry import keep_boxes
from ..models.tokenizers import tiny_clip_tokenizer
from ..types import Box, Instances, Loaded

NOTHING_FOUND = "lower segment.sam3.score_threshold"  # the hint when nothing is found
FETCH_VIDEO = True  # fetch_models saves the video model (detector and tracker); Sam3Model loads its share


def classes(video: bool = False):
    """(model class, processor class): the detector, or ``video``: the concept tracker."""
    import transformers as t

    return (t.Sam3VideoModel, t.Sam3VideoProcessor) if video else (t.Sam3Model, t.Sam3Processor)


def refines(knobs: dict) -> bool:
    """SAM2 redraws SAM 3's masks from their boxes only with ``segment.sam3.refine``."""
    return bool(knobs["refine"])


def detect(model: Loaded, image: np.ndarray, phrases: list[str], knobs: dict) -> Instances:
    """SAM 3's instances (:func:`found`), its own masks; with ``refine``, SAM2 redraws each from its box."""
    pairs = found(model, image, phrases, knobs)
    info = [{"detector_score": b.score, "detector_box": b.xyxy, "detector_area": int(m.sum()), "phrase": b.phrase}
            for b, m in pairs]  # fmt: skip
    threshold = {"method": "score_threshold", "value": knobs["score_threshold"]}
    return Instances([m for _, m in pairs], info, threshold, "boxes" if knobs["refine"] else None,
                     boxes=[b for b, _ in pairs])  # fmt: skip


TEXT_TOKENS = 32  # SAM 3's processors pad every phrase to this many tokens and never truncate


def check_phrases(processor, phrases: Sequence[str]) -> None:
    """A UserError naming a phrase too long for SAM 3 (the model would fail on its shape)."""
    for phrase in phrases:
        n = len(processor.tokenizer(phrase).input_ids)
        if n > TEXT_TOKENS:
            raise UserError(f"the phrase {phrase!r} is {n} tokens, and SAM 3 reads at most {TEXT_TOKENS}: shorten it "
                            "in segment.targets (a noun phrase, e.g. 'a white rabbit', is what SAM 3 is trained on)")  # fmt: skip


@torch.inference_mode()
def found(model: Loaded, image: np.ndarray, phrases: list[str], knobs: dict) -> list[tuple[Box, np.ndarray]]:
    """SAM 3's instances of ``phrases`` on an RGB ``image`` (``segment.sam3`` knobs): (box, mask) pairs,
    best first, one NMS across phrases."""
    h, w = image.shape[:2]
    check_phrases(model.processor, phrases)
    inputs = model.processor(images=[image] * len(phrases), text=phrases, return_tensors="pt").to(model.device)
    outputs = model.model(**inputs)
    results = model.processor.post_process_instance_segmentation(
        outputs, threshold=knobs["score_threshold"], mask_threshold=knobs["mask_threshold"],
        target_sizes=[(h, w)] * len(phrases),
    )  # fmt: skip
    boxes, scores, masks, named = [], [], [], []
    for phrase, r in zip(phrases, results):
        boxes.append(r["boxes"].float().cpu())
        scores.append(r["scores"].float().cpu())
        masks.append(r["masks"].bool().cpu())
        named += [phrase] * len(r["scores"])
    if not named:
        return []
    boxes, scores, masks = torch.cat(boxes), torch.cat(scores), torch.cat(masks)
    non_empty = masks.flatten(1).any(1)  # an empty mask is no instance
    keep = keep_boxes(boxes, scores, (h, w), knobs["nms_iou"], knobs["max_instances"], valid=non_empty)
    return [(Box([round(float(v), 2) for v in boxes[i]], round(float(scores[i]), 4), named[i]), masks[i].numpy())
            for i in keep]  # fmt: skip


# ------------------------------------------------------------------------------- tiny model


@torch.no_grad()
def spread_scores(model):
    """A randomly initialised SAM 3 scores every query about 0.25: spread the scores and open the
    presence gate, so that it finds (and tracks) instances at the usual thresholds, as the real one does."""
    model.detector_model.dot_product_scoring.query_proj.weight.mul_(30)
    model.detector_model.detr_decoder.presence_head.layer3.bias.fill_(4.0)
    return model


TINY_SIZE, PATCH, HIDDEN = 112, 14, 128


def tiny(tokenizer=None):
    """A tiny random SAM 3 (detector and tracker) at 112 px, patch 14 (an 8x8 token grid): a 2-layer
    ViT (one windowed, one global layer), a 1-layer CLIP text tower, one DETR encoder and decoder
    layer with 8 queries, and a one-layer memory tracker. Limits of transformers' SAM 3: the tracker's
    width is a multiple of 64 above 64 (its object pointers split into 64-wide tokens) and its memory
    64 channels; the tracker config must be given ``image_size`` (its setter derives the sizes)."""
    if tokenizer is None:
        tokenizer = tiny_clip_tokenizer(max_length=32)  # SAM 3's processors pad the text to 32 tokens
    from transformers import (
        CLIPTextConfig,
        Sam3Config,
        Sam3ImageProcessor,
        Sam3TrackerVideoConfig,
        Sam3VideoConfig,
        Sam3VideoModel,
        Sam3VideoProcessor,
    )
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor
    from transformers.models.sam3.configuration_sam3 import (
        Sam3DETRDecoderConfig,
        Sam3DETREncoderConfig,
        Sam3GeometryEncoderConfig,
        Sam3MaskDecoderConfig,
        Sam3VisionConfig,
        Sam3ViTConfig,
    )
    from transformers.models.sam3_tracker_video.configuration_sam3_tracker_video import (
        Sam3TrackerVideoMaskDecoderConfig,
        Sam3TrackerVideoPromptEncoderConfig,
    )

    s, g = TINY_SIZE, TINY_SIZE // PATCH
    vision = Sam3VisionConfig(
        backbone_config=Sam3ViTConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=s,
            patch_size=PATCH, pretrain_image_size=s, window_size=4, global_attn_indexes=[1],
        ),
        fpn_hidden_size=HIDDEN, backbone_feature_sizes=[[4 * g, 4 * g], [2 * g, 2 * g], [g, g]],
    )  # fmt: skip
    text = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=32, hidden_act="gelu", bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip  # SAM 3's processors pad the text to 32 tokens
    common = dict(hidden_size=HIDDEN, num_attention_heads=2, intermediate_size=128)
    detector = Sam3Config(
        vision_config=vision, text_config=text,
        geometry_encoder_config=Sam3GeometryEncoderConfig(num_layers=1, roi_size=3, **common),
        detr_encoder_config=Sam3DETREncoderConfig(num_layers=1, **common),
        detr_decoder_config=Sam3DETRDecoderConfig(num_layers=1, num_queries=8, **common),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=HIDDEN, num_attention_heads=2, num_upsampling_stages=3),
    )  # fmt: skip
    tracker = Sam3TrackerVideoConfig(
        vision_config=vision,  # the tracker reads the detector's image features: only the sizes count here
        prompt_encoder_config=Sam3TrackerVideoPromptEncoderConfig(hidden_size=HIDDEN, image_size=s, patch_size=PATCH),
        mask_decoder_config=Sam3TrackerVideoMaskDecoderConfig(hidden_size=HIDDEN, mlp_dim=128, num_attention_heads=2,
                                                              iou_head_hidden_dim=HIDDEN),
        image_size=s, memory_attention_hidden_size=HIDDEN, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=128, memory_encoder_hidden_size=HIDDEN,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=HIDDEN, memory_fuser_embed_dim=HIDDEN,
        memory_fuser_intermediate_dim=128,
    )  # fmt: skip
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=4 * g)
    model = spread_scores(Sam3VideoModel(config))
    m = 4 * g  # the masks are 4x the token grid
    images = Sam3ImageProcessor(size={"height": s, "width": s}, mask_size={"height": m, "width": m})
    frames = Sam2VideoVideoProcessor(size={"height": s, "width": s}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return model, Sam3VideoProcessor(image_processor=images, video_processor=frames, tokenizer=tokenizer)
