"""One function per pipeline step; the scripts in ``scripts/`` parse arguments and call these.

Each takes the step's settings parsed once at the script's entry (:class:`.settings.Settings`: the
``segment`` blocks its rule passes, validated against the schema), never the raw config.

Every output is written to a temporary name and renamed when complete, so a failed or killed step
leaves nothing half-written behind.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..errors import UserError
from ..io import atomic_path, write_json, write_text
from ..provenance import provenance
from ..runtime import device_name, pick_device
from . import models, overlay
from .boxes import DETECT as BOX_DETECTORS
from .clipseg import find_instances, heatmaps
from .layout import (
    DAVIS_GLOBAL,
    DAVIS_MD,
    DAVIS_PER_SEQUENCE,
    FIRST,
    HEATMAP,
    IDENTITY,
    INSTANCES,
    J_PLOT,
    JF_CSV,
    JF_MD,
    MASK,
    MODELS_BLOCK,
    OVERLAY,
    TRACKER_MODELS,
    first_blocks,
    image_blocks,
    propagate_blocks,
)
from .masks import (
    atomic_dir,
    box_xyxy,
    decode_rle,
    encode_rle,
    id_mask,
    image_size,
    read_id_mask,
    read_image,
    write_image,
)
from .prompts import Prompt, read_prompts
from .propagate import STATES, propagate
from .propagate import track as track_with
from .sam2 import Refined, Sam2Refiner, autocast_dtype
from .sam2_video import Sam2VideoTracker, TrackerStepper
from .sam3 import Sam3Stepper, Sam3VideoTracker
from .sam3 import detect as sam3_detect
from .settings import Settings
from .timing import Stopwatch, ahead
from .video import fitted_size, frame_folder, frame_suffix, kept_frames, resized, write_h264

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
RANDOM_BANNER = "RANDOM WEIGHTS (demo): not a real segmentation"


def target_prompt(s: Settings, target: str) -> str | list[str] | None:
    """The text prompt of a key of ``segment.targets`` (None: prompted by files only); a clear error
    for an unknown key."""
    targets = s.targets
    if target not in targets:
        known = ", ".join(sorted(targets)) or "none"
        raise UserError(
            f"unknown target {target!r}: it is not a key of segment.targets (known: {known}); "
            f'add it there, e.g. {target}: {{prompt: "..."}}'
        )
    return targets[target].get("prompt")


def target_phrases(s: Settings, target: str) -> list[str]:
    """The target's text as a list of phrases (one for a plain prompt); empty without text."""
    prompt = target_prompt(s, target)
    return [] if prompt is None else [prompt] if isinstance(prompt, str) else list(prompt)


def detector_kind(s: Settings) -> str:
    """``segment.detector`` (clipseg when the step was not given the key)."""
    return s.detector if s.has("detector") else "clipseg"


def tracker_kind(s: Settings) -> str | None:
    """The model ``segment.propagate.method``'s tracker runs besides SAM2 (None: flow, sam2_video)."""
    return TRACKER_MODELS.get(s.propagate.get("method", "flow")) if s.has("propagate") else None


def fetch_models(s: Settings, detector_dir: Path | None = None, sam2_dir: Path | None = None,
                 tracker_dir: Path | None = None, tracker_model: str | None = None) -> None:  # fmt: skip
    """Download (or build) the models given a folder: the detector (``segment.detector``), SAM2, the
    tracker's model (``tracker_model``: edgetam or sam3; default: what ``segment.propagate.method``
    runs). Given none, every model of the run, where the config puts them (a tracker that is also the
    detector, SAM 3 for both, once)."""
    models_cfg, kind, tracker = s.models, detector_kind(s), tracker_model or tracker_kind(s)
    given = {k: v for k, v in ((kind, detector_dir), ("sam2", sam2_dir), (tracker, tracker_dir)) if k and v}
    if not given:
        given = models.model_dirs(models_cfg, tuple(dict.fromkeys(k for k in (kind, "sam2", tracker) if k)))
    models.fetch(models_cfg, given)


def _provenance(s: Settings, blocks: tuple[str, ...], loaded: dict[str, models.Loaded], dirs: dict) -> dict:
    """The run's provenance; ``segment.models`` counts among the blocks read when it located a model."""
    if None in dirs.values():
        blocks = (*blocks, MODELS_BLOCK)
    device = next(iter(loaded.values())).device if loaded else pick_device(s.device)
    return provenance(device, s.as_config(), blocks)


def _model_folders(s: Settings, dirs: dict[str, Path | None]) -> dict[str, Path]:
    """The folders of the models named in ``dirs``; one left ``None`` is where ``segment.models`` puts it."""
    if None in dirs.values():
        default = models.model_dirs(s.models, tuple(dirs))
        dirs = {kind: folder or default[kind] for kind, folder in dirs.items()}
    return dirs


def _load_models(s: Settings, dirs: dict[str, Path | None]) -> dict[str, models.Loaded]:
    """Load the models named in ``dirs`` (see :func:`_model_folders`)."""
    device = pick_device(s.device)
    return {kind: models.load(kind, folder, device) for kind, folder in _model_folders(s, dirs).items()}


