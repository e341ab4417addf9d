"""Prompts beyond text: a first-frame mask (DAVIS palette PNG), boxes or points, from a file named in
the config or a sample sheet. CLIPSeg is skipped (the tests give it a folder that does not exist);
a mask is taken as it is, SAM2 draws the boxes' and points' masks; both propagators carry the
instances; bad files are errors naming the file, the instance and the fix, and write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import DEMO_CONFIGS, job_counts, run_script, snakemake
from vispipe.config import ConfigError
from vispipe.errors import UserError
from vispipe.segment.evaluation.synthetic import make_clip, write_palette_png
from vispipe.segment.files.masks import decode_rle
from vispipe.segment.files.prompts import read_prompts
from vispipe.segment.files.tracks import load as load_tracks
from vispipe.segment.layout import check_target_keys
from vispipe.segment.samples import with_samples

H, W = 96, 128


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A synthetic clip's kept frames (a frame folder through extract_frames) and its exact masks."""
    root = tmp_path_factory.mktemp("clip")
    c = make_clip(8, (H, W), seed=3)
    src = root / "JPEGImages/seq"
    src.mkdir(parents=True)
    for k, frame in enumerate(c.frames):
        Image.fromarray(frame).save(src / f"{k:05d}.png")
    run_script("extract_frames", *cfg(), "--video", src, "--frames", root / "frames", "--meta", root / "meta.json")
    return root, c


def cfg(extra: dict | None = None) -> list[str]:
    args = [a for c in DEMO_CONFIGS for a in ("--config", str(c))]
    textless = {"segment": {"targets": {"thing": {"prompt": None}}, "frames": {"max_seconds": None, "stride": 1}}}
    args += ["--config", json.dumps(textless)]
    return args + (["--config", json.dumps(extra)] if extra else [])


def first(root: Path, prompt: Path, out: Path, sam2: Path, target: str = "thing", check: bool = True):
    return run_script("segment_first", *cfg(), "--frames", root / "frames", "--meta", root / "meta.json",
                      "--target", target, "--prompt", prompt, "--out-dir", out, "--clipseg", root / "no-clipseg",
                      "--sam2", sam2, check=check)  # fmt: skip


def test_a_palette_mask_gives_its_objects_as_they_are(clip, tiny_models, tmp_path):
    root, c = clip
    ids = c.masks[0].copy()
    ids[ids == 2] = 4  # ids are the file's own, not renumbered
    assert set(np.unique(ids)) == {0, 1, 4}
    write_palette_png(tmp_path / "first.png", ids)
    first(root, tmp_path / "first.png", tmp_path / "out", tiny_models["sam2"])
    doc = json.loads((tmp_path / "out/instances.json").read_text())
    assert doc["prompt"] is None and doc["prompt_file"].endswith("first.png")
    present = [int(i) for i in np.unique(ids) if i]
    assert [inst["id"] for inst in doc["instances"]] == present
    for inst in doc["instances"]:
        assert inst["mask_from"] == "prompt" and inst["prompted_by"] == "mask"
        assert np.array_equal(decode_rle(inst["segmentation"]), ids == inst["id"])
    assert (tmp_path / "out/first/heatmap.png").is_file() and (tmp_path / "out/first/mask.png").is_file()


def test_boxes_and_points_go_to_sam2(clip, tiny_models, tmp_path):
    root, _ = clip
    prompts = {"instances": [{"box": [10, 10, 60, 50]}, {"points": [[90, 40], [20, 80]], "labels": [1, 0]},
                             {"box": [70, 20, 120, 90], "points": [[95, 55]], "labels": [1]}]}  # fmt: skip
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    first(root, tmp_path / "p.json", tmp_path / "out", tiny_models["sam2"])
    doc = json.loads((tmp_path / "out/instances.json").read_text())
    got = {inst["id"]: inst for inst in doc["instances"]}
    assert set(got) <= {1, 2, 3} and got, doc  # the random tiny SAM2 may draw an empty mask: then it is dropped
    kinds = {1: "box", 2: "points", 3: "box+points"}
    for i, inst in got.items():
        assert inst["prompted_by"] == kinds[i] and inst["mask_from"] == "sam2" and "sam2_iou" in inst
        assert ("prompt_box" in inst) == (i != 2) and ("prompt_points" in inst) == (i != 1)
    assert doc["weights"]["random"] is True  # the random SAM2 drew them, and says so


