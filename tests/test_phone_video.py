"""Videos as phones record them: a display matrix that turns the sensor's landscape frames into
portrait, and a variable frame rate. The clips are made here with PyAV (a display rotation, irregular
timestamps); frames, masks, meta.json sizes and the overlay come out upright, as players show them,
and the overlay keeps the kept frames' times."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import DEMO_CONFIGS, run_script
from vispipe.segment.settings import Settings
from vispipe.segment.steps.frames import extract_frames

CODED = (64, 96)  # height, width as the sensor records them: landscape
MS = Fraction(1, 1000)
# a phone's irregular frame spacing (ms): 30 fps on average, with the hiccups of a busy encoder
STEPS_MS = [33, 34, 33, 50, 17, 33, 66, 33, 34, 33, 25, 41, 33, 34, 33, 100, 33, 34, 33, 33]


def coded_frame() -> np.ndarray:
    """A dark landscape frame with a red square in its top-left corner (as the sensor holds it)."""
    img = np.full((*CODED, 3), 40, np.uint8)
    img[4:20, 4:20] = (230, 20, 20)
    return img


def phone_clip(path: Path, rotation: int, times_ms: list[int]) -> Path:
    """An H.264 MP4 whose display matrix turns each frame ``rotation`` degrees counterclockwise
    (PyAV's convention, as ``VideoFrame.rotation`` reads it back: a phone held upright records -90),
    its frames shown at ``times_ms``."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.height, stream.width = CODED
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = MS
        stream.set_display_rotation(rotation)
        for t in times_ms:
            frame = av.VideoFrame.from_ndarray(coded_frame(), format="rgb24")
            frame.pts, frame.time_base = t, MS
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def red_corner(img: np.ndarray) -> str:
    """Which corner the red square sits in: 'top-left', 'top-right', 'bottom-left' or 'bottom-right'."""
    red = (img[..., 0] > 150) & (img[..., 1] < 90)
    ys, xs = np.nonzero(red)
    h, w = red.shape
    return f"{'top' if ys.mean() < h / 2 else 'bottom'}-{'left' if xs.mean() < w / 2 else 'right'}"


def extract(video: Path, out: Path, **frames) -> dict:
    limits = {"max_pixels": 33_177_600, "downscale": False}  # config.yaml's
    s = Settings.parse({"segment": {"frames": {"max_seconds": None, "stride": 1, "jpeg_quality": 95, **frames},
                                    "limits": limits}})  # fmt: skip
    return extract_frames(s, video, out / "frames", out / "meta.json")


REGULAR = [33 * k for k in range(6)]


# What a player shows (ffmpeg's autorotate): -90 is a clockwise quarter turn, the top-left corner goes
# to the top right; 90 counterclockwise, to the bottom left; 180, to the bottom right.
@pytest.mark.parametrize(
    ("rotation", "corner", "turned"),
    [(0, "top-left", 0), (-90, "top-right", 270), (90, "bottom-left", 90), (180, "bottom-right", 180)],
)
def test_frames_and_sizes_are_upright_as_players_show_them(tmp_path, rotation, corner, turned):
    meta = extract(phone_clip(tmp_path / "clip.mp4", rotation, REGULAR), tmp_path / "out")
    height, width = CODED if turned in (0, 180) else CODED[::-1]
    assert (meta["source"]["width"], meta["source"]["height"], meta["source"]["rotation"]) == (width, height, turned)
    assert meta["count"] == len(REGULAR)
    for name in meta["files"]:
        img = cv2.cvtColor(cv2.imread(str(tmp_path / "out/frames" / name)), cv2.COLOR_BGR2RGB)
        assert img.shape == (height, width, 3) and red_corner(img) == corner, name
    assert meta["source"]["variable_frame_rate"] is False


def test_a_variable_rate_keeps_timestamps(tmp_path):
    """max_seconds cuts by timestamp, not by index over the average rate; every stride-th frame is
    kept with its own time, and meta.json records them."""
    times_ms = [0, *np.cumsum(STEPS_MS).tolist()]
    meta = extract(phone_clip(tmp_path / "vfr.mp4", 0, times_ms), tmp_path / "out", max_seconds=0.5, stride=2)
    within = [k for k, t in enumerate(times_ms) if t < 500]
    assert list(meta["kept"]) == within[::2], (meta["kept"], times_ms)
    assert list(meta["times_s"]) == [times_ms[k] / 1000 for k in within[::2]]
    assert meta["source"]["variable_frame_rate"] is True
    # the average rate would have cut elsewhere: 0.5 s at its rate is not the frames before 0.5 s
    rate = Fraction(meta["source"]["fps_fraction"])
    assert int(np.ceil(0.5 * rate)) != len(within)


def test_a_portrait_variable_rate_clip_end_to_end(tmp_path, tiny_models):
    """A phone's portrait clip at a variable rate through the four scripts: masks and overlay upright,
    the overlay's frames at the kept frames' times."""
    times_ms = [0, *np.cumsum(STEPS_MS).tolist()]
    video = phone_clip(tmp_path / "phone.mp4", -90, times_ms)
    cfg = [a for c in DEMO_CONFIGS for a in ("--config", str(c))]
    cfg += ["--config", json.dumps({"segment": {"frames": {"max_seconds": None, "stride": 2}}})]
    d, t = tmp_path / "out", tmp_path / "out/red"
    frames = ["--frames", d / "frames", "--meta", d / "meta.json"]
    models = ["--clipseg", tiny_models["clipseg"], "--sam2", tiny_models["sam2"]]
    run_script("extract_frames", *cfg, "--video", video, *frames)
    run_script("segment_first", *cfg, *frames, "--target", "rabbit", "--out-dir", t, *models)
    run_script("propagate", *cfg, *frames, "--instances", t / "instances.json", "--masks", t / "masks",
               "--tracks", t / "tracks.json", "--rle", t / "masks.rle.json", "--sam2", tiny_models["sam2"])  # fmt: skip
    run_script("render_overlay", *cfg, *frames, "--masks", t / "masks", "--tracks", t / "tracks.json",
               "--out", t / "overlay.mp4")  # fmt: skip
    meta = json.loads((d / "meta.json").read_text())
    upright = CODED[::-1]  # portrait: 96 high, 64 wide
    assert (meta["source"]["height"], meta["source"]["width"]) == upright
    masks = sorted((t / "masks").glob("*.png"))
    assert len(masks) == meta["count"] == len(times_ms[::2])
    assert all(cv2.imread(str(m), cv2.IMREAD_UNCHANGED).shape == upright for m in masks)
    with av.open(str(t / "overlay.mp4")) as c:
        decoded = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    assert [img.shape[:2] for _, img in decoded] == [upright] * meta["count"]
    assert [round(s, 3) for s, _ in decoded] == [ms / 1000 for ms in times_ms[::2]] == list(meta["times_s"])
