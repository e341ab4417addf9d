"""The propagate step: the first frame's instances carried through every kept frame by the configured
tracker (``segment.propagate.method``, loaded by name from :data:`vispipe.segment.registry.TRACKERS`),
re-detecting every ``segment.redetect.every`` frames; the same outputs whichever tracker ran."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ...errors import UserError
from ...io import write_json
from ...runtime import device_name, pick_device
from .. import models, registry
from ..files.masks import decode_rle, read_image
from ..files.tracks import TrackWriter
from ..layout import TRACK_FRAMES, propagate_blocks
from ..settings import Settings
from ..timing import Stopwatch
from ..track import Context
from ..track.loop import track
from .common import detector_kind, read_json, read_meta, target_phrases, target_prompt
from .models import autocast, model_folders, refiner, run_provenance, text_detector

log = logging.getLogger(__name__)


class Plan:
    """What propagating ``target`` takes under the step's settings: the tracker's module and model,
    whether SAM2 refines, whether the detector re-detects, and so which models to load."""

    def __init__(self, s: Settings, target: str):
        self.method = s.propagate.get("method", "flow")
        self.tracker = registry.load(registry.TRACKERS, self.method)
        self.model = registry.TRACKERS[self.method].model  # loaded as a video model, or None
        self.kind = detector_kind(s)
        self.phrases = target_phrases(s, target) if getattr(self.tracker, "NEEDS_TEXT", False) else []
        # SAM 3 detects on every frame with ids of its own, across cuts too: neither re-detection nor cuts apply
        self.redetect = s.redetect if getattr(self.tracker, "REDETECTS", True) else {"every": 0, "scene_cut": None}
        if getattr(self.tracker, "NEEDS_TEXT", False) and not self.phrases:
            raise UserError(f"target {target!r} has no text prompt, but segment.propagate.method {self.method} "
                            f"detects and tracks the target's text: give segment.targets.{target}.prompt, or "
                            "choose another method")  # fmt: skip
        self.refine = getattr(self.tracker, "refines", lambda s: False)(s)
        self.redetects = bool(self.redetect["every"])
        if self.redetects and target_prompt(s, target) is None:
            log.warning("segment.redetect.every is %d, but target %r has no text prompt: re-detection needs text"
                        " (the detector finds the instances), so it is off for this target", self.redetect["every"],
                        target)  # fmt: skip
            self.redetects = False

    def dirs(self, sam2_dir: Path | None, detector_dir: Path | None, tracker_dir: Path | None) -> dict:
        """The folders of the models this run uses (None: where segment.models puts it)."""
        dirs = {}
        if self.model == "sam2" or self.refine or self.redetects:
            dirs["sam2"] = sam2_dir  # to track, refine or re-detect
        if self.redetects:
            dirs[self.kind] = detector_dir
        if self.model not in (None, "sam2"):
            dirs[self.model] = tracker_dir
        return dirs

    @property
    def image_models(self) -> list[str]:
        """SAM2 to refine or re-detect, the detector to re-detect (a tracker's model loads as a video model)."""
        return list(dict.fromkeys(k for k, used in (("sam2", self.refine or self.redetects),
                                                    (self.kind, self.redetects)) if used))  # fmt: skip


def decoded(frames_dir: Path, files: list[str], clock: Stopwatch):
    """The kept frames, read one by one (timed as ``decode``)."""
    for f in files:
        with clock("decode"):
            image = read_image(frames_dir / f)
        yield image


def propagate_video(s: Settings, frames_dir: Path, meta_path: Path, instances_path: Path, masks_dir: Path,
                    tracks_path: Path, rle_path: Path, sam2_dir: Path | None = None, detector_dir: Path | None = None,
                    tracker_dir: Path | None = None) -> dict:  # fmt: skip
    """Masks of every kept frame (``masks_dir/NNNNN.png``), ``tracks.json`` with ``tracks.jsonl`` beside
    it (one line per frame) and the COCO RLE file, each written as the frames come
    (:class:`~vispipe.segment.files.tracks.TrackWriter`); ``tracks.json`` records the seconds of each
    stage under ``stage_times``."""
    meta = read_meta(meta_path, frames_dir)
    first = read_json(instances_path, "segment_first", ("instances", "target", "weights"))
    target, plan = first["target"], Plan(s, first["target"])
    dirs, device = plan.dirs(sam2_dir, detector_dir, tracker_dir), pick_device(s.device)
    folders = model_folders(s, dirs)
    loaded = {k: models.load(k, folders[k], device) for k in plan.image_models}
    clock = Stopwatch(torch.cuda.synchronize if device.type == "cuda" else None)
    detector = text_detector(s, target, loaded, clock) if plan.redetects else None
    if detector:
        log.info(
            "re-detecting %r every %d kept frames (%s)", target_prompt(s, target), plan.redetect["every"], plan.kind
        )
    start = {inst["id"]: decode_rle(inst["segmentation"]) for inst in first["instances"]}
    if not start:
        log.warning("no instance on the first frame (%s): every mask will be empty", first.get("warning", ""))
    video_model = models.load(plan.model, folders[plan.model], device, video=True) if plan.model else None
    frames = decoded(frames_dir, meta["files"], clock)
    prefetch = s.propagate.get("prefetch", True)
    ctx = Context(s, frames, prefetch, clock, autocast(s, device), video_model,
                  refiner(s, loaded["sam2"], clock) if plan.refine else None, plan.phrases, plan.method)  # fmt: skip
    if plan.method == "flow" and not plan.refine:
        log.info("segment.propagate.refine is false: the masks are warped by the flow, SAM2 does not refine them")
    items, stepper = plan.tracker.build(ctx)
    writer = TrackWriter(meta, target, clock)
    results = track(items, start, stepper, detector, plan.redetect)
    writer.write(results, masks_dir, tracks_path.with_name(TRACK_FRAMES), rle_path, first["weights"])
    tracks = writer.tracks(first, plan.method, first["weights"])
    tracks["stage_times"] = {"device": device_name(device), "prefetch": prefetch, **clock.summary(writer.count)}
    ran = {**loaded, **({plan.model: video_model} if video_model is not None else {})}
    tracks["provenance"] = run_provenance(s, propagate_blocks(target, bool(plan.redetect["every"]), plan.method,
                                                              plan.kind), ran, dirs)  # fmt: skip
    write_json(tracks_path, tracks)
    for i, counts in writer.summary.items():
        log.info("instance %s: %s", i, ", ".join(f"{n} {state}" for state, n in counts.items()))
    log.info("%s, %s: %s", plan.method, device_name(device), clock.table(writer.count))
    return tracks
