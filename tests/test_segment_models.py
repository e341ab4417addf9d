"""The real transformers path with the demo's tiny random models: saved, loaded back offline, run on
real frames of the demo video through CLIPSeg, SAM2 and the propagation loop."""

import json
from fractions import Fraction

import numpy as np
import pytest
import torch
from transformers import CLIPSegForImageSegmentation, Sam2Model

from conftest import DEMO_VIDEO
from vispipe.errors import UserError
from vispipe.segment import models
from vispipe.segment.detect.clipseg import find_instances, heatmap
from vispipe.segment.files.frames import kept_frames
from vispipe.segment.refine import Sam2Refiner
from vispipe.segment.track.flow import propagate
from vispipe.segment.types import STATES

FLOW = {"scale": 0.5, "pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2}
BOUNDS = {
    "min_area_ratio": 0.5,
    "max_area_ratio": 2.0,
    "lost_area_ratio": 0.2,
    "min_sam2_score": 0.0,
    "use_object_score": False,
}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def frames():
    info, it = kept_frames(DEMO_VIDEO, max_seconds=1.0, stride=5)
    return info, [f.image for f in it]


@pytest.fixture(scope="module")
def loaded(tiny_models):
    return {kind: models.load(kind, folder, CPU) for kind, folder in tiny_models.items()}


def test_video_frames_and_info(frames):
    info, images = frames
    assert (info.width, info.height, info.fps, info.frame_count, info.codec) == (1280, 720, Fraction(25), 132, "h264")
    assert len(images) == 5  # frames 0, 5, 10, 15, 20 of the first 25
    assert all(f.shape == (720, 1280, 3) and f.dtype == np.uint8 for f in images)


def test_saved_folders_load_back_as_the_real_classes(tiny_models, loaded):
    for folder in tiny_models.values():
        source = json.loads((folder / "source.json").read_text())
        assert source["source"] == "random-tiny" and source["random_weights"] and "RANDOM WEIGHTS" in source["warning"]
        assert (folder / "model.safetensors").is_file() and (folder / "processor_config.json").is_file()
    assert isinstance(loaded["clipseg"].model, CLIPSegForImageSegmentation) and not loaded["clipseg"].model.training
    assert isinstance(loaded["sam2"].model, Sam2Model)
    sam2_cfg = loaded["sam2"].model.config
    assert sam2_cfg.vision_config.fpn_hidden_size % 64 == 0 and sam2_cfg.vision_config.fpn_hidden_size > 64
    assert loaded["clipseg"].random and models.weights_note(*loaded.values())["random"]
    tokens = loaded["clipseg"].processor.tokenizer("a white rabbit")["input_ids"]
    assert (
        tokens[0] == loaded["clipseg"].processor.tokenizer.bos_token_id and len(tokens) == len("awhiterabbit") + 2
    )  # letter by letter, plus BOS/EOS


def test_building_is_repeatable(tmp_path, tiny_models):
    models.build_random_tiny("sam2", tmp_path)
    a = (tmp_path / "model.safetensors").read_bytes()
    assert a == (tiny_models["sam2"] / "model.safetensors").read_bytes()


def test_clipseg_heatmap_on_a_real_frame(loaded, frames):
    image = frames[1][0]
    heat = heatmap(loaded["clipseg"], image, "rabbit")
    assert heat.shape == (720, 1280) and heat.dtype == np.float32
    assert 0.0 <= heat.min() < heat.max() <= 1.0
    assert not np.allclose(heat, heatmap(loaded["clipseg"], image, "a red car"))  # the prompt matters
    np.testing.assert_array_equal(heat, heatmap(loaded["clipseg"], image, "rabbit"))  # deterministic


def test_clipseg_to_sam2_instance_bookkeeping(loaded, frames):
    image = frames[1][0]
    found = find_instances(heatmap(loaded["clipseg"], image, "rabbit"), 300, 0.97, 0.0, 3)
    assert 1 <= len(found.components) <= 3
    refiner = Sam2Refiner(loaded["sam2"], n_pos=8, n_neg=8, border=5)
    out = refiner.refine(image, [c.mask for c in found.components], np.random.default_rng(0))
    assert len(out) == len(found.components)
    for r in out:
        assert r.mask.shape == (720, 1280) and r.mask.dtype == bool
        assert isinstance(r.iou_score, float) and isinstance(r.object_score, float)
    again = refiner.refine(image, [c.mask for c in found.components], np.random.default_rng(0))
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(out, again))
    assert refiner.refine(image, [], np.random.default_rng(0)) == []
    box_only = Sam2Refiner(loaded["sam2"], n_pos=0, n_neg=0, border=5).refine(
        image, [found.components[0].mask], np.random.default_rng(0)
    )
    assert box_only[0].mask.shape == (720, 1280)