# ------------------------------------------------------------------------------------------- frames


def extract_frames(s: Settings, video: Path, frames_dir: Path, meta_path: Path, fps: float | None = None) -> dict:
    """Decode the kept frames of ``video`` into ``frames_dir/NNNNN.jpg`` and describe them in ``meta_path``.

    ``video`` may be a folder of frames (:func:`video.frame_folder`, at ``fps``): its kept frames are
    copied as they are, not re-encoded (``frames_dir/NNNNN.jpg`` or ``.png``)."""
    frames_cfg, limits = s.frames, (s.limit("max_pixels"), s.limit("downscale"))
    kept: list[int] = []
    files: list[str] = []
    times: list[Fraction] = []  # presentation times of the kept frames, after the first's
    with atomic_dir(frames_dir) as tmp:
        if video.is_dir():
            info, sources = frame_folder(video, frames_cfg["max_seconds"], frames_cfg["stride"], fps)
            size = fitted_size(info.width, info.height, f"the frames of {video}", *limits)
            for index, source in tqdm(sources, desc=f"copy {video.name}", unit="frame"):
                files.append(f"{len(kept):05d}{frame_suffix(source)}")
                if size == (info.width, info.height):
                    shutil.copyfile(source, tmp / files[-1])
                else:  # segment.limits.downscale
                    write_image(
                        tmp / files[-1], resized(read_image(source), size), jpeg_quality=frames_cfg["jpeg_quality"]
                    )
                kept.append(index)
                times.append(index / info.fps)
        else:
            if fps:
                log.warning("%s: a video file plays at its container's rate; the fps given (%s) is ignored", video, fps)
            info, frames = kept_frames(video, frames_cfg["max_seconds"], frames_cfg["stride"], *limits)
            size = fitted_size(info.width, info.height, f"video {video}", *limits)
            for frame in tqdm(frames, desc=f"extract {video.name}", unit="frame"):
                files.append(f"{len(kept):05d}.jpg")
                write_image(tmp / files[-1], frame.image, jpeg_quality=frames_cfg["jpeg_quality"])
                kept.append(frame.index)
                times.append(frame.time_s)
        if not kept:
            raise UserError(f"{video} holds no decodable frame; replace the file")
    steps = [b - a for a, b in zip(times, times[1:])]
    # variable: the kept frames' spacing varies by more than 1% (a phone's), so the overlay keeps their times
    variable = bool(steps) and max(steps) - min(steps) > Fraction(1, 100) * (sum(steps) / len(steps))
    meta = {
        "video": str(video),
        "source": {
            "fps": float(info.fps),
            "fps_fraction": str(info.fps),
            "width": size[0],  # the kept frames' size, upright: the source's unless scaled down
            "height": size[1],
            **({"downscaled_from": [info.width, info.height]} if size != (info.width, info.height) else {}),
            "frame_count": info.frame_count,
            "duration_s": info.duration_s,
            "codec": info.codec,
            "frame_folder": video.is_dir(),
            "rotation": info.rotation,  # the display matrix's turn, applied: frames and sizes are upright
            "variable_frame_rate": variable,
        },
        "max_seconds": frames_cfg["max_seconds"],
        "stride": frames_cfg["stride"],
        "output_fps": str(info.fps / frames_cfg["stride"]),
        "count": len(kept),
        "kept": kept,
        "files": files,
        "times_s": [round(float(t), 6) for t in times],
    }
    write_json(meta_path, meta)
    log.info("%s: %d of its frames kept (stride %d, max %s s) at %dx%d%s, %s fps%s%s",
             video, len(kept), frames_cfg["stride"], frames_cfg["max_seconds"], *size,
             f" (scaled down from {info.width}x{info.height}: segment.limits.downscale)" if size != (info.width, info.height) else "",
             info.fps,
             f", turned {info.rotation} degrees upright" if info.rotation else "",
             ", variable rate (the overlay keeps each frame's time)" if variable else "")  # fmt: skip
    return meta


def read_json(path: Path, rule: str, keys: tuple[str, ...] = ()) -> dict:
    """A JSON file another rule wrote; a missing, truncated or foreign one is a UserError naming the
    file and the rule that rewrites it."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; run the {rule} rule first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is damaged ({e}); delete it and rerun the {rule} rule") from None
    missing = [k for k in keys if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise UserError(f"{path} lacks {missing}: not a file the {rule} rule wrote; delete it and rerun that rule")
    return doc


def _read_tracks(tracks_path: Path, meta: dict, meta_path: Path, keys: tuple[str, ...]) -> dict:
    """propagate's tracks.json, which must hold one entry per kept frame of ``meta``."""
    tracks = read_json(tracks_path, "propagate", keys)
    if len(tracks["frames"]) != meta["count"]:
        raise UserError(
            f"{tracks_path} has {len(tracks['frames'])} frames but {meta_path} {meta['count']}; rerun propagate"
        )
    return tracks


