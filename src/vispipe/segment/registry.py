"""The names the config picks from, one line each: models, detectors, trackers, export formats.

``segment.detector``, ``segment.propagate.method``, ``segment.export.formats`` and the model kinds
fetch_models fetches are keys of the tables below; each line names the module that implements it,
imported by name when a step runs it (:func:`load`). Adding one is a new module and a line here,
plus its block in the schema (``tests/test_registry.py`` keeps these keys equal to the schema's
enums; docs/adding-a-model.md walks through one).

- a detector module (``detect/<name>.py``) is its model's family too: ``classes(video)``, ``tiny()``
  (a random model for the demo and tests) and ``detect(...) -> Instances``;
- a model that is no detector (SAM2, EdgeTAM) has its family module in ``models/``;
- a tracker module (``track/<name>.py``) builds a Stepper for the generic loop; its line names the
  model it runs as a video model, if any;
- an export module (``files/formats/<name>.py``) writes one format.

A module imported by name is invisible to the rules' code hashes, which follow ``import`` lines
(:mod:`vispipe.codedeps`): :func:`step_modules` says which of them a step runs for a config, and the
rules hash those too. An edit to the configured detector reruns its steps; an edit to another
reruns nothing.

Standard library only: the workflow layer imports it on every dry run.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple

PACKAGE = __name__.rsplit(".", 1)[0]  # vispipe.segment


class Model(NamedTuple):
    module: str  # below vispipe.segment
    repo: str  # the Hub repo the config names by default (config.yaml)


class Tracker(NamedTuple):
    module: str
    model: str | None  # the model family it runs as a video model (SAM2's own tracker: sam2), or None


# segment.detector: text -> instances (each module is also its model's family)
DETECTORS = {
    "clipseg": Model("detect.clipseg", "CIDAS/clipseg-rd64-refined"),
    "grounding_dino": Model("detect.grounding_dino", "IDEA-Research/grounding-dino-tiny"),
    "owlv2": Model("detect.owlv2", "google/owlv2-base-patch16-ensemble"),
    "sam3": Model("detect.sam3", "facebook/sam3"),
}
# every model fetch_models can fetch: the detectors', SAM2 (refines every instance; tracks) and EdgeTAM
MODELS = {
    **DETECTORS,
    "sam2": Model("models.sam2", "facebook/sam2.1-hiera-small"),
    "edgetam": Model("models.edgetam", "yonigozlan/EdgeTAM-hf"),
}
# segment.propagate.method: what carries the instances from frame to frame
TRACKERS = {
    "flow": Tracker("track.flow", None),
    "sam2_video": Tracker("track.sam2_video", "sam2"),
    "edgetam_video": Tracker("track.edgetam_video", "edgetam"),
    "sam3_video": Tracker("track.sam3_video", "sam3"),
}
# segment.export.formats: files for annotation and training tools
FORMATS = {
    "yolo": "files.formats.yolo",
    "cvat": "files.formats.cvat",
    "label_studio": "files.formats.label_studio",
    "coco": "files.formats.coco",
}


def module_name(entry: Model | Tracker | str) -> str:
    """The dotted name of a table entry's module."""
    return f"{PACKAGE}.{entry if isinstance(entry, str) else entry.module}"


def load(table: dict, name: str) -> ModuleType:
    """The module of ``name`` in ``table`` (one of the tables above), imported."""
    return importlib.import_module(module_name(table[name]))


def step_modules(step: str, seg: dict) -> list[str]:
    """The modules ``step`` imports by name for the ``segment`` config ``seg`` (dotted names): what its
    rule adds to its code hash."""
    detector = seg.get("detector", "clipseg")
    if step in ("segment_first", "segment_image"):
        return [module_name(DETECTORS[detector]), module_name(MODELS["sam2"])]
    if step == "propagate":
        method = seg.get("propagate", {}).get("method", "flow")
        tracker = TRACKERS[method]
        names = [module_name(tracker), module_name(MODELS["sam2"])]
        names += [module_name(MODELS[tracker.model])] if tracker.model else []
        redetects = method != "sam3_video" and seg.get("redetect", {}).get("every", 0) > 0
        names += [module_name(DETECTORS[detector])] if redetects else []
        return list(dict.fromkeys(names))
    if step == "export_annotations":
        return [module_name(FORMATS[f]) for f in seg.get("export", {}).get("formats", [])]
    return []
