"""Folders of frames as videos (the DAVIS / YouTube-VOS layout): kept frames copied byte for byte at
the entry's fps, in number order; gaps, mixed sizes or formats and unreadable frames are errors that
name the folder and write nothing; a sheet's fps column reaches extract_frames through the rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import snakemake
from vispipe.errors import UserError
from vispipe.segment.evaluation.synthetic import make_clip
from vispipe.segment.settings import Settings
from vispipe.segment.steps.frames import extract_frames

FRAMES = {"max_seconds": None, "stride": 1, "jpeg_quality": 95}
LIMITS = {"max_pixels": 33_177_600, "downscale": False}  # config.yaml's


def folder(root: Path, n: int = 10, suffix: str = ".jpg", name=lambda k: f"{k:05d}", size=(48, 64)) -> Path:
    """``n`` frames of a synthetic clip written as ``root/<name(k)><suffix>``."""
    root.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(make_clip(n, size, seed=1).frames):
        Image.fromarray(frame).save(root / f"{name(k)}{suffix}")
    return root


def extract(src: Path, out: Path, fps: float | None = None, **frames) -> dict:
    s = Settings.parse({"segment": {"frames": {**FRAMES, **frames}, "limits": LIMITS}})
    return extract_frames(s, src, out / "frames", out / "meta.json", fps)


def test_kept_frames_are_copied_as_they_are_at_the_entrys_fps(tmp_path):
    src = folder(tmp_path / "JPEGImages/seq")
    meta = extract(src, tmp_path / "out", fps=6, max_seconds=1.0, stride=3)  # 6 frames in 1 s, every 3rd
    assert list(meta["kept"]) == [0, 3] and meta["files"] == ["00000.jpg", "00001.jpg"]
    assert (meta["source"]["fps"], meta["output_fps"], meta["source"]["frame_count"]) == (6.0, "2", 10)
    assert (meta["source"]["width"], meta["source"]["height"], meta["source"]["frame_folder"]) == (64, 48, True)
    for k, index in enumerate(meta["kept"]):  # byte for byte: not decoded and re-encoded
        assert (tmp_path / "out/frames" / meta["files"][k]).read_bytes() == (src / f"{index:05d}.jpg").read_bytes()
    written = json.loads((tmp_path / "out/meta.json").read_text())
    assert written == {**meta, "kept": list(meta["kept"]), "times_s": list(meta["times_s"])}


def test_the_default_rate_is_davis_and_numbers_sort_as_numbers(tmp_path):
    src = folder(tmp_path / "seq", n=12, suffix=".png", name=str)  # 0.png ... 11.png: by name, 10 < 2
    meta = extract(src, tmp_path / "out", stride=5)
    assert meta["source"]["fps"] == 24.0 and list(meta["kept"]) == [0, 5, 10]
    assert meta["files"] == ["00000.png", "00001.png", "00002.png"]
    assert (tmp_path / "out/frames/00002.png").read_bytes() == (src / "10.png").read_bytes()


def _gap(src: Path) -> None:
    (src / "00003.jpg").unlink()


def _resize(src: Path) -> None:
    Image.new("RGB", (30, 20)).save(src / "00004.jpg")


def _mixed(src: Path) -> None:
    (src / "00004.jpg").rename(src / "00004.png")


def _garbage(src: Path) -> None:
    (src / "00002.jpg").write_bytes(b"not a jpeg")


def _empty(src: Path) -> None:
    shutil.rmtree(src)
    src.mkdir()


BAD = {
    "gap": (_gap, r"seq: frame 3 is missing \(00002.jpg, then 00004.jpg\); a frame folder is gapless"),
    "sizes": (_resize, r"00004.jpg is 30x20, 00000.jpg 64x48: the frames of a folder share one size"),
    "formats": (_mixed, r"seq mixes frame formats \(.jpg, .png\)"),
    "unreadable": (_garbage, r"cannot read frame .*00002.jpg"),
    "empty": (_empty, r"seq holds no frame"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_folder_is_an_error_naming_it_and_writes_nothing(tmp_path, case):
    src = folder(tmp_path / "seq")
    spoil, message = BAD[case]
    spoil(src)
    with pytest.raises(UserError, match=message):
        extract(src, tmp_path / "out")
    out = tmp_path / "out"
    leftovers = list(out.rglob("*")) if out.exists() else []
    assert leftovers == [], leftovers  # no frames folder, no meta.json, no temporary folder


def test_a_sheet_row_with_a_folder_and_its_fps_through_the_rule(workflow_dir):
    wf = workflow_dir
    folder(wf / "davis/JPEGImages/seq", n=8)
    (wf / "videos.tsv").write_text("id\tpath\ttargets\tfps\nseq\tdavis/JPEGImages/seq\trabbit\t4\n")
    (wf / "sheet.yaml").write_text(yaml.safe_dump({"segment": {"samples": {"videos": "videos.tsv"},
                                                               "frames": {"max_seconds": 1.0, "stride": 2}}}))  # fmt: skip
    snakemake(wf, "--configfile", "config/demo.yaml", "sheet.yaml", "--", "results/segment/seq/meta.json")
    meta = json.loads((wf / "results/segment/seq/meta.json").read_text())
    assert (meta["source"]["fps"], list(meta["kept"]), meta["output_fps"]) == (4.0, [0, 2], "2")
