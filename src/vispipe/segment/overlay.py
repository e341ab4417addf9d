"""Pictures: the colour-mapped heatmap, the binary mask and instances drawn over a frame.

Instances get a translucent fill (``alpha``), an outline (``cv2.drawContours``) and a label, each
instance id in its own colour from the ``segment.overlay.colors`` list, taken in turn.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
RANDOM_BANNER = "RANDOM WEIGHTS (demo): not a real segmentation"  # across every picture of random weights


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` -> ``(r, g, b)``."""
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))


def color_of(inst_id: int, colors: list[str]) -> tuple[int, int, int]:
    """Instance ids count from 1; the colour list repeats when there are more instances than colours."""
    return hex_to_rgb(colors[(inst_id - 1) % len(colors)])


def heatmap_picture(image: np.ndarray, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The heatmap (probabilities in [0, 1]) colour-mapped with JET and blended over the RGB image."""
    u8 = np.round(np.clip(heat, 0, 1) * 255).astype(np.uint8)
    colored = cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(colored, alpha, image, 1 - alpha, 0)


def boxes_picture(image: np.ndarray, boxes: list, colors: list[str] | None = None) -> np.ndarray:
    """A box detector's answer over the RGB image: each box (:class:`vispipe.segment.types.Box`) outlined
    in its instance's colour, labelled with its phrase and score."""
    colors = colors or ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    out = image.copy()
    scale = max(0.4, image.shape[1] / 1600)
    for i, b in enumerate(boxes, start=1):
        color = color_of(i, colors)
        x0, y0, x1, y1 = (round(v) for v in b.xyxy)
        cv2.rectangle(out, (x0, y0), (max(x1 - 1, x0), max(y1 - 1, y0)), color, max(1, round(scale * 3)))
        _label(out, f"{b.phrase} {b.score:.2f}", (x0, y0), color, scale)
    return out


def mask_picture(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as a black-and-white uint8 picture."""
    return mask.astype(np.uint8) * 255


def draw_instances(image: np.ndarray, ids: np.ndarray, labels: Mapping[int, str], style: dict) -> np.ndarray:
    """Draw the instances of an id image (uint8 or uint16, 0 = background) over an RGB image.

    ``style`` is the ``segment.overlay`` config block; ``labels`` maps ids to their text."""
    top = int(ids.max(initial=0))
    palette = np.array([(0, 0, 0)] + [color_of(i, style["colors"]) for i in range(1, max(top, 255) + 1)], np.float32)
    inside = (ids > 0)[..., None]
    blend = (1 - style["alpha"]) * image + style["alpha"] * palette[ids]
    out = np.where(inside, np.round(blend), image).astype(np.uint8)
    for i in (int(i) for i in np.unique(ids) if i != 0):
        color = color_of(i, style["colors"])
        mask = (ids == i).astype(np.uint8)
        if style["outline"] > 0:
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, color, style["outline"])
        if style["labels"] and i in labels:
            x, y, _, _ = cv2.boundingRect(mask)
            _label(out, labels[i], (x, y), color, style["font_scale"])
    return out


def _label(image: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int], scale: float) -> None:
    """Text on a filled box of the instance's colour, just above ``corner`` (inside the image)."""
    thickness = max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, FONT, scale, thickness)
    x = min(max(corner[0], 0), max(image.shape[1] - w - 4, 0))
    y = max(corner[1] - 4, h + base + 4)
    cv2.rectangle(image, (x, y - h - base - 4), (x + w + 4, y), color, cv2.FILLED)
    text_color = (0, 0, 0) if sum(color) > 382 else (255, 255, 255)
    cv2.putText(image, text, (x + 2, y - base - 2), FONT, scale, text_color, thickness, cv2.LINE_AA)


def banner(image: np.ndarray, text: str) -> np.ndarray:
    """A red strip with white ``text`` across the bottom of the image (says when the weights are random);
    a grey picture comes back as RGB."""
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image.copy()
    scale = max(0.4, image.shape[1] / 1600)
    thickness = max(1, round(scale * 2))
    (_, h), base = cv2.getTextSize(text, FONT, scale, thickness)
    top = image.shape[0] - h - base - 8
    cv2.rectangle(out, (0, top), (image.shape[1], image.shape[0]), (200, 0, 0), cv2.FILLED)
    cv2.putText(out, text, (6, image.shape[0] - base - 4), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out
