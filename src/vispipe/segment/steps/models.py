"""The models of a step: fetched (the fetch_models rule), found in their folders and loaded, SAM2's
refiner and the configured detector built from the step's settings, and the provenance of what ran.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...provenance import provenance
from ...runtime import pick_device
from .. import models, registry
from ..detect.runner import TextDetector
from ..layout import MODELS_BLOCK
from ..refine import Sam2Refiner, autocast_dtype
from ..settings import Settings
from ..timing import Stopwatch
from ..types import Loaded
from .common import detector_kind, target_phrases, tracker_kind


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


def run_provenance(s: Settings, blocks: tuple[str, ...], loaded: dict[str, Loaded], dirs: dict) -> dict:
    """The run's provenance; ``segment.models`` counts among the blocks read when it located a model."""
    if None in dirs.values():
        blocks = (*blocks, MODELS_BLOCK)
    device = next(iter(loaded.values())).device if loaded else pick_device(s.device)
    return provenance(device, s.as_config(), blocks)


def model_folders(s: Settings, dirs: dict[str, Path | None]) -> dict[str, Path]:
    """The folders of the models named in ``dirs``; one left ``None`` is where ``segment.models`` puts it."""
    if None in dirs.values():
        default = models.model_dirs(s.models, tuple(dirs))
        dirs = {kind: folder or default[kind] for kind, folder in dirs.items()}
    return dirs


def load_models(s: Settings, dirs: dict[str, Path | None]) -> dict[str, Loaded]:
    """Load the models named in ``dirs`` (see :func:`_model_folders`)."""
    device = pick_device(s.device)
    return {kind: models.load(kind, folder, device) for kind, folder in model_folders(s, dirs).items()}


def autocast(s: Settings, device: torch.device) -> torch.dtype | None:
    """The dtype ``segment.sam2.autocast`` runs SAM2 under on ``device`` (None: float32)."""
    return autocast_dtype(s.sam2.get("autocast", "auto"), device)


def refiner(s: Settings, sam2: Loaded, clock: Stopwatch | None = None) -> Sam2Refiner:
    """SAM2 image refinement with the ``segment.sam2`` prompts and autocast."""
    c = s.sam2
    return Sam2Refiner(sam2, c["n_pos"], c["n_neg"], c["border"], clock, autocast(s, sam2.device))


def text_detector(s: Settings, target: str, loaded: dict[str, Loaded], clock: Stopwatch | None = None) -> TextDetector:
    """The configured detector (``segment.detector``) on ``target``'s text, and SAM2 where it refines."""
    kind, clock = detector_kind(s), clock or Stopwatch()
    knobs = getattr(s, kind)
    sam2 = refiner(s, loaded["sam2"], clock) if registry.load(registry.DETECTORS, kind).refines(knobs) else None
    return TextDetector(kind, target_phrases(s, target), knobs, loaded[kind], sam2, s.seed, clock)
