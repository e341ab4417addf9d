"""The export_annotations step: the tracks in the formats annotation and training tools read."""

from __future__ import annotations

import logging
from pathlib import Path

from ...errors import UserError
from ..files.formats import export
from ..files.tracks import frames
from ..settings import Settings
from .common import read_meta, read_tracks

log = logging.getLogger(__name__)


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
    formats = list(formats if formats is not None else s.export["formats"])
    if not formats:
        raise UserError(
            "no export format chosen: set segment.export.formats (yolo, cvat, label_studio, coco) or --formats"
        )
    meta = read_meta(meta_path, frames_dir)
    tracks = read_tracks(tracks_path, meta, meta_path, ("target",))
    missing = [f["file"] for f in frames(tracks_path, tracks) if not (masks_dir / f["file"]).is_file()]
    if missing:
        raise UserError(
            f"{masks_dir} lacks {len(missing)} mask(s) listed in {tracks_path} ({missing[0]}, ...); rerun propagate"
        )
    written = export(formats, masks_dir, meta, tracks_path, tracks, frames_dir, out_dir, video_url, s.export)
    log.info("%s: %s", out_dir, ", ".join(written))
    return written
