"""Dense optical flow and mask warping. Two methods: Farnebäck ("Two-Frame Motion Estimation Based on
Polynomial Expansion", SCIA 2003; ``cv2.calcOpticalFlowFarneback``, the seed's) and DIS (Kroeger et
al., "Fast Optical Flow using Dense Inverse Search", ECCV 2016; ``cv2.DISOpticalFlow``).

The flow is computed from the current frame back to the previous one, so every pixel of the current
frame knows where it came from and samples the previous mask there (backward warping with
``cv2.remap``): the warped mask has no holes, which forward splatting would leave.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


def gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}  # fmt: skip


@lru_cache(maxsize=4)
def dis(preset: str) -> cv2.DISOpticalFlow:
    """OpenCV's DIS flow object for ``preset`` (made once per process: it holds only settings)."""
    return cv2.DISOpticalFlow_create(DIS_PRESETS[preset])


def backward_flow(previous: np.ndarray, current: np.ndarray, params: dict) -> np.ndarray:
    """Flow ``(H, W, 2)`` such that ``current[y, x] ~ previous[y + f[..., 1], x + f[..., 0]]``.

    ``params`` is the ``segment.flow`` config block (``method`` farneback or dis); with ``scale`` < 1
    the flow is computed on downsized frames and scaled back up."""
    prev, cur = gray(previous), gray(current)
    h, w = cur.shape
    scale = params["scale"]
    if scale != 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        prev = cv2.resize(prev, size, interpolation=cv2.INTER_AREA)
        cur = cv2.resize(cur, size, interpolation=cv2.INTER_AREA)
    if params.get("method", "farneback") == "dis":
        flow = dis(params.get("dis_preset", "fast")).calc(cur, prev, None)
    else:
        flow = cv2.calcOpticalFlowFarneback(
            cur, prev, None, params["pyr_scale"], params["levels"], params["winsize"],
            params["iterations"], params["poly_n"], params["poly_sigma"], 0,
        )  # fmt: skip
    if scale != 1:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / scale
    return flow


def warp_mask(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The boolean ``mask`` of the previous frame, moved onto the current one by a backward flow."""
    h, w = mask.shape
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(
        mask.astype(np.float32), grid_x + flow[..., 0], grid_y + flow[..., 1],
        interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip
    return warped >= 0.5