def _read_meta(meta_path: Path, frames_dir: Path) -> dict:
    meta = read_json(meta_path, "extract_frames", ("files", "kept", "count", "source"))
    missing = [f for f in meta["files"] if not (frames_dir / f).is_file()]
    if missing:
        raise UserError(
            f"{frames_dir} lacks {len(missing)} frame(s) listed in {meta_path} ({missing[0]}, ...); rerun extract_frames"
        )
    return meta


# ------------------------------------------------------------------------------ first frame / stills


@dataclass
class Found:
    """A detector's instances on one picture: SAM2's answer for each, what the detector said about
    each (``info``: its score, box, area and phrase), its threshold and how it found them (drawn by
    :meth:`picture` only when a picture is written: re-detection needs none)."""

    coarse: list[np.ndarray]  # the detector's own masks: CLIPSeg's components, or the boxes filled
    refined: list[Refined]
    info: list[dict]
    threshold: dict
    union: np.ndarray  # what mask.png shows: CLIPSeg's components, or a box detector's final masks
    heat: np.ndarray | None = None  # CLIPSeg's heatmap ...
    boxes: list | None = None  # ... or a box detector's boxes

    def picture(self, image: np.ndarray) -> np.ndarray:
        """CLIPSeg's heatmap, or the boxes with their phrases and scores, over ``image``."""
        return (
            overlay.heatmap_picture(image, self.heat)
            if self.heat is not None
            else overlay.boxes_picture(image, self.boxes)
        )

    @property
    def masks(self) -> list[np.ndarray]:
        """SAM2's mask of each instance, or the detector's own where SAM2 gave nothing."""
        return [r.mask if r.mask.any() else c for c, r in zip(self.coarse, self.refined)]


NOTHING_FOUND_HINT = {
    "clipseg": "lower segment.clipseg.min_cc_area / min_score",
    "grounding_dino": "lower segment.grounding_dino.box_threshold",
    "owlv2": "lower segment.owlv2.score_threshold",
    "sam3": "lower segment.sam3.score_threshold",
}


def _detect(
    image: np.ndarray, target: str, s: Settings, loaded: dict[str, models.Loaded], where: dict
) -> tuple[dict, Found]:
    """The detector -> instances -> SAM2 on one picture: the instances.json document and what was found."""
    prompt = target_prompt(s, target)
    detector = Detector(s, target, loaded, s.seed)
    found = detector.run(image, 0)
    instances = []
    for i, (mask, info, ref) in enumerate(zip(found.masks, found.info, found.refined), start=1):
        instances.append({
            "id": i,
            "box": box_xyxy(mask),
            "area": int(mask.sum()),
            **info,
            "sam2_iou": round(ref.iou_score, 4) if detector.refines else None,
            "sam2_object_score": round(ref.object_score, 4) if detector.refines else None,
            # SAM2 gave nothing (or was not asked, sam3 without refine): the detector's own region
            "mask_from": "sam2" if detector.refines and ref.mask.any() else detector.kind,
            "segmentation": encode_rle(mask),
        })  # fmt: skip
    doc = {
        "target": target,
        "prompt": prompt,
        "detector": detector.kind,
        **where,
        "size": [int(image.shape[0]), int(image.shape[1])],
        "weights": models.weights_note(loaded[detector.kind], loaded["sam2"]),
        "threshold": found.threshold,
        "found": len(instances),
        "instances": instances,
    }
    if not instances:
        doc["warning"] = (
            f"no foreground found for {target!r} (prompt {prompt!r}): empty masks follow. "
            f"Try another prompt, or {NOTHING_FOUND_HINT[detector.kind]}."
        )
        log.warning("%s", doc["warning"])
    log.info("%s: %d instance(s) via %s (%s)", target, len(instances), detector.kind, found.threshold["method"])
    return doc, found


def _autocast(s: Settings, device: torch.device) -> torch.dtype | None:
    """The dtype ``segment.sam2.autocast`` runs SAM2 under on ``device`` (None: float32)."""
    return autocast_dtype(s.sam2.get("autocast", "auto"), device)


def _refiner(s: Settings, sam2: models.Loaded, clock: Stopwatch | None = None) -> Sam2Refiner:
    """SAM2 image refinement with the ``segment.sam2`` prompts and autocast."""
    c = s.sam2
    return Sam2Refiner(sam2, c["n_pos"], c["n_neg"], c["border"], clock, _autocast(s, sam2.device))