@pytest.mark.parametrize("method", ["flow", "sam2_video"])
def test_both_propagators_carry_prompted_instances(clip, tiny_models, tmp_path, method):
    root, c = clip
    write_palette_png(tmp_path / "first.png", c.masks[0])
    first(root, tmp_path / "first.png", tmp_path / "out", tiny_models["sam2"])
    t = tmp_path / "out"
    extra = {"segment": {"propagate": {"method": method}, "redetect": {"every": 3}}}
    proc = run_script("propagate", *cfg(extra), "--frames", root / "frames", "--meta", root / "meta.json",
                      "--instances", t / "instances.json", "--masks", t / "masks", "--tracks", t / "tracks.json",
                      "--rle", t / "masks.rle.json", "--sam2", tiny_models["sam2"], "--clipseg", root / "no-clipseg")  # fmt: skip
    tracks = load_tracks(t / "tracks.json")
    assert tracks["instances"] == [int(i) for i in np.unique(c.masks[0]) if i] and len(tracks["frames"]) == 8
    assert "re-detection needs text" in proc.stderr  # no text: re-detection is off, and the log says so
    assert all(e["frame"] == 0 for e in tracks["events"] if e["event"] == "born")  # no id born by re-detection


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"instances": [{"box": [10, 10, 200, 50]}]},
            "instance 1: box [10, 10, 200, 50] lies outside the first kept frame (128x96",
        ),
        (
            {"instances": [{"box": [10, 10, 60, 50]}, {"points": [[130, 5]]}]},
            "instance 2: point [130.0, 5.0] lies outside",
        ),
        ({"instances": [{"points": [[5, 5], [6, 6]], "labels": [1]}]}, "labels must hold one 1"),
        ({"instances": [{"points": [[5, 5]], "labels": [0]}]}, "need at least one positive point"),
        ({"instances": [{"mask": "x.png"}]}, 'give "box"'),
        ({"boxes": []}, '{"instances": ['),
    ],
)
def test_a_bad_prompt_file_names_it_and_the_instance(tmp_path, content, message):
    (tmp_path / "p.json").write_text(json.dumps(content))
    with pytest.raises(UserError, match="p.json") as err:
        read_prompts(tmp_path / "p.json", W, H)
    assert message in str(err.value)


