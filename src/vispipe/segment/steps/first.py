"""The segment_first and segment_image steps: the target on a video's first kept frame (from its text,
or from a prompt file), and on a still image. Which detector runs is the config's
(:mod:`vispipe.segment.detect.runner`); none is imported here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from ...errors import UserError
from ...io import write_json
from .. import models, overlay
from ..detect.runner import Found
from ..files.frames import fitted_size, resized
from ..files.masks import decode_rle, encode_rle, id_mask, image_size, read_image, write_image
from ..files.prompts import Prompt, read_prompts
from ..geometry import box_xyxy
from ..layout import FIRST, HEATMAP, INSTANCES, MASK, OVERLAY, first_blocks, image_blocks
from ..settings import Settings
from ..types import Loaded
from .common import detector_kind, read_meta, target_prompt
from .models import load_models, refiner, run_provenance, text_detector

log = logging.getLogger(__name__)


def _detect(image: np.ndarray, target: str, s: Settings, loaded: dict[str, Loaded], where: dict) -> tuple[dict, Found]:
    """The detector -> instances -> SAM2 on one picture: the instances.json document and what was found."""
    prompt = target_prompt(s, target)
    detector = text_detector(s, target, loaded)
    found = detector.run(image, 0)
    instances = detector.entries(found)
    doc = document(target, prompt, where, image, models.weights_note(loaded[detector.kind], loaded["sam2"]),
                   found.instances.threshold, instances, detector=detector.kind)  # fmt: skip
    if not instances:
        doc["warning"] = (
            f"no foreground found for {target!r} (prompt {prompt!r}): empty masks follow. "
            f"Try another prompt, or {detector.family.NOTHING_FOUND}."
        )
        log.warning("%s", doc["warning"])
    log.info(
        "%s: %d instance(s) via %s (%s)", target, len(instances), detector.kind, found.instances.threshold["method"]
    )
    return doc, found


def document(target: str, prompt, where: dict, image: np.ndarray, weights: dict, threshold: dict, instances: list[dict],
             **extra) -> dict:  # fmt: skip
    """The instances.json document of one picture (a first frame or a still; ``extra``: how it was
    prompted: ``detector`` or ``prompt_file``)."""
    return {
        "target": target,
        "prompt": prompt,
        **extra,
        **where,
        "size": [int(image.shape[0]), int(image.shape[1])],
        "weights": weights,
        "threshold": threshold,
        "found": len(instances),
        "instances": instances,
    }


def _found_picture(found: Found, image: np.ndarray) -> np.ndarray:
    """CLIPSeg's heatmap, or the boxes with their phrases and scores, over ``image``."""
    heat = found.instances.heat
    return (
        overlay.heatmap_picture(image, heat)
        if heat is not None
        else overlay.boxes_picture(image, found.instances.boxes)
    )


def _save_picture(path: Path, picture: np.ndarray, random_weights: bool) -> None:
    write_image(path, overlay.banner(picture, overlay.RANDOM_BANNER) if random_weights else picture)


def _instance_picture(image: np.ndarray, doc: dict, style: dict) -> np.ndarray:
    """The instances of an instances.json document drawn over its image."""
    masks = {inst["id"]: decode_rle(inst["segmentation"]) for inst in doc["instances"]}
    labels = {i: f"{doc['target']} {i}" for i in masks}
    return overlay.draw_instances(image, id_mask(masks, image.shape[:2]), labels, style)


def _segment_picture(
    image: np.ndarray,
    target: str,
    s: Settings,
    loaded: dict[str, Loaded],
    where: dict,
    pictures: Path,
    instances_path: Path,
    prov: dict,
    style: dict | None = None,
) -> dict:
    """Detect on one picture; write ``pictures/{heatmap,mask}.png`` (and ``overlay.png`` given a
    ``style``) and the instances.json document."""
    doc, found = _detect(image, target, s, loaded, where)
    random_weights = doc["weights"]["random"]
    _save_picture(pictures / HEATMAP, _found_picture(found, image), random_weights)
    _save_picture(pictures / MASK, overlay.mask_picture(found.union), random_weights)
    if style is not None:
        _save_picture(pictures / OVERLAY, _instance_picture(image, doc, style), random_weights)
    doc["provenance"] = prov
    write_json(instances_path, doc)
    return doc


def _prompt_picture(image: np.ndarray, prompts: list[Prompt]) -> np.ndarray:
    """What the user gave, drawn over the frame: masks tinted, boxes, points (green on, red off)."""
    picture = image.copy()
    for p in prompts:
        if p.mask is not None:
            picture[p.mask] = (0.5 * picture[p.mask] + 0.5 * np.array([255, 200, 0])).astype(np.uint8)
        if p.box is not None:
            x0, y0, x1, y1 = (round(v) for v in p.box)
            cv2.rectangle(picture, (x0, y0), (x1 - 1, y1 - 1), (255, 200, 0), 2)
        for (x, y), label in zip(p.points or [], p.labels or []):
            cv2.circle(picture, (round(x), round(y)), 5, (0, 220, 0) if label else (230, 0, 0), -1)
    return picture


