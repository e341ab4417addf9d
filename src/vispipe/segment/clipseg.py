"""Text prompt -> CLIPSeg heatmap -> instances.

CLIPSeg (Lüddecke & Ecker, "Image Segmentation Using Text and Image Prompts", CVPR 2022) adds a light
decoder to a frozen CLIP and outputs one logit per pixel for a text prompt. The heatmap is split into
instances as in the seed notebook: Otsu's threshold (Otsu 1979, ``cv2.THRESH_OTSU``), connected
components above ``min_cc_area`` pixels, and, when that leaves nothing usable, the top percentile of
the heatmap instead. Each component becomes one instance for SAM2 to refine.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .masks import box_xyxy
from .models import Loaded


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
