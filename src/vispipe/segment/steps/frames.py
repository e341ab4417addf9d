"""The extract_frames step: a video's kept frames as files, and meta.json."""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

from tqdm import tqdm

from ...errors import UserError
from ...io import write_json
from ..files.frames import fitted_size, frame_folder, frame_suffix, kept_frames, resized
from ..files.masks import atomic_dir, read_image, write_image
from ..settings import Settings

log = logging.getLogger(__name__)


def extract_frames(s: Settings, video: Path, frames_dir: Path, meta_path: Path, fps: float | None = None) -> dict:
    """Decode the kept frames of ``video`` into ``frames_dir/NNNNN.jpg`` and describe them in ``meta_path``.

    ``video`` may be a folder of frames (:func:`video.frame_folder`, at ``fps``): its kept frames are
    linked, read in place, never copied nor re-encoded (``frames_dir/NNNNN.jpg`` or ``.png``: links to
    the dataset's files; re-encoded only when ``segment.limits.downscale`` scales them)."""
    frames_cfg, limits = s.frames, (s.limit("max_pixels"), s.limit("downscale"))
    kept: list[int] = []
    files: list[str] = []
    times: list[Fraction] = []  # presentation times of the kept frames, after the first's
    with atomic_dir(frames_dir) as tmp:
        if video.is_dir():
            info, sources = frame_folder(video, frames_cfg["max_seconds"], frames_cfg["stride"], fps)
            size = fitted_size(info.width, info.height, f"the frames of {video}", *limits)
            for index, source in tqdm(sources, desc=f"link {video.name}", unit="frame"):
                files.append(f"{len(kept):05d}{frame_suffix(source)}")
                if size == (info.width, info.height):  # read in place: a link, never a copy
                    os.symlink(source.resolve(), tmp / files[-1])
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
