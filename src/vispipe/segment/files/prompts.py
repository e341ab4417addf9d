"""Prompts beyond text: a target's instances on a video's first kept frame, given by the user.

``segment.videos.<key>.prompts`` (or a sheet's ``prompts`` column) maps a target to a file:

- a **mask**, ``.png``: the first frame's objects as a DAVIS-style palette PNG or an id PNG (pixel =
  object id, 0 = background), the first-frame ground truth of the semi-supervised protocol. Each
  id is an instance, taken as it is (SAM2 does not redraw a given mask).
- **boxes and points**, ``.json``: ``{"instances": [{"box": [x0, y0, x1, y1]}, {"points": [[x, y],
  ...], "labels": [1, 0, ...]}, {"box": [...], "points": [...], "labels": [...]}]}`` in pixels of
  the first kept frame (as it stands upright); label 1 is a point on the object, 0 one off it.
  SAM2 turns each instance's prompt into its mask.

Either way CLIPSeg is not run on the first frame; a target that also has text keeps it for
re-detection. A bad file is a :class:`UserError` naming it, the instance and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import UserError
from .masks import image_size, read_ids

SUFFIXES = (".png", ".json")


@dataclass
class Prompt:
    """One instance's prompt: a mask, or a box and/or points."""

    id: int  # the instance id it becomes: the mask's own id, or its place in the JSON list
    mask: np.ndarray | None = None  # bool, frame size
    box: list[float] | None = None  # x0, y0, x1, y1 (x1, y1 exclusive)
    points: list[list[float]] | None = None  # [[x, y], ...]
    labels: list[int] | None = None  # 1 on the object, 0 off it

    @property
    def kind(self) -> str:
        return "mask" if self.mask is not None else "+".join(k for k in ("box", "points") if getattr(self, k))


LIMITS = "segment.limits"


def _number_list(value, n: int | None, what: str, place: str) -> list[float]:
    ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or (n is not None and len(value) != n):
        raise UserError(f"{place}: {what} must be a list of {n or 'some'} numbers, not {json.dumps(value)}")
    return [float(v) for v in value]


def _check_count(path: Path, count: int, what: str, limit: int | None, key: str) -> None:
    if limit is not None and count > limit:
        raise UserError(f"{path} holds {count:,} {what}, more than {LIMITS}.{key} ({limit:,}): SAM2's work grows "
                        f"with each; split the file, or raise {LIMITS}.{key}")  # fmt: skip


def _read_json(path: Path, width: int, height: int, max_instances: int | None, max_points: int | None) -> list[Prompt]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read prompt file {path}: {e}; fix the JSON") from None
    instances = doc.get("instances") if isinstance(doc, dict) else None
    if not isinstance(instances, list) or not instances:
        raise UserError(
            f'{path}: expected {{"instances": [{{"box": [x0, y0, x1, y1]}}, ...]}} with at least one instance'
        )
    _check_count(path, len(instances), "instances", max_instances, "max_prompt_instances")
    points = sum(len(i["points"]) for i in instances if isinstance(i, dict) and isinstance(i.get("points"), list))
    _check_count(path, points, "points", max_points, "max_prompt_points")
    frame = f"the first kept frame ({width}x{height}, upright)"
    prompts = []
    for n, inst in enumerate(instances, start=1):
        place = f"{path}, instance {n}"
        if (
            not isinstance(inst, dict)
            or not set(inst) <= {"box", "points", "labels"}
            or not ("box" in inst or "points" in inst)
        ):
            raise UserError(f'{place}: give "box": [x0, y0, x1, y1] and/or "points": [[x, y], ...] with "labels"')
        box = points = labels = None
        if "box" in inst:
            box = _number_list(inst["box"], 4, "box", place)
            x0, y0, x1, y1 = box
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise UserError(f"{place}: box {inst['box']} lies outside {frame}, or x1 <= x0 / y1 <= y0; "
                                "boxes are [x0, y0, x1, y1] in pixels")  # fmt: skip
        if "points" in inst:
            if not isinstance(inst["points"], list) or not inst["points"]:
                raise UserError(f"{place}: points must be a non-empty list of [x, y]")
            points = [_number_list(p, 2, "each point", place) for p in inst["points"]]
            labels = inst.get("labels", [1] * len(points))
            if not (isinstance(labels, list) and len(labels) == len(points) and set(labels) <= {0, 1}):
                raise UserError(f"{place}: labels must hold one 1 (on the object) or 0 (off it) per point")
            outside = [p for p in points if not (0 <= p[0] < width and 0 <= p[1] < height)]
            if outside:
                raise UserError(f"{place}: point {outside[0]} lies outside {frame}")
            if 1 not in labels and box is None:
                raise UserError(f"{place}: points without a box need at least one positive point (label 1)")
        elif "labels" in inst:
            raise UserError(f"{place}: labels without points")
        prompts.append(Prompt(n, box=box, points=points, labels=labels))
    return prompts


def read_prompts(path: str | Path, width: int, height: int, max_instances: int | None = None,
                 max_points: int | None = None) -> list[Prompt]:  # fmt: skip
    """The instances a prompt file gives on a ``width`` x ``height`` first frame, in id order; more
    than ``max_instances`` instances or ``max_points`` points (segment.limits) is an error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompt file {path} does not exist; fix the path under segment.videos.<key>.prompts")
    if path.suffix.lower() == ".json":
        return _read_json(path, width, height, max_instances, max_points)
    if path.suffix.lower() != ".png":
        raise UserError(f"prompt file {path}: use a .png mask or a .json of boxes and points")
    size = image_size(path, "mask prompt")  # compared before a pixel is decoded
    if size != (width, height):
        raise UserError(
            f"mask prompt {path} is {size[0]}x{size[1]} but the video's first kept frame is "
            f"{width}x{height} (upright); give the mask of that frame at its size"
        )
    ids = read_ids(path, "mask prompt", "replace the file")
    present = [int(i) for i in np.unique(ids) if i]
    if not present:
        raise UserError(f"mask prompt {path} holds no object (every pixel is 0)")
    _check_count(path, len(present), "objects (ids)", max_instances, "max_prompt_instances")
    return [Prompt(i, mask=ids == i) for i in present]