def _segment_prompted(s: Settings, target: str, meta: dict, frames_dir: Path, prompt_path: Path, out_dir: Path,
                      sam2_dir: Path | None) -> dict:  # fmt: skip
    """The first frame from a prompt file (:mod:`vispipe.segment.prompts`): CLIPSeg is skipped; SAM2
    draws the boxes' and points' masks; a mask prompt is taken as it is."""
    image = read_image(frames_dir / meta["files"][0])
    prompts = read_prompts(prompt_path, meta["source"]["width"], meta["source"]["height"],
                           s.limit("max_prompt_instances"), s.limit("max_prompt_points"))  # fmt: skip
    dirs = {"sam2": sam2_dir}
    loaded = load_models(s, dirs)  # also for a mask prompt: propagation refines with it, outputs name it
    drawn = [p for p in prompts if p.mask is None]
    answers = iter(refiner(s, loaded["sam2"]).prompted(image, drawn) if drawn else [])
    instances = []
    union = np.zeros(image.shape[:2], bool)
    for p in prompts:
        ref = None if p.mask is not None else next(answers)
        mask = p.mask if ref is None else ref.mask
        union |= mask
        if not mask.any():
            log.warning("%s, instance %d: SAM2 drew an empty mask for its %s", prompt_path, p.id, p.kind)
            continue
        instances.append({
            "id": p.id, "box": box_xyxy(mask), "area": int(mask.sum()), "prompted_by": p.kind,
            **({"prompt_box": p.box} if p.box is not None else {}),
            **({"prompt_points": p.points, "prompt_labels": p.labels} if p.points is not None else {}),
            **({"sam2_iou": round(ref.iou_score, 4), "sam2_object_score": round(ref.object_score, 4)} if ref else {}),
            "mask_from": "prompt" if ref is None else "sam2", "segmentation": encode_rle(mask),
        })  # fmt: skip
    where = {"video": meta["video"], "frame": meta["files"][0], "source_index": meta["kept"][0]}
    doc = document(target, target_prompt(s, target), where, image, models.weights_note(*loaded.values()),
                   {"method": "none (prompt file)", "value": None}, instances, prompt_file=str(prompt_path))  # fmt: skip
    doc["provenance"] = run_provenance(s, first_blocks(target, detector_kind(s), prompted=True), loaded, dirs)
    random_weights = doc["weights"]["random"]
    _save_picture(out_dir / FIRST / HEATMAP, _prompt_picture(image, prompts), random_weights)
    _save_picture(out_dir / FIRST / MASK, overlay.mask_picture(union), random_weights)
    write_json(out_dir / INSTANCES, doc)
    log.info("%s: %d instance(s) from %s (CLIPSeg skipped)", target, len(instances), prompt_path)
    return doc


def segment_first(s: Settings, target: str, frames_dir: Path, meta_path: Path, out_dir: Path,
                  detector_dir: Path | None = None, sam2_dir: Path | None = None,
                  prompt_path: Path | None = None) -> dict:  # fmt: skip
    """The first kept frame of a video: ``out_dir/first/{heatmap,mask}.png`` and ``out_dir/instances.json``.

    With ``prompt_path`` (a mask, boxes or points: :mod:`vispipe.segment.prompts`) the instances
    come from it and ``first/heatmap.png`` shows the prompts instead of a heatmap.
    ``first/overlay.png`` is drawn by :func:`render_overlay`, with the overlay style, so that a colour
    edit redraws pictures without rerunning detection and propagation."""
    text = target_prompt(s, target)
    meta = read_meta(meta_path, frames_dir)
    if prompt_path is not None:
        return _segment_prompted(s, target, meta, frames_dir, Path(prompt_path), out_dir, sam2_dir)
    if text is None:
        raise UserError(f"target {target!r} has no text prompt (segment.targets.{target}.prompt) and no prompt file"
                        " was given (--prompt; segment.videos.<key>.prompts); give one of them")  # fmt: skip
    kind = detector_kind(s)
    dirs = {kind: detector_dir, "sam2": sam2_dir}
    loaded = load_models(s, dirs)
    image = read_image(frames_dir / meta["files"][0])
    where = {"video": meta["video"], "frame": meta["files"][0], "source_index": meta["kept"][0]}
    prov = run_provenance(s, first_blocks(target, kind), loaded, dirs)
    return _segment_picture(image, target, s, loaded, where, out_dir / FIRST, out_dir / INSTANCES, prov)


def segment_image(s: Settings, target: str, image_path: Path, out_dir: Path, detector_dir: Path | None = None,
                  sam2_dir: Path | None = None) -> dict:  # fmt: skip
    """A still image: ``out_dir/{heatmap,mask,overlay}.png`` and ``out_dir/instances.json``."""
    if target_prompt(s, target) is None:
        raise UserError(f"target {target!r} has no text prompt (segment.targets.{target}.prompt): a still image is"
                        " segmented from text; give the target one")  # fmt: skip
    style = s.overlay
    if not Path(image_path).is_file():
        raise UserError(f"image not found: {image_path}; check the path under segment.images")
    width, height = image_size(image_path)  # refused before its pixels are read when too large
    size = fitted_size(width, height, f"image {image_path}", s.limit("max_pixels"), s.limit("downscale"))
    image = resized(read_image(image_path), size)
    kind = detector_kind(s)
    dirs = {kind: detector_dir, "sam2": sam2_dir}
    loaded = load_models(s, dirs)
    where = {"image": str(image_path), **({"downscaled_from": [width, height]} if size != (width, height) else {})}
    prov = run_provenance(s, image_blocks(target, kind), loaded, dirs)
    return _segment_picture(image, target, s, loaded, where, out_dir, out_dir / INSTANCES, prov, style)
