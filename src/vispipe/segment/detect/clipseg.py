"""Text prompt -> CLIPSeg heatmap -> instances.

CLIPSeg (Lüddecke & Ecker, "Image Segmentation Using Text and Image Prompts", CVPR 2022) adds a light
decoder to a frozen CLIP and outputs one logit per pixel for a text prompt. The heatmap is split into
instances as in the seed notebook: Otsu's threshold (Otsu 1979, ``cv2.THRESH_OTSU``), connected
components above ``min_cc_area`` pixels, and, when that leaves nothing usable, the top percentile of
the heatmap instead. Each component becomes one instance for SAM2 to refine, from its box and points sampled inside it.

``segment.detector: clipseg`` (the default). The module is CLIPSeg's model family too: the classes
that load it and a tiny random one (:mod:`vispipe.segment.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..geometry import box_xyxy
from ..models.tokenizers import tiny_clip_tokenizer
from ..types import Instances, Loaded

NOTHING_FOUND = "lower segment.clipseg.min_cc_area / min_score"  # the hint when nothing is found
TINY_CLIPSEG_SIZE = 224  # CLIPSeg's patch 16 and decoder, small enough for a laptop CPU


def classes(video: bool = False):
    """(model class, processor class)."""
    import transformers as t

    return t.CLIPSegForImageSegmentation, t.CLIPSegProcessor


def refines(knobs: dict) -> bool:
    """SAM2 redraws every instance (from its box and points)."""
    return True


def detect(model: Loaded, image: np.ndarray, phrases: list[str], knobs: dict) -> Instances:
    """The heatmap of each phrase, their pixelwise maximum split into components
    (``segment.clipseg`` knobs); each names the phrase it scores highest on."""
    heats = heatmaps(model, image, phrases)
    heat = heats.max(axis=0)
    found = find_instances(
        heat, knobs["min_cc_area"], knobs["top_pct_fallback"], knobs["min_score"], knobs["max_instances"]
    )
    info = [
        {"detector_score": round(c.score, 4), "detector_box": c.box, "detector_area": c.area,
         "phrase": phrases[int(np.argmax([h[c.mask].mean() for h in heats]))]}
        for c in found.components
    ]  # fmt: skip
    value = None if found.method == "none" else round(found.threshold, 4)
    return Instances([c.mask for c in found.components], info, {"method": found.method, "value": value}, "points",
                     heat=heat, union=found.mask)  # fmt: skip


@torch.inference_mode()
def heatmaps(clipseg: Loaded, image: np.ndarray, phrases: list[str]) -> np.ndarray:
    """CLIPSeg's per-pixel probability (sigmoid of its logits) for each phrase, ``(len(phrases), H, W)``
    float32 at the image's size, in one batch."""
    inputs = clipseg.processor(text=phrases, images=[image] * len(phrases), padding="max_length", return_tensors="pt")
    logits = clipseg.model(**inputs.to(clipseg.device)).logits
    probs = torch.sigmoid(logits.reshape(-1, *logits.shape[-2:])).float().cpu().numpy()
    size = (image.shape[1], image.shape[0])
    return np.stack([cv2.resize(p, size, interpolation=cv2.INTER_LINEAR) for p in probs])


def heatmap(clipseg: Loaded, image: np.ndarray, prompt: str | list[str]) -> np.ndarray:
    """CLIPSeg's probability map for ``prompt``; for several phrases, their pixelwise maximum."""
    return heatmaps(clipseg, image, [prompt] if isinstance(prompt, str) else list(prompt)).max(axis=0)


@dataclass
class Component:
    """One connected region of the thresholded heatmap."""

    mask: np.ndarray  # bool, image size
    box: list[int]  # x0, y0, x1, y1 (x1, y1 exclusive)
    area: int
    score: float  # mean CLIPSeg probability inside


@dataclass
class Detection:
    """The instances of one heatmap and how they were found."""

    components: list[Component]
    method: str  # "otsu", "top_pct" or "none"
    threshold: float  # probability threshold of that method (nan for "none")
    shape: tuple[int, int]  # of the heatmap

    @property
    def mask(self) -> np.ndarray:
        """Union of the kept components."""
        out = np.zeros(self.shape, dtype=bool)
        for c in self.components:
            out |= c.mask
        return out


def _components(foreground: np.ndarray, heat: np.ndarray, min_cc_area: int, min_score: float) -> list[Component]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground.astype(np.uint8), connectivity=8)
    out = []
    for i in range(1, count):
        area = int(stats[i, cv2.CC_STAT_AREA])
        if area < min_cc_area:
            continue
        mask = labels == i
        score = float(heat[mask].mean())
        if score >= min_score:
            out.append(Component(mask, box_xyxy(mask), area, score))
    return out


def find_instances(
    heat: np.ndarray, min_cc_area: int, top_pct_fallback: float, min_score: float, max_instances: int
) -> Detection:
    """Split a heatmap (probabilities in [0, 1]) into at most ``max_instances`` components, best first.

    Otsu first; if no component is both large enough and confident enough, the pixels at or above the
    ``top_pct_fallback`` quantile; a flat heatmap (nothing stands out) yields no instance.
    """
    u8 = np.round(np.clip(heat, 0, 1) * 255).astype(np.uint8)
    if u8.min() == u8.max():
        return Detection([], "none", float("nan"), heat.shape[:2])
    otsu, foreground = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    comps, method, threshold = _components(foreground > 0, heat, min_cc_area, min_score), "otsu", otsu / 255
    if not comps:
        q = float(np.quantile(heat, top_pct_fallback))
        comps = _components(heat >= q, heat, min_cc_area, min_score) if q > float(heat.min()) else []
        method, threshold = ("top_pct", q) if comps else ("none", float("nan"))
    comps.sort(key=lambda c: c.score, reverse=True)
    return Detection(comps[:max_instances], method, threshold, heat.shape[:2])


def tiny():
    """A tiny random CLIPSeg at 224 px: a 2-layer text and 3-layer vision tower, 64 wide."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    tokenizer = tiny_clip_tokenizer()
    config = CLIPSegConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2,
            image_size=TINY_CLIPSEG_SIZE, patch_size=16,
        ),
        projection_dim=64, extract_layers=[0, 1, 2], reduce_dim=32,
        decoder_intermediate_size=64, decoder_num_attention_heads=2,
    )  # fmt: skip
    # CIDAS/clipseg-rd64-refined's preprocessing: ImageNet mean/std, square resize
    images = ViTImageProcessor(
        size={"height": TINY_CLIPSEG_SIZE, "width": TINY_CLIPSEG_SIZE},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    return CLIPSegForImageSegmentation(config), CLIPSegProcessor(image_processor=images, tokenizer=tokenizer)
