"""The extract_frames step: a video's kept frames as files, and meta.json."""

from __future__ import annotations

import logging
import os
import shutil
from array import array
from fractions import Fraction
from pathlib import Path

from tqdm import tqdm

from ...errors import UserError
from ...io import write_json_streamed
from ..files.frames import fitted_size, frame_folder, frame_suffix, kept_frames, resized
from ..files.masks import atomic_dir, read_image, write_image
from ..settings import Settings

log = logging.getLogger(__name__)


def extract_frames(
    s: Settings, video: Path, frames_dir: Path, meta_path: Path, fps: float | None = None, from_storage: bool = False
) -> dict:
    """Decode the kept frames of ``video`` into ``frames_dir/NNNNN.jpg`` and describe them in ``meta_path``.

    ``video`` may be a folder of frames (:func:`video.frame_folder`, at ``fps``): its kept frames are
    linked, read in place, never copied nor re-encoded (``frames_dir/NNNNN.jpg`` or ``.png``: links to
    the dataset's files; re-encoded only when ``segment.limits.downscale`` scales them). A folder
    ``from_storage`` is Snakemake's download of a storage URL, which it deletes after the run: its
    frames are hard-linked instead (copied where the file system has no hard links), so that they
    outlive it. Returns the meta as written, ``kept`` and ``times_s`` as arrays (``list()`` gives the
    file's lists)."""
    frames_cfg, limits = s.frames, (s.limit("max_pixels"), s.limit("downscale"))
    # per frame, a few bytes: its source index and time in flat arrays, its file name; the spacing of
    # the times followed as they come (not a list of Fractions): memory barely grows with the video
    kept, times_s, files = array("q"), array("d"), []
    spacing = Spacing()
    with atomic_dir(frames_dir) as tmp:
        if video.is_dir():
            info, sources = frame_folder(video, frames_cfg["max_seconds"], frames_cfg["stride"], fps)
            size = fitted_size(info.width, info.height, f"the frames of {video}", *limits)
            for index, source in tqdm(sources, desc=f"link {video.name}", unit="frame"):
                files.append(f"{len(kept):05d}{frame_suffix(source)}")
                if size == (info.width, info.height) and from_storage:
                    _hard_link(source, os.path.join(tmp, files[-1]))
                elif size == (info.width, info.height):  # read in place: a link, never a copy
                    os.symlink(source.resolve(), os.path.join(tmp, files[-1]))
                else:  # segment.limits.downscale
                    write_image(os.path.join(tmp, files[-1]), resized(read_image(source), size),
                                jpeg_quality=frames_cfg["jpeg_quality"])  # fmt: skip
                kept.append(index)
                spacing.add(index / info.fps)
                times_s.append(round(float(index / info.fps), 6))
        else:
            if fps:
                log.warning("%s: a video file plays at its container's rate; the fps given (%s) is ignored", video, fps)
            info, frames = kept_frames(video, frames_cfg["max_seconds"], frames_cfg["stride"], *limits)
            size = fitted_size(info.width, info.height, f"video {video}", *limits)
            for frame in tqdm(frames, desc=f"extract {video.name}", unit="frame"):
                files.append(f"{len(kept):05d}.jpg")
                write_image(os.path.join(tmp, files[-1]), frame.image, jpeg_quality=frames_cfg["jpeg_quality"])
                kept.append(frame.index)
                spacing.add(frame.time_s)
                times_s.append(round(float(frame.time_s), 6))
        if not kept:
            raise UserError(f"{video} holds no decodable frame; replace the file")
    variable = spacing.variable()
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
        "times_s": times_s,
    }
    write_json_streamed(meta_path, meta)  # the bytes of json.dumps(meta, indent=2), the arrays as lists
    log.info("%s: %d of its frames kept (stride %d, max %s s) at %dx%d%s, %s fps%s%s",
             video, len(kept), frames_cfg["stride"], frames_cfg["max_seconds"], *size,
             f" (scaled down from {info.width}x{info.height}: segment.limits.downscale)" if size != (info.width, info.height) else "",
             info.fps,
             f", turned {info.rotation} degrees upright" if info.rotation else "",
             ", variable rate (the overlay keeps each frame's time)" if variable else "")  # fmt: skip
    return meta


def _hard_link(source: Path, dest: str) -> None:
    """``dest`` as a second name of ``source``'s data (a copy where the two are on different file
    systems, or the file system has no hard links): it stays when ``source`` is deleted."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


class Spacing:
    """Whether the kept frames' spacing varies by more than 1% of its mean (a phone's variable rate:
    the overlay then keeps each frame's time), followed frame by frame from their exact times."""

    def __init__(self):
        self.last: Fraction | None = None
        self.low = self.high = self.total = None
        self.count = 0

    def add(self, time: Fraction) -> None:
        time = Fraction(time)
        if self.last is not None:
            step = time - self.last
            self.low = step if self.low is None else min(self.low, step)
            self.high = step if self.high is None else max(self.high, step)
            self.total = step if self.total is None else self.total + step
            self.count += 1
        self.last = time

    def variable(self) -> bool:
        return bool(self.count) and self.high - self.low > Fraction(1, 100) * (self.total / self.count)