def test_a_mask_of_another_size_or_kind_is_an_error(tmp_path):
    write_palette_png(tmp_path / "small.png", np.ones((H // 2, W // 2), np.uint8))
    with pytest.raises(UserError, match=r"small.png is 64x48 but the video's first kept frame is 128x96"):
        read_prompts(tmp_path / "small.png", W, H)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(UserError, match="rgb.png is a RGB image; give a palette"):
        read_prompts(tmp_path / "rgb.png", W, H)
    write_palette_png(tmp_path / "empty.png", np.zeros((H, W), np.uint8))
    with pytest.raises(UserError, match="holds no object"):
        read_prompts(tmp_path / "empty.png", W, H)


def test_the_script_writes_nothing_for_a_bad_prompt(clip, tiny_models, tmp_path):
    root, _ = clip
    write_palette_png(tmp_path / "small.png", np.ones((10, 10), np.uint8))
    proc = first(root, tmp_path / "small.png", tmp_path / "out", tiny_models["sam2"], check=False)
    assert proc.returncode == 2 and "small.png is 10x10" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def _seg(**videos) -> dict:
    return {"targets": {"rabbit": {"prompt": "rabbit"}, "thing": {"prompt": None}}, "videos": videos,
            "images": {}, "samples": {"videos": None, "images": None}, "globs": {"videos": [], "images": []}}  # fmt: skip


def test_config_checks_of_prompt_files():
    check_target_keys(_seg(v={"path": "a.mp4", "targets": ["thing"], "prompts": {"thing": "m.png"}}))
    with pytest.raises(ConfigError, match="target 'thing' has no text prompt .* and no prompt file here"):
        check_target_keys(_seg(v={"path": "a.mp4", "targets": ["thing"]}))
    with pytest.raises(ConfigError, match="a prompt file for 'thing', which its targets \\(rabbit\\) do not list"):
        check_target_keys(_seg(v={"path": "a.mp4", "targets": ["rabbit"], "prompts": {"thing": "m.png"}}))
    seg = _seg()
    seg["images"] = {"still": {"path": "a.jpg", "targets": ["thing"]}}
    with pytest.raises(ConfigError, match="stills are segmented from text"):
        check_target_keys(seg)


def test_a_sheets_prompts_column(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a.mp4", "b.mp4", "a.png", "b.json"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "v.tsv").write_text("id\tpath\ttargets\tprompts\nva\ta.mp4\tthing\ta.png\n"
                                    "vb\tb.mp4\trabbit,thing\tthing=b.json\nvc\tb.mp4\trabbit\t\n")  # fmt: skip
    seg = _seg()
    seg["samples"]["videos"] = "v.tsv"
    videos = with_samples(seg)["videos"]
    assert videos["va"]["prompts"] == {"thing": "a.png"} and videos["vb"]["prompts"] == {"thing": "b.json"}
    assert "prompts" not in videos["vc"]
    (tmp_path / "v.tsv").write_text("id\tpath\ttargets\tprompts\nva\ta.mp4\trabbit\tthing=a.png\n")
    with pytest.raises(ConfigError, match=r"v.tsv, line 2, column prompts: a prompt file for 'thing'"):
        with_samples(seg)


def test_editing_a_prompt_file_reruns_that_video_alone(workflow_dir):
    """A video prompted by a mask beside the demo's text-prompted one: the dry run plans segment_first
    with the file as input; editing the file replans that video's first frame and not the other's."""
    wf = workflow_dir
    clip = make_clip(4, (H, W), seed=3)
    (wf / "seq").mkdir()
    for k, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(wf / "seq" / f"{k:05d}.png")
    write_palette_png(wf / "first.png", clip.masks[0])
    extra = {"segment": {"targets": {"thing": {"prompt": None}},
                         "videos": {"seq": {"path": "seq", "targets": ["thing"], "prompts": {"thing": "first.png"}}}}}  # fmt: skip
    (wf / "p.yaml").write_text(yaml.safe_dump(extra))
    args = ["--configfile", "config/demo.yaml", "p.yaml", "--"]
    targets = ["results/segment/seq/thing/instances.json", "results/segment/bigbuckbunny/rabbit/instances.json"]
    plan = snakemake(wf, "-n", *args, *targets).stdout
    assert job_counts(plan)["segment_first"] == 2 and "first.png" in plan
    snakemake(wf, *args, targets[0])
    doc = json.loads((wf / targets[0]).read_text())
    assert [i["mask_from"] for i in doc["instances"]] == ["prompt"] * len(doc["instances"]) and doc["instances"]
    edited = clip.masks[0].copy()
    edited[edited == 2] = 0  # one object fewer (touching the file is no edit: Snakemake compares checksums)
    write_palette_png(wf / "first.png", edited)
    replanned = snakemake(wf, "-n", *args, targets[0]).stdout
    assert job_counts(replanned) == {"segment_first": 1}, replanned[-2000:]


def test_sam2_receives_each_instances_own_box_and_points(tiny_models):
    """Each prompt reaches SAM2's processor as given (one call per instance: they differ in kind)."""
    import torch

    from vispipe.segment import models
    from vispipe.segment.files.prompts import Prompt
    from vispipe.segment.refine import Sam2Refiner

    sam2 = models.load("sam2", tiny_models["sam2"], torch.device("cpu"))
    calls = []
    processor = sam2.processor

    class Recording:
        def __call__(self, **kwargs):
            calls.append({k: v for k, v in kwargs.items() if k.startswith("input_")})
            return processor(**kwargs)

        def __getattr__(self, name):
            return getattr(processor, name)

    sam2.processor = Recording()
    prompts = [Prompt(1, box=[10.0, 10.0, 60.0, 50.0]), Prompt(2, points=[[90.0, 40.0], [20.0, 80.0]], labels=[1, 0])]
    out = Sam2Refiner(sam2, 2, 2, 5).prompted(np.zeros((H, W, 3), np.uint8), prompts)
    assert len(out) == 2 and all(r.mask.shape == (H, W) for r in out)
    assert calls == [
        {"input_boxes": [[[10.0, 10.0, 60.0, 50.0]]]},
        {"input_points": [[[[90.0, 40.0], [20.0, 80.0]]]], "input_labels": [[[1, 0]]]},
    ]