class Detector:
    """The target's text -> instances -> SAM2's mask of each: the first frame's detection, and
    re-detection during propagation. ``segment.detector`` picks how: ``clipseg`` (heatmap -> Otsu /
    components / fallback, each refined from its box and sampled points) or a box detector
    (``grounding_dino``, ``owlv2``: :mod:`.boxes`, each box refined from the box alone) or SAM 3
    (``sam3``: :mod:`.sam3`, its own masks, refined from their boxes only with ``segment.sam3.refine``)."""

    def __init__(self, s: Settings, target: str, loaded: dict[str, models.Loaded], seed: int,
                 clock: Stopwatch | None = None):  # fmt: skip
        self.kind, self.phrases, self.seed = detector_kind(s), target_phrases(s, target), seed
        self.knobs, self.model = getattr(s, self.kind), loaded[self.kind]
        self.refines = self.kind != "sam3" or self.knobs["refine"]  # SAM2 refines what the detector found
        self.clock = clock or Stopwatch()
        self.refiner = _refiner(s, loaded["sam2"], self.clock) if self.refines else None

    def run(self, image: np.ndarray, k: int) -> Found:
        """The instances on kept frame ``k``."""
        if self.kind == "clipseg":
            return self._clipseg(image, k)
        return self._sam3(image) if self.kind == "sam3" else self._boxes(image)

    def _clipseg(self, image: np.ndarray, k: int) -> Found:
        heats = heatmaps(self.model, image, self.phrases)
        heat, knobs = heats.max(axis=0), self.knobs
        found = find_instances(
            heat, knobs["min_cc_area"], knobs["top_pct_fallback"], knobs["min_score"], knobs["max_instances"]
        )
        rng = np.random.default_rng([self.seed, 0] if k == 0 else [self.seed, k, 1])
        coarse = [c.mask for c in found.components]
        info = [
            {"detector_score": round(c.score, 4), "detector_box": c.box, "detector_area": c.area,
             "phrase": self.phrases[int(np.argmax([h[c.mask].mean() for h in heats]))]}
            for c in found.components
        ]  # fmt: skip
        value = None if found.method == "none" else round(found.threshold, 4)
        return Found(coarse, self.refiner.refine(image, coarse, rng), info, {"method": found.method, "value": value},
                     found.mask, heat=heat)  # fmt: skip

    def _boxes(self, image: np.ndarray) -> Found:
        boxes = BOX_DETECTORS[self.kind](self.model, image, self.phrases, self.knobs)
        refined = self.refiner.boxes(image, [b.xyxy for b in boxes])
        coarse = []
        for b in boxes:
            region = np.zeros(image.shape[:2], bool)
            x0, y0, x1, y1 = (round(v) for v in b.xyxy)
            region[y0:y1, x0:x1] = True
            coarse.append(region)
        info = [{"detector_score": b.score, "detector_box": b.xyxy, "phrase": b.phrase} for b in boxes]
        key = "box_threshold" if self.kind == "grounding_dino" else "score_threshold"
        found = Found(coarse, refined, info, {"method": key, "value": self.knobs[key]},
                      np.zeros(image.shape[:2], bool), boxes=boxes)  # fmt: skip
        for m in found.masks:
            found.union |= m
        return found

    def _sam3(self, image: np.ndarray) -> Found:
        """SAM 3's own masks (:func:`.sam3.detect`); SAM2 refines each from its box with ``refine``."""
        found = sam3_detect(self.model, image, self.phrases, self.knobs)
        coarse = [m for _, m in found]
        if self.knobs["refine"]:
            refined = self.refiner.boxes(image, [b.xyxy for b, _ in found])
        else:  # SAM 3's mask is the instance: its score stands for SAM2's estimate, present by construction
            refined = [Refined(m, b.score, 1.0) for b, m in found]
        info = [{"detector_score": b.score, "detector_box": b.xyxy, "detector_area": int(m.sum()), "phrase": b.phrase}
                for b, m in found]  # fmt: skip
        union = np.zeros(image.shape[:2], bool)
        result = Found(coarse, refined, info, {"method": "score_threshold", "value": self.knobs["score_threshold"]},
                       union, boxes=[b for b, _ in found])  # fmt: skip
        for m in result.masks:
            union |= m
        return result

    def detect(self, image: np.ndarray, k: int) -> list[np.ndarray]:
        """The instance masks on kept frame ``k`` (SAM2's, or the detector's region where SAM2 gave
        nothing). Timed as ``re-detection`` (the detector; SAM2's share goes to its own stages)."""
        with self.clock("re-detection"):
            return self.run(image, k).masks


def _save_picture(path: Path, picture: np.ndarray, random_weights: bool) -> None:
    write_image(path, overlay.banner(picture, RANDOM_BANNER) if random_weights else picture)


def _instance_picture(image: np.ndarray, doc: dict, style: dict) -> np.ndarray:
    """The instances of an instances.json document drawn over its image."""
    masks = {inst["id"]: decode_rle(inst["segmentation"]) for inst in doc["instances"]}
    labels = {i: f"{doc['target']} {i}" for i in masks}
    return overlay.draw_instances(image, id_mask(masks, image.shape[:2]), labels, style)