def test_propagation_through_real_frames_with_sam2(loaded, frames):
    images = frames[1]
    start = {1: np.zeros((720, 1280), bool), 2: np.zeros((720, 1280), bool)}
    start[1][200:500, 300:600] = True
    start[2][50:150, 900:1100] = True
    refiner = Sam2Refiner(loaded["sam2"], n_pos=4, n_neg=4, border=5)
    results = list(propagate(images, start, refiner, FLOW, BOUNDS, seed=0))
    assert len(results) == len(images)
    for res in results:
        assert set(res.info) == {1, 2} and all(v["state"] in STATES for v in res.info.values())
        for i, m in res.masks.items():
            assert m.shape == (720, 1280) and m.dtype == bool and res.info[i]["area"] == m.sum() > 0
    assert all(v["sam2_iou"] is not None for v in results[1].info.values())


def test_missing_model_names_fetch_models(tmp_path):
    with pytest.raises(UserError, match="run the fetch_models rule"):
        models.load("sam2", tmp_path / "nowhere", CPU)


def test_hub_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    spec = {"repo": "CIDAS/clipseg-rd64-refined", "revision": "main"}
    with pytest.raises(
        UserError, match=r"could not download CIDAS/clipseg-rd64-refined@main \(segment.models.clipseg\)"
    ):
        models.download("clipseg", spec, tmp_path / "out", tmp_path / "cache")
    assert not (tmp_path / "out").exists()


def test_a_gated_repo_says_how_to_get_access(tmp_path, monkeypatch):
    """SAM 3's weights are gated: without an accepted licence and a token the Hub answers 401/403, which
    huggingface_hub raises as GatedRepoError (simulated here: the Hub is not reachable from the tests)."""
    import httpx2 as httpx  # what huggingface_hub 2 speaks HTTP with
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def gated(repo, **_):
        url = f"https://huggingface.co/api/models/{repo}/revision/main"
        response = httpx.Response(401, request=httpx.Request("GET", url))
        raise GatedRepoError(f"401 Client Error. Cannot access gated repo for url {url}.", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(UserError) as e:
        models.download("sam3", {"repo": "facebook/sam3", "revision": "main"}, tmp_path / "out", tmp_path / "cache")
    message = str(e.value)
    assert "facebook/sam3 (segment.models.sam3) is gated" in message
    assert "https://huggingface.co/facebook/sam3" in message and "HF_TOKEN" in message and "request access" in message
    assert not (tmp_path / "out").exists()


def test_a_preloaded_model_is_taken_once_and_only_while_its_folder_is_unchanged(tmp_path, tiny_models, frames):
    """What the warm worker loads before forking (models.preload) is what a step gets, with the same
    outputs as a model read from the folder; once taken, or after the folder changed, it is read again."""
    import shutil

    folder = tmp_path / "clipseg"
    shutil.copytree(tiny_models["clipseg"], folder)
    cpu = torch.device("cpu")
    from_disk = heatmap(models.load("clipseg", folder, cpu), frames[1][0], "a person")
    models.preload("clipseg", folder)
    kept = models._PRELOADED[("clipseg", str(folder.resolve()), False)][0]
    first = models.load("clipseg", folder, cpu)
    assert first.model is kept
    np.testing.assert_array_equal(heatmap(first, frames[1][0], "a person"), from_disk)
    assert models.load("clipseg", folder, cpu).model is not kept  # taken once
    models.preload("clipseg", folder)
    kept = models._PRELOADED[("clipseg", str(folder.resolve()), False)][0]
    source = folder / models.SOURCE_FILE
    source.write_text(source.read_text() + " ")  # the folder changed since it was loaded
    assert models.load("clipseg", folder, cpu).model is not kept
