"""SAM2 refinement: each coarse mask becomes a box plus sampled points, SAM2 returns a sharp mask
(:class:`~vispipe.segment.types.Refined`). SAM2's classes and tiny model: :mod:`.models.sam2`.

SAM 2 (Ravi et al., "SAM 2: Segment Anything in Images and Videos", 2024) takes boxes and labelled
points as prompts. As in the seed notebook, every instance is prompted with its bounding box,
``n_pos`` positive points drawn inside the coarse mask and ``n_neg`` negative points drawn in a
``border``-pixel ring just outside it. All instances of a frame go through SAM2 in one batch, so the
image encoder runs once per frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import cv2
import numpy as np
import torch

from .geometry import box_xyxy
from .timing import Stopwatch
from .types import Loaded, Refined


def ring(mask: np.ndarray, border: int) -> np.ndarray:
    """The pixels within ``border`` pixels outside ``mask`` (a dilation by a disc, minus the mask)."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * border + 1, 2 * border + 1))
    return cv2.dilate(mask.astype(np.uint8), disc).astype(bool) & ~mask


def sample_points(
    mask: np.ndarray, n_pos: int, n_neg: int, border: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Points ``(N, 2)`` as (x, y) and labels ``(N,)`` (1 inside, 0 outside) for one mask.

    Fewer points come back when the mask or its ring has fewer pixels than asked for."""
    points, labels = [], []
    for region, n, label in ((mask, n_pos, 1), (ring(mask, border), n_neg, 0)):
        ys, xs = np.nonzero(region)
        pick = rng.choice(len(xs), size=min(n, len(xs)), replace=False)
        points.append(np.stack([xs[pick], ys[pick]], axis=1))
        labels.append(np.full(len(pick), label))
    return np.concatenate(points).astype(np.float32), np.concatenate(labels).astype(np.int64)


def autocast_dtype(setting: str, device) -> torch.dtype | None:
    """``segment.sam2.autocast``: the dtype SAM2 runs under, or None for float32 (``auto``: bfloat16 on
    CUDA, float32 elsewhere)."""
    if setting == "auto":
        setting = "bfloat16" if device.type == "cuda" else "none"
    return None if setting == "none" else getattr(torch, setting)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The context SAM2 runs in: ``torch.autocast`` to ``dtype``, or nothing for float32 (None)."""
    return torch.autocast(device.type, dtype) if dtype is not None else nullcontext()


class Sam2Refiner:
    """Refine coarse masks on an image with SAM2 (``Sam2Model`` + ``Sam2Processor``)."""

    def __init__(self, sam2: Loaded, n_pos: int, n_neg: int, border: int, clock: Stopwatch | None = None,
                 autocast: torch.dtype | None = None):  # fmt: skip
        """``clock`` times the stages (preprocess, image encoder, prompt + mask decode, postprocess);
        ``autocast``: a dtype to run the model under (``torch.autocast``), or None."""
        self.sam2, self.n_pos, self.n_neg, self.border = sam2, n_pos, n_neg, border
        self.clock, self.autocast = clock or Stopwatch(), autocast
        self.clock.time_module(sam2.model.vision_encoder, "sam2 image encoder")

    @torch.inference_mode()
    def refine(self, image: np.ndarray, masks: Sequence[np.ndarray], rng: np.random.Generator) -> list[Refined]:
        """One :class:`Refined` per (non-empty) coarse mask, in order."""
        if not masks:
            return []
        prompts = [sample_points(m, self.n_pos, self.n_neg, self.border, rng) for m in masks]
        kwargs = {"input_boxes": [[box_xyxy(m) for m in masks]]}
        if self.n_pos + self.n_neg > 0:
            kwargs["input_points"] = [[p.tolist() for p, _ in prompts]]
            kwargs["input_labels"] = [[lab.tolist() for _, lab in prompts]]
        return self._decode(image, kwargs, len(masks))

    @torch.inference_mode()
    def boxes(self, image: np.ndarray, boxes: Sequence[Sequence[float]]) -> list[Refined]:
        """One :class:`Refined` per detector box (xyxy), the box alone as the prompt, in one batch."""
        if not boxes:
            return []
        return self._decode(image, {"input_boxes": [[list(b) for b in boxes]]}, len(boxes))

    @torch.inference_mode()
    def prompted(self, image: np.ndarray, prompts: Sequence) -> list[Refined]:
        """SAM2's mask for each user prompt (:class:`vispipe.segment.files.prompts.Prompt`: a box and/or
        points), one call each: instances may differ in what they give."""
        out = []
        for p in prompts:
            kwargs = {"input_boxes": [[p.box]]} if p.box is not None else {}
            if p.points is not None:
                kwargs.update(input_points=[[p.points]], input_labels=[[p.labels]])
            out += self._decode(image, kwargs, 1)
        return out

    def _decode(self, image: np.ndarray, kwargs: dict, n: int) -> list[Refined]:
        processor, device, clock = self.sam2.processor, self.sam2.device, self.clock
        with clock("sam2 preprocess"):
            inputs = processor(images=image, return_tensors="pt", **kwargs)
            original_sizes = inputs.pop("original_sizes")
            inputs = inputs.to(device)
        with (
            clock("sam2 prompt + mask decode"),
            autocast(device, self.autocast),
        ):  # the encoder's share goes to its own stage
            out = self.sam2.model(**inputs, multimask_output=False)
        with clock("sam2 postprocess"):
            full = processor.post_process_masks(out.pred_masks.float().cpu(), original_sizes)[0][:, 0].numpy()
            iou = out.iou_scores[0, :, 0].float().cpu().numpy()
            obj = out.object_score_logits[0, :, 0].float().cpu().numpy()
        return [Refined(full[i], float(iou[i]), float(obj[i])) for i in range(n)]