def _segment_picture(
    image: np.ndarray,
    target: str,
    s: Settings,
    loaded: dict[str, models.Loaded],
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
    _save_picture(pictures / HEATMAP, found.picture(image), random_weights)
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
    loaded = _load_models(s, dirs)  # also for a mask prompt: propagation refines with it, outputs name it
    drawn = [p for p in prompts if p.mask is None]
    answers = iter(_refiner(s, loaded["sam2"]).prompted(image, drawn) if drawn else [])
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
    doc = {
        "target": target,
        "prompt": target_prompt(s, target),
        "prompt_file": str(prompt_path),
        "video": meta["video"], "frame": meta["files"][0], "source_index": meta["kept"][0],
        "size": [int(image.shape[0]), int(image.shape[1])],
        "weights": models.weights_note(*loaded.values()),
        "threshold": {"method": "none (prompt file)", "value": None},
        "found": len(instances),
        "instances": instances,
        "provenance": _provenance(s, first_blocks(target, detector_kind(s), prompted=True), loaded, dirs),
    }  # fmt: skip
    random_weights = doc["weights"]["random"]
    _save_picture(out_dir / FIRST / HEATMAP, _prompt_picture(image, prompts), random_weights)
    _save_picture(out_dir / FIRST / MASK, overlay.mask_picture(union), random_weights)
    write_json(out_dir / INSTANCES, doc)
    log.info("%s: %d instance(s) from %s (CLIPSeg skipped)", target, len(instances), prompt_path)
    return doc


def segment_first(
    s: Settings,
    target: str,
    frames_dir: Path,
    meta_path: Path,
    out_dir: Path,
    detector_dir: Path | None = None,
    sam2_dir: Path | None = None,
    prompt_path: Path | None = None,
) -> dict:
    """The first kept frame of a video: ``out_dir/first/{heatmap,mask}.png`` and ``out_dir/instances.json``.

    With ``prompt_path`` (a mask, boxes or points: :mod:`vispipe.segment.prompts`) the instances
    come from it and ``first/heatmap.png`` shows the prompts instead of a heatmap.
    ``first/overlay.png`` is drawn by :func:`render_overlay`, with the overlay style, so that a colour
    edit redraws pictures without rerunning detection and propagation."""
    text = target_prompt(s, target)
    meta = _read_meta(meta_path, frames_dir)
    if prompt_path is not None:
        return _segment_prompted(s, target, meta, frames_dir, Path(prompt_path), out_dir, sam2_dir)
    if text is None:
        raise UserError(f"target {target!r} has no text prompt (segment.targets.{target}.prompt) and no prompt file"
                        " was given (--prompt; segment.videos.<key>.prompts); give one of them")  # fmt: skip
    kind = detector_kind(s)
    dirs = {kind: detector_dir, "sam2": sam2_dir}
    loaded = _load_models(s, dirs)
    image = read_image(frames_dir / meta["files"][0])
    where = {"video": meta["video"], "frame": meta["files"][0], "source_index": meta["kept"][0]}
    prov = _provenance(s, first_blocks(target, kind), loaded, dirs)
    return _segment_picture(image, target, s, loaded, where, out_dir / FIRST, out_dir / INSTANCES, prov)


def segment_image(
    s: Settings,
    target: str,
    image_path: Path,
    out_dir: Path,
    detector_dir: Path | None = None,
    sam2_dir: Path | None = None,
) -> dict:
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
    loaded = _load_models(s, dirs)
    where = {"image": str(image_path), **({"downscaled_from": [width, height]} if size != (width, height) else {})}
    prov = _provenance(s, image_blocks(target, kind), loaded, dirs)
    return _segment_picture(image, target, s, loaded, where, out_dir, out_dir / INSTANCES, prov, style)


# ------------------------------------------------------------------------------------- propagation


def propagate_video(
    s: Settings,
    frames_dir: Path,
    meta_path: Path,
    instances_path: Path,
    masks_dir: Path,
    tracks_path: Path,
    rle_path: Path,
    sam2_dir: Path | None = None,
    detector_dir: Path | None = None,
    tracker_dir: Path | None = None,
) -> dict:
    """Masks of every kept frame (``masks_dir/NNNNN.png``), ``tracks.json`` and the COCO RLE file.

    ``segment.propagate.method`` picks the propagator: ``flow`` (the seed's loop, :mod:`.propagate`),
    ``sam2_video`` or ``edgetam_video`` (SAM2's or EdgeTAM's own tracker, :mod:`.sam2_video`), or
    ``sam3_video`` (SAM 3's concept tracker, :mod:`.sam3`; ``tracker_dir`` holds the tracker's model);
    the outputs are the same whichever. ``tracks.json`` records the seconds of each stage under
    ``stage_times``."""
    meta = _read_meta(meta_path, frames_dir)
    first = read_json(instances_path, "segment_first", ("instances", "target", "weights"))
    target = first["target"]
    bounds, seed = s.propagate, s.seed
    method = bounds.get("method", "flow")
    redetect = s.redetect if method != "sam3_video" else {"every": 0}  # SAM 3 re-detects on every frame itself
    if method == "sam3_video" and not target_phrases(s, target):
        raise UserError(f"target {target!r} has no text prompt, but segment.propagate.method sam3_video detects and "
                        f"tracks the target's text: give segment.targets.{target}.prompt, or choose another method")  # fmt: skip
    refine = method == "flow" and bounds.get("refine", True)
    redetects = bool(redetect["every"])
    if redetects and target_prompt(s, target) is None:
        log.warning("segment.redetect.every is %d, but target %r has no text prompt: re-detection needs text"
                    " (the detector finds the instances), so it is off for this target", redetect["every"], target)  # fmt: skip
        redetects = False
    kind, tracker_of_method = detector_kind(s), TRACKER_MODELS.get(method)
    dirs = {}  # the models this run uses: SAM2 to track, refine or re-detect, the detector to re-detect
    if method == "sam2_video" or refine or redetects:
        dirs["sam2"] = sam2_dir
    if redetects:
        dirs[kind] = detector_dir
    if tracker_of_method:
        dirs[tracker_of_method] = tracker_dir
    device = pick_device(s.device)
    folders = _model_folders(s, dirs)
    # the image models: SAM2 to refine or re-detect, the detector to re-detect (a tracker's model is
    # loaded as a video model below)
    image_models = [k for k, used in (("sam2", refine or redetects), (kind, redetects)) if used]
    loaded = {k: models.load(k, folders[k], device) for k in dict.fromkeys(image_models)}
    clock = Stopwatch(torch.cuda.synchronize if device.type == "cuda" else None)
    detector = Detector(s, target, loaded, seed, clock) if redetects else None
    if detector:
        log.info("re-detecting %r every %d kept frames (%s)", target_prompt(s, target), redetect["every"], kind)
    start = {inst["id"]: decode_rle(inst["segmentation"]) for inst in first["instances"]}
    if not start:
        log.warning("no instance on the first frame (%s): every mask will be empty", first.get("warning", ""))

    h, w = meta["source"]["height"], meta["source"]["width"]

    def decoded():
        for f in meta["files"]:
            with clock("decode"):
                image = read_image(frames_dir / f)
            yield image

    prefetch = bounds.get("prefetch", True)
    video_model = None  # the tracker's model, for the provenance
    if method in ("sam2_video", "edgetam_video"):
        v, model_kind = (s.sam2_video, "sam2") if method == "sam2_video" else (s.edgetam_video, "edgetam")
        video_model = models.load(model_kind, folders[model_kind], device, video=True)
        tracker = Sam2VideoTracker(video_model, v["max_cond_frames"], v["offload_state"], _autocast(s, device), clock,
                                   name=model_kind)  # fmt: skip
        log.info("%s's own tracker (segment.propagate.method: %s), memory window %d frames",
                 "SAM2" if model_kind == "sam2" else "EdgeTAM", method, tracker.window)  # fmt: skip
        items = ((frame, None) for frame in (ahead(decoded()) if prefetch else decoded()))
        results = track_with(items, start, TrackerStepper(tracker, bounds), detector, redetect)
    elif method == "sam3_video":
        model_kind = "sam3"
        video_model = models.load("sam3", folders["sam3"], device, video=True)
        v, phrases = s.sam3_video, target_phrases(s, target)
        tracker = Sam3VideoTracker(video_model, phrases, v, _autocast(s, device), clock)
        log.info("SAM 3's concept tracker (segment.propagate.method: sam3_video) on %r, at most %d objects",
                 phrases, v["max_objects"])  # fmt: skip
        items = ((frame, None) for frame in (ahead(decoded()) if prefetch else decoded()))
        results = track_with(items, start, Sam3Stepper(tracker))
    else:
        refiner = _refiner(s, loaded["sam2"], clock) if refine else None
        if not refine:
            log.info("segment.propagate.refine is false: the masks are warped by the flow, SAM2 does not refine them")
        results = propagate(decoded(), start, refiner, s.flow, bounds, seed, detector, redetect,
                            clock, prefetch)  # fmt: skip
    track_frames, images, annotations, events = [], [], [], []
    summary: dict[str, dict] = {}
    clock.begin()
    with atomic_dir(masks_dir) as tmp:
        for k, res in enumerate(tqdm(results, total=meta["count"], desc=f"propagate {target}", unit="frame")):
            with clock("write"):
                name = f"{k:05d}.png"
                ids = id_mask(res.masks, (h, w))
                write_image(tmp / name, ids, rgb=False)
                track_frames.append(
                    {
                        "frame": k,
                        "file": name,
                        "source_index": meta["kept"][k],
                        "instances": {str(i): v for i, v in res.info.items()},
                    }
                )
                images.append({"id": k, "file_name": meta["files"][k], "width": w, "height": h,
                               "source_index": meta["kept"][k], "video_id": 1, "frame_index": k})  # fmt: skip
                for i in sorted(res.masks):  # each instance as the PNG shows it (where masks overlap, the lower id)
                    mask = ids == i
                    if not mask.any():
                        continue  # wholly behind a lower id on this frame
                    x0, y0, x1, y1 = box_xyxy(mask)
                    annotations.append({
                        "id": len(annotations) + 1, "image_id": k, "category_id": 1, "instance_id": i, "track_id": i,
                        "video_id": 1, "segmentation": encode_rle(mask), "area": int(mask.sum()),
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0, "state": res.info[i]["state"],
                    })  # fmt: skip
            for i, info in res.info.items():
                summary.setdefault(str(i), dict.fromkeys(STATES, 0))[info["state"]] += 1
            events += [{"frame": k, **e} for e in res.events]
    weights = first["weights"]
    # COCO with video and track ids, as TAO writes it: pycocotools reads it as plain COCO, video tools
    # (TAO's, MOTS-style evaluations) group the annotations by video_id and track_id (= the instance id).
    track_ids = sorted({a["track_id"] for a in annotations})
    write_json(rle_path, {
        "info": {"description": f"{target} masks of {meta['video']} (COCO RLE, pycocotools; video and track ids as TAO;"
                        " each mask as the id PNGs show it)",
                 "weights": weights},
        "videos": [{"id": 1, "name": meta["video"], "width": w, "height": h, "length": len(images)}],
        "images": images, "annotations": annotations, "categories": [{"id": 1, "name": target}],
        "tracks": [{"id": t, "category_id": 1, "video_id": 1} for t in track_ids],
    })  # fmt: skip
    loaded_all = {**loaded, **({model_kind: video_model} if video_model is not None else {})}
    tracks = {
        "target": target,
        "prompt": first["prompt"],
        "video": meta["video"],
        "method": method,
        "weights": weights,
        "instances": sorted(int(i) for i in summary),
        "summary": summary,
        "events": events,
        "frames": track_frames,
        "stage_times": {"device": device_name(device), "prefetch": prefetch, **clock.summary(len(track_frames))},
        "provenance": _provenance(s, propagate_blocks(target, bool(redetect["every"]), method, kind), loaded_all, dirs),
    }
    write_json(tracks_path, tracks)
    for i, counts in summary.items():
        log.info("instance %s: %s", i, ", ".join(f"{n} {s}" for s, n in counts.items()))
    log.info("%s, %s: %s", method, device_name(device), clock.table(len(track_frames)))
    return tracks


# ----------------------------------------------------------------------------------------- overlay


def render_overlay(
    s: Settings,
    frames_dir: Path,
    meta_path: Path,
    masks_dir: Path,
    tracks_path: Path,
    out_path: Path,
    first_path: Path | None = None,
) -> int:
    """``overlay.mp4``: the kept frames with their instances drawn, H.264, at the source fps / stride;
    and the first of them as ``first_path`` (``first/overlay.png``) when given."""
    style = s.overlay
    meta = _read_meta(meta_path, frames_dir)
    tracks = _read_tracks(tracks_path, meta, meta_path, ("frames", "target", "weights"))
    target, random_weights = tracks["target"], tracks["weights"]["random"]
    if random_weights:
        log.warning("%s", models.RANDOM_WARNING)

    def drawn():
        size = (meta["source"]["height"], meta["source"]["width"])
        for k, (frame_file, track) in enumerate(zip(meta["files"], tracks["frames"])):
            ids = read_id_mask(masks_dir / track["file"])
            if ids.shape != size:
                raise UserError(
                    f"{masks_dir / track['file']} is {ids.shape[1]}x{ids.shape[0]} but the video is "
                    f"{size[1]}x{size[0]}: a mask from another run; rerun the propagate rule"
                )
            labels = {
                int(i): f"{target} {i}" + (" (flow)" if v["state"] == "warped" else "")
                for i, v in track["instances"].items()
            }
            picture = overlay.draw_instances(read_image(frames_dir / frame_file), ids, labels, style)
            if random_weights:
                picture = overlay.banner(picture, RANDOM_BANNER)
            if k == 0 and first_path is not None:
                write_image(first_path, picture)
            yield picture

    fps = Fraction(meta["output_fps"])
    times = meta["times_s"] if meta["source"].get("variable_frame_rate") else None  # a phone's: their own times
    with atomic_path(out_path) as tmp:
        n = write_h264(tmp, tqdm(drawn(), total=meta["count"], desc=f"render {target}", unit="frame"), fps, times=times)
    log.info("%s: %d frames, H.264, %s fps, %dx%d", out_path, n, fps, meta["source"]["width"], meta["source"]["height"])
    return n


def davis_table(evals: dict[str, Path], out_dir: Path) -> pd.DataFrame:
    """The dataset's tables from each sequence's ``jf.csv`` (``evals``: sequence -> file), in the
    DAVIS 2017 evaluation's layout: ``global_results.csv``, ``per-sequence_results.csv`` and
    ``results.md`` in ``out_dir``; returns the global row."""
    import pandas as pd

    from . import vos_eval

    per_frame = {}
    for seq, path in evals.items():
        try:
            per_frame[seq] = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise UserError(f"cannot read {path} ({e}); rerun evaluate_segmentation for {seq}") from None
    global_df, per_seq = vos_eval.davis_tables(per_frame)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / DAVIS_GLOBAL, global_df.to_csv(index=False, float_format="%.6f"))
    write_text(out_dir / DAVIS_PER_SEQUENCE, per_seq.to_csv(index=False, float_format="%.6f"))
    md = [
        f"Semi-supervised results on {len(per_frame)} sequences ({len(per_seq)} objects), in the layout of the"
        " DAVIS 2017 evaluation (first and last frames not scored; means over objects).",
        "", "Global results:", "", global_df.to_markdown(index=False, floatfmt=".3f"),
        "", "Per sequence results:", "", per_seq.to_markdown(index=False, floatfmt=".3f"),
    ]  # fmt: skip
    write_text(out_dir / DAVIS_MD, "\n".join(md) + "\n")
    log.info("J&F-Mean %.3f over %d objects of %d sequences", global_df["J&F-Mean"][0], len(per_seq), len(per_frame))
    return global_df


