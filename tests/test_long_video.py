"""Long videos (docs/segmentation.md#long-videos-memory-and-disk): propagate writes as the frames come,
the JSON writers stream what json.dumps would write, frames on disk only as long as asked, frame
folders linked, never copied. (Memory against length is a benchmark: bench/long_video.py.)"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import yaml

from conftest import copy_workflow, run_script, snakemake
from vispipe.io import Spool, dump_json, write_json, write_json_streamed
from vispipe.segment.files.tracks import TrackWriter, load
from vispipe.segment.types import FrameResult


@pytest.mark.parametrize(
    "doc",
    [{"a": 1, "b": [{"x": [1, 2.5, None, True], "y": {"z": 'w\u00e9"'}}, {"q": []}], "c": {"d": [1, {}]}, "e": []},
     {}, [], [[]], [{"data": {"video": "v"}, "predictions": [{"result": [{"sequence": [{"a": 1}, {"b": 0.1}]}]}]}]],
)  # fmt: skip
@pytest.mark.parametrize("indent", [1, 2])
def test_the_streamed_json_is_what_json_dumps_writes(doc, indent):
    """Lists given as iterators (generators, spools) come out as json.dumps writes the lists."""

    def as_iterators(node):
        if isinstance(node, dict):
            return {k: as_iterators(v) for k, v in node.items()}
        if isinstance(node, list):
            return (as_iterators(v) for v in node)
        return node

    out = io.StringIO()
    dump_json(as_iterators(doc), out, indent)
    assert out.getvalue() == json.dumps(doc, indent=indent)


def test_a_spool_keeps_its_items_on_disk_and_leaves_nothing(tmp_path):
    spool = Spool(tmp_path / "out.json")
    for i in range(3):
        spool.append({"i": i})
    assert spool.path.parent == tmp_path and spool.path.stat().st_size > 0
    assert list(spool) == [{"i": 0}, {"i": 1}, {"i": 2}] and spool.count == 3
    write_json_streamed(tmp_path / "out.json", {"items": spool})
    write_json(tmp_path / "ref.json", {"items": [{"i": 0}, {"i": 1}, {"i": 2}]})
    assert (tmp_path / "out.json").read_bytes() == (tmp_path / "ref.json").read_bytes()
    spool.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "ref.json"]


def test_propagate_writes_each_frame_before_the_next_is_made(tmp_path):
    """The tracks' lines and id PNGs of frame k are on disk when frame k + 1 is asked for: nothing
    waits in memory for the end of the video."""
    n, h, w = 6, 20, 30
    meta = {"video": "v.mp4", "source": {"width": w, "height": h}, "count": n, "kept": list(range(n)),
            "files": [f"{k:05d}.jpg" for k in range(n)]}  # fmt: skip
    masks, frames_path = tmp_path / "masks", tmp_path / "tracks.jsonl"

    def results():
        for k in range(n):
            if k:
                lines = [p for p in tmp_path.glob(".tracks.jsonl.*")]  # the file being written, not yet renamed
                assert len(lines) == 1 and len(lines[0].read_text().splitlines()) == k, k
                pngs = [p for d in tmp_path.glob(".masks.*") for p in d.glob("*.png")]
                assert len(pngs) == k, k
            mask = np.zeros((h, w), bool)
            mask[2:8, k : k + 5] = True
            yield FrameResult({1: mask}, {1: {"state": "refined", "reason": "ok"}}, [])

    writer = TrackWriter(meta, "thing")
    writer.write(results(), masks, frames_path, tmp_path / "rle.json", {"random": True})
    (tmp_path / "tracks.json").write_text(json.dumps(writer.tracks({"prompt": None}, "flow", {"random": True})))
    tracks = load(tmp_path / "tracks.json")
    assert tracks["frame_count"] == n and [f["frame"] for f in tracks["frames"]] == list(range(n))
    assert len(json.loads((tmp_path / "rle.json").read_text())["annotations"]) == n
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks", "rle.json", "tracks.json", "tracks.jsonl"]


def test_frames_are_deleted_after_their_last_consumer_when_not_kept(tmp_path):
    """segment.keep_frames: false: the video's frames are gone after the run, the outputs are there,
    and the next run has nothing to do; a frame folder is linked, never copied."""
    wf = copy_workflow(tmp_path / "wf")
    run_script("make_synthetic", "--video", wf / "clip.mp4", "--ground-truth", wf / "gt", "--frames", 6, "--height",
               64, "--width", 96, cwd=wf)  # fmt: skip
    (wf / "folder").mkdir()
    for k in range(4):
        os.link(wf / "gt" / f"{k:05d}.png", wf / "folder" / f"{k:05d}.png")
    cfg = {"segment": {"keep_frames": False, "frames": {"max_seconds": None, "stride": 1}, "images": {},
                       "propagate": {"refine": False}, "targets": {"shape": {"prompt": "shape"}},
                       "videos": {"clip": {"path": "clip.mp4", "targets": ["shape"]},
                                  "folder": {"path": "folder", "fps": 10, "targets": ["shape"]}}}}  # fmt: skip
    (wf / "temp.yaml").write_text(yaml.safe_dump(cfg))
    args = ["--configfile", "config/demo.yaml", "temp.yaml", "--", "results/segment/clip/shape/overlay.mp4",
            "results/segment/folder/shape/overlay.mp4"]  # fmt: skip
    plan = snakemake(wf, "-n", *args).stdout
    assert "temp" in plan or "extract_frames" in plan
    snakemake(wf, *args)
    for video in ("clip", "folder"):
        assert not (wf / f"results/segment/{video}/frames").exists(), video
        assert (wf / f"results/segment/{video}/shape/overlay.mp4").stat().st_size > 0
        assert json.loads((wf / f"results/segment/{video}/meta.json").read_text())["count"] in (4, 6)
    out = snakemake(wf, "-n", *args)
    assert "Nothing to be done" in out.stdout + out.stderr
    # kept (the default), the folder's frames are links to its files
    (wf / "temp.yaml").write_text(yaml.safe_dump({**cfg, "segment": {**cfg["segment"], "keep_frames": True}}))
    snakemake(wf, "--forcerun", "extract_frames", *args)
    linked = sorted(p for p in (wf / "results/segment/folder/frames").iterdir() if not p.name.startswith("."))
    assert len(linked) == 4 and all(p.is_symlink() and p.resolve().parent == (wf / "folder").resolve() for p in linked)
    # the YOLO export links its images to the frames: with keep_frames false it must copy them
    yolo = {**cfg["segment"], "export": {"formats": ["yolo"]}}
    (wf / "temp.yaml").write_text(yaml.safe_dump({**cfg, "segment": yolo}))
    refused = snakemake(wf, "-n", *args, check=False)
    assert refused.returncode != 0 and "copy_images" in refused.stdout + refused.stderr
    copied = {**yolo, "export": {"formats": ["yolo"], "yolo": {"copy_images": True}}}
    (wf / "temp.yaml").write_text(yaml.safe_dump({**cfg, "segment": copied}))
    assert snakemake(wf, "-n", *args, check=False).returncode == 0
