"""What every step reads the same way: another rule's JSON files, the kept frames' meta.json, a
target's text. No model and no tracker: the light steps (frames, overlay, exports) import this too.
"""

from __future__ import annotations

import json
import os
from array import array
from pathlib import Path

from ...errors import UserError
from ..files.masks import Numbered
from ..files.tracks import frames_path
from ..layout import TRACKER_MODELS
from ..settings import Settings


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


def read_tracks(tracks_path: Path, meta: dict, meta_path: Path, keys: tuple[str, ...]) -> dict:
    """propagate's tracks.json (the summary; its frames are read one by one with
    :func:`vispipe.segment.files.tracks.frames`), which must count one entry per kept frame of ``meta``."""
    tracks = read_json(tracks_path, "propagate", (*keys, "frame_count"))
    if tracks["frame_count"] != meta["count"]:
        raise UserError(
            f"{tracks_path} has {tracks['frame_count']} frames but {meta_path} {meta['count']}; rerun propagate"
        )
    if not frames_path(tracks_path, tracks).is_file():
        raise UserError(f"{frames_path(tracks_path, tracks)} does not exist; rerun the propagate rule")
    return tracks


def read_meta(meta_path: Path, frames_dir: Path) -> dict:
    """extract_frames' meta.json, its per-frame lists held compactly (:func:`compact_meta`), every
    listed frame checked to be in ``frames_dir``."""
    meta = compact_meta(read_json(meta_path, "extract_frames", ("files", "kept", "count", "source")))
    # os.path, not pathlib, per frame: pathlib interns each name it parses, kept for the whole step
    missing = [f for f in meta["files"] if not os.path.isfile(os.path.join(frames_dir, f))]
    if missing:
        raise UserError(
            f"{frames_dir} lacks {len(missing)} frame(s) listed in {meta_path} ({missing[0]}, ...); rerun extract_frames"
        )
    return meta


def compact_meta(meta: dict) -> dict:
    """``meta`` with its per-frame lists in a few bytes a frame, not a Python object each (a few MB
    an hour of frames): ``kept`` and ``times_s`` as arrays, ``files`` as :class:`Numbered` where they
    follow its pattern. Indexing and iterating them gives what the lists gave."""
    meta["kept"] = array("q", meta["kept"])
    if "times_s" in meta:
        meta["times_s"] = array("d", meta["times_s"])
    files = meta["files"]
    suffix = Path(files[0]).suffix if files else ""
    if all(f == f"{k:05d}{suffix}" for k, f in enumerate(files)):
        meta["files"] = Numbered(len(files), suffix)
    return meta