# ----------------------------------------------------------------------------------------- exports


def export_annotations(
    s: Settings,
    frames_dir: Path,
    meta_path: Path,
    masks_dir: Path,
    tracks_path: Path,
    out_dir: Path,
    formats: list[str] | None = None,
    video_url: str | None = None,
) -> list[str]:
    """``out_dir``: the tracks in each of ``formats`` (``segment.export.formats`` when None)."""
    from .export import export

    formats = list(formats if formats is not None else s.export["formats"])
    if not formats:
        raise UserError("no export format chosen: set segment.export.formats (yolo, cvat, label_studio) or --formats")
    meta = _read_meta(meta_path, frames_dir)
    tracks = _read_tracks(tracks_path, meta, meta_path, ("frames", "target"))
    missing = [f["file"] for f in tracks["frames"] if not (masks_dir / f["file"]).is_file()]
    if missing:
        raise UserError(
            f"{masks_dir} lacks {len(missing)} mask(s) listed in {tracks_path} ({missing[0]}, ...); rerun propagate"
        )
    written = export(formats, masks_dir, meta, tracks, frames_dir, out_dir, video_url)
    log.info("%s: %s", out_dir, ", ".join(written))
    return written


# -------------------------------------------------------------------------------------- evaluation


def evaluate_segmentation(
    masks_dir: Path, meta_path: Path, gt_dir: Path, out_dir: Path, match: bool = True
) -> pd.DataFrame:
    """J, F and J&F of a target's masks against a video's ground truth: ``jf.md`` (per object and
    mean, and whether the ids held), ``jf.csv`` (per frame and object), ``j_per_frame.png`` and
    ``identity.json`` (ID switches, IDF1, MOTA, HOTA: :func:`.vos_eval.identity`) in ``out_dir``. ``match``:
    predicted ids are matched to the ground truth's once per video; False compares them as they are
    (the semi-supervised protocol, whose first-frame mask gave the ids)."""
    import pandas as pd

    from . import vos_eval  # here: scipy's optimizer and pandas load only for the evaluation
    from .synthetic import read_palette_png

    meta = read_json(meta_path, "extract_frames", ("kept",))
    gt_files = sorted(p for p in Path(gt_dir).iterdir() if p.suffix.lower() == ".png") if Path(gt_dir).is_dir() else []
    if not gt_files:
        raise UserError(f"ground truth {gt_dir} holds no PNG: set segment.videos.<key>.ground_truth to a folder of "
                        "id PNGs, one per source frame")  # fmt: skip
    if max(meta["kept"]) >= len(gt_files):
        raise UserError(
            f"{gt_dir} holds {len(gt_files)} PNGs but the kept frames reach source frame {max(meta['kept'])}: "
            "it needs one PNG per source frame (in name order)"
        )
    pred, gt = [], []
    for k, source_index in enumerate(meta["kept"]):
        pred.append(read_id_mask(Path(masks_dir) / f"{k:05d}.png"))
        size = image_size(gt_files[source_index], "ground truth")  # compared before its pixels are read
        if size != (pred[-1].shape[1], pred[-1].shape[0]):
            raise UserError(
                f"{gt_files[source_index]} is {size[0]}x{size[1]} but the video's frames are "
                f"{pred[-1].shape[1]}x{pred[-1].shape[0]}: the ground truth must match the video's size"
            )
        try:
            gt.append(read_palette_png(gt_files[source_index]))
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read ground truth {gt_files[source_index]}: {e}") from None
    per_frame = vos_eval.evaluate(pred, gt, frames=meta["kept"], match=match)
    table = vos_eval.summary(per_frame)
    ids = vos_eval.identity(pred, gt)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = [
        f"J&F of {masks_dir} against {gt_dir} ({len(pred)} kept frames; means skip the first and the last).",
        "Predicted ids are matched to ground-truth objects once per video (largest total IoU)." if match
        else "Predicted ids are the ground truth's (semi-supervised: the first-frame mask gave them).",
        "",
        table.to_markdown(index=False, floatfmt=".3f"),
        "",
        "matched ids (ground truth -> predicted): "
        + ", ".join(f"{o} -> {'none' if pd.isna(p) else int(p)}" for o, p in per_frame.groupby("object")["pred_id"].first().items()),
        "",
        f"Identity, frame by frame (motmetrics: a predicted and a true mask pair at IoU >= {vos_eval.IDENTITY_IOU};"
        " HOTA, DetA, AssA: TrackEval, averaged over IoU thresholds 0.05 ... 0.95):",
        "",
        pd.DataFrame([ids]).to_markdown(index=False, floatfmt=".3f"),
    ]  # fmt: skip
    write_text(out_dir / JF_MD, "\n".join(md) + "\n")
    write_json(out_dir / IDENTITY, {"iou": vos_eval.IDENTITY_IOU, **ids})
    write_text(out_dir / JF_CSV, per_frame.to_csv(index=False))
    target_dir = Path(masks_dir).parent
    vos_eval.j_plot(per_frame, out_dir / J_PLOT, f"J per frame: {target_dir.parent.name} / {target_dir.name}")
    log.info("J&F\n%s", table.to_string(index=False))
    return table
