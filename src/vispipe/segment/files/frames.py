"""Video in and out with PyAV (FFmpeg): decode the kept frames, encode the overlay as H.264.

OpenCV's pip wheels can only write MPEG-4 part 2 (``mp4v``), which browsers do not play; PyAV's
wheels carry libx264, so the overlay is H.264 in yuv420p, the combination every browser decodes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import cv2
import numpy as np

from ...errors import UserError
from .masks import image_size

MIN_SIDE = 16  # pixels: a smaller frame is refused (the models' preprocessing cannot take it)
LIMIT_KEY = "segment.limits.max_pixels"


def fitted_size(width: int, height: int, where: str, max_pixels: int | None = None,
                downscale: bool = False) -> tuple[int, int]:  # fmt: skip
    """The size a ``width`` x ``height`` frame of ``where`` (a file, named in the error) is kept at:
    as it is, or, over ``max_pixels`` (segment.limits), scaled down to fit when ``downscale`` and
    refused otherwise, before any pixel is decoded. Frames under :data:`MIN_SIDE` are refused."""
    small = f"frames under {MIN_SIDE} pixels on a side are too small for the models; give a larger video or image"
    if min(width, height) < MIN_SIDE:
        raise UserError(f"{where} is {width}x{height}: {small}")
    if max_pixels is None or width * height <= max_pixels:
        return width, height
    if not downscale:
        raise UserError(
            f"{where} is {width}x{height} = {width * height:,} pixels, more than {LIMIT_KEY} ({max_pixels:,}): "
            f"raise that key, or set segment.limits.downscale: true to scale it down"
        )
    scale = math.sqrt(max_pixels / (width * height))
    w, h = int(width * scale), int(height * scale)
    if min(w, h) < MIN_SIDE:
        raise UserError(f"{where} scaled down to {LIMIT_KEY} ({max_pixels:,}) would be {w}x{h}: {small}")
    return w, h


def resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` at ``size`` (width, height); area averaging, as for a downscale."""
    if (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


@dataclass
class SourceInfo:
    """What the container says about the first video stream; sizes as players show the frames."""

    fps: Fraction  # the average rate (a phone's variable-rate video has no other)
    width: int
    height: int
    frame_count: int | None  # from the container; None when it does not say
    duration_s: float | None
    codec: str
    rotation: int = 0  # degrees counterclockwise the decoded frames are turned to stand upright


class KeptFrame(NamedTuple):
    index: int  # in the source, counted from 0 in presentation order
    image: np.ndarray  # RGB, upright
    time_s: Fraction  # presentation time after the first frame's


def _open(path: Path):
    if not path.is_file():
        raise UserError(f"video not found: {path}; check the path under segment.videos")
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise UserError(f"cannot read video {path}: {e}. Is it empty or corrupt? Replace the file.") from e
    if not container.streams.video:
        container.close()
        raise UserError(f"{path} has no video stream; point segment.videos at a video file")
    return container


def kept_frames(
    path: str | Path, max_seconds: float | None, stride: int, max_pixels: int | None = None, downscale: bool = False
) -> tuple[SourceInfo, Iterator[KeptFrame]]:
    """The source's stream info and an iterator of its kept frames: every ``stride``-th frame of the
    first ``max_seconds`` seconds (all of them when ``None``), turned upright. Frames over
    ``max_pixels`` are refused before decoding, or scaled down with ``downscale`` (:func:`fitted_size`);
    the info gives the source's own size.

    Phones record as players do not show: the sensor's landscape frames plus a display matrix that
    says how to turn them (portrait video), and a variable frame rate. So a frame's time is its
    presentation timestamp, not its index over the rate, and each frame is rotated by the display
    matrix's angle (multiples of 90 degrees), as ffmpeg and players do."""
    path = Path(path)
    container = _open(path)
    stream = container.streams.video[0]
    fps = stream.average_rate or stream.guessed_rate
    if not fps:
        container.close()
        raise UserError(f"{path}: the video stream has no frame rate; re-encode it (ffmpeg -i in -r 25 out.mp4)")
    try:
        fitted_size(stream.codec_context.width, stream.codec_context.height, f"video {path}", max_pixels, downscale)
    except UserError:
        container.close()
        raise
    decoded = container.decode(stream)
    try:
        first = next(decoded, None)  # its display matrix says how every frame stands
    except av.FFmpegError as e:
        container.close()
        raise UserError(f"cannot decode video {path}: {e}. The file is damaged; replace it.") from e
    quarter_turns = round((first.rotation if first is not None else 0) / 90) % 4
    width, height = stream.codec_context.width, stream.codec_context.height
    duration = float(stream.duration * stream.time_base) if stream.duration else None
    info = SourceInfo(
        Fraction(fps),
        *((height, width) if quarter_turns % 2 else (width, height)),
        stream.frames or None,
        duration,
        stream.codec_context.name,
        quarter_turns * 90,
    )
    limit = Fraction(max_seconds) if max_seconds is not None else None
    size = fitted_size(info.width, info.height, f"video {path}", max_pixels, downscale)

    def frames() -> Iterator[KeptFrame]:
        try:
            if first is None:
                return
            t0 = first.pts
            for index, frame in enumerate(itertools.chain([first], decoded)):
                if frame.pts is None or t0 is None:  # a stream without timestamps: its rate
                    time_s = Fraction(index) / info.fps
                else:
                    time_s = (frame.pts - t0) * frame.time_base
                if limit is not None and time_s >= limit:
                    break
                if index % stride == 0:
                    image = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), quarter_turns))
                    yield KeptFrame(index, resized(image, size), time_s)
        except av.FFmpegError as e:
            raise UserError(f"cannot decode video {path}: {e}. The file is damaged; replace it.") from e
        finally:
            container.close()

    return info, frames()


FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
FOLDER_FPS = Fraction(24)  # a frame folder's rate when its entry names none: DAVIS's


def frame_suffix(path: Path) -> str:
    """A frame file's format as its suffix: ``.jpg`` (for .jpg and .jpeg, any case) or ``.png``."""
    suffix = path.suffix.lower()
    return ".jpg" if suffix == ".jpeg" else suffix


def frame_folder(
    path: str | Path, max_seconds: float | None, stride: int, fps: float | None = None
) -> tuple[SourceInfo, list[tuple[int, Path]]]:
    """A folder of frames (the DAVIS / YouTube-VOS layout, ``JPEGImages/<sequence>/00000.jpg``) as a
    video: its info and the ``(source frame index, file)`` pairs to keep, chosen as
    :func:`kept_frames` chooses them, at ``fps`` (:data:`FOLDER_FPS` when ``None``). Frames are in
    number order when every name is a number (then a missing number is an error), else in name
    order; they must share one format and one size."""
    path = Path(path)
    files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
    if not files:
        raise UserError(f"{path} holds no frame ({', '.join(FRAME_SUFFIXES)}); point segment.videos at a video"
                        " file or a folder of frames")  # fmt: skip
    formats = sorted({frame_suffix(p) for p in files})
    if len(formats) > 1:
        raise UserError(f"{path} mixes frame formats ({', '.join(formats)}); keep one format per folder")
    if all(p.stem.isdigit() for p in files):
        files.sort(key=lambda p: (int(p.stem), p.name))
        for a, b in zip(files, files[1:]):
            if int(b.stem) != int(a.stem) + 1:
                what = f"frame {int(a.stem) + 1} is missing" if int(b.stem) > int(a.stem) else "a frame number repeats"
                raise UserError(f"{path}: {what} ({a.name}, then {b.name}); a frame folder is gapless: renumber"
                                " its frames or fill the gap")  # fmt: skip
    else:
        files.sort(key=lambda p: p.name)
    sizes = {p: image_size(p, "frame") for p in files}  # the headers only
    first = files[0]
    for p in files:
        if sizes[p] != sizes[first]:
            (w, h), (w0, h0) = sizes[p], sizes[first]
            raise UserError(f"{p} is {w}x{h}, {first.name} {w0}x{h0}: the frames of a folder share one size;"
                            " resize them to one")  # fmt: skip
    rate = Fraction(fps).limit_denominator(1001) if fps else FOLDER_FPS
    width, height = sizes[first]
    info = SourceInfo(rate, width, height, len(files), float(len(files) / rate), f"{formats[0][1:]} frames")
    limit = math.ceil(max_seconds * rate) if max_seconds is not None else None
    kept = [(i, p) for i, p in enumerate(files) if (limit is None or i < limit) and i % stride == 0]
    return info, kept


TIME_BASE = Fraction(1, 90_000)  # the overlay's timestamps at a variable rate: MPEG's 90 kHz clock


def write_h264(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: Fraction,
    crf: int = 20,
    times: list[float] | None = None,
) -> int:
    """Encode RGB frames as H.264 (yuv420p) MP4 at ``fps``; return the number of frames written.

    ``times`` (seconds, one per frame): each frame is shown at its time instead (a variable rate;
    ``fps`` is then the average). yuv420p needs even sides: an odd width or height is padded by one
    black pixel."""
    n, last_pts = 0, -1
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = None
        for frame in frames:
            if stream is None:
                h, w = frame.shape[:2]
                stream = out.add_stream("libx264", rate=fps)
                stream.width, stream.height = w + w % 2, h + h % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf)}
                if times is not None:
                    stream.codec_context.time_base = TIME_BASE
            if frame.shape[0] % 2 or frame.shape[1] % 2:
                frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            if times is not None:
                last_pts = max(round(Fraction(times[n]) / TIME_BASE), last_pts + 1)  # strictly increasing
                picture.pts, picture.time_base = last_pts, TIME_BASE
            for packet in stream.encode(picture):
                out.mux(packet)
            n += 1
        if stream is not None:
            for packet in stream.encode():
                out.mux(packet)
    return n
