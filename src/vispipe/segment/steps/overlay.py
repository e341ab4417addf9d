"""The render_overlay step: the instances drawn over the kept frames, as an H.264 video."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

from tqdm import tqdm

from ...errors import UserError
from ...io import atomic_path
from .. import overlay
from ..files.frames import write_h264
from ..files.masks import read_id_mask, read_image, write_image
from ..files.tracks import frames
from ..layout import RANDOM_WARNING
from ..settings import Settings
from .common import read_meta, read_tracks

log = logging.getLogger(__name__)


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
    meta = read_meta(meta_path, frames_dir)
    tracks = read_tracks(tracks_path, meta, meta_path, ("target", "weights"))
    target, random_weights = tracks["target"], tracks["weights"]["random"]
    if random_weights:
        log.warning("%s", RANDOM_WARNING)

    def drawn():
        size = (meta["source"]["height"], meta["source"]["width"])
        for k, (frame_file, track) in enumerate(zip(meta["files"], frames(tracks_path, tracks))):
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
                picture = overlay.banner(picture, overlay.RANDOM_BANNER)
            if k == 0 and first_path is not None:
                write_image(first_path, picture)
            yield picture

    fps = Fraction(meta["output_fps"])
    times = meta["times_s"] if meta["source"].get("variable_frame_rate") else None  # a phone's: their own times
    with atomic_path(out_path) as tmp:
        n = write_h264(tmp, tqdm(drawn(), total=meta["count"], desc=f"render {target}", unit="frame"), fps, times=times)
    log.info("%s: %d frames, H.264, %s fps, %dx%d", out_path, n, fps, meta["source"]["width"], meta["source"]["height"])
    return n
