"""segment.detector: Grounding DINO and OWLv2 turn the text into boxes, SAM2 refines each box; the
same outputs as CLIPSeg's. Tiny random models built from config objects, loaded back through
from_pretrained; one check with hand-made model outputs pins where the boxes land in the image."""

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from conftest import DEMO_CONFIGS, ROOT, run_script
from vispipe.config import ConfigError, deep_merge, load
from vispipe.provenance import config_sha256
from vispipe.segment import models
from vispipe.segment.detect import grounding_dino, owlv2
from vispipe.segment.detect.clipseg import heatmap
from vispipe.segment.files.tracks import load as load_tracks
from vispipe.segment.layout import image_blocks, model_dirs, propagate_blocks
from vispipe.segment.types import Loaded

DETECT = {"grounding_dino": grounding_dino, "owlv2": owlv2}

FRAME = ROOT / "resources/demo/bigbuckbunny_frame.jpg"
PHRASES = ["a white rabbit", "a tree"]


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    """Tiny random Grounding DINO, OWLv2 and SAM 3, fetched as the demo's models are: {kind: folder}."""
    root = tmp_path_factory.mktemp("detectors")
    dirs = {kind: root / kind for kind in ("grounding_dino", "owlv2", "sam3")}
    models.fetch({"source": "random-tiny", "dir": str(root)}, dirs)
    return dirs


@pytest.fixture(scope="module")
def image():
    return cv2.cvtColor(cv2.imread(str(FRAME)), cv2.COLOR_BGR2RGB)


def test_the_tiny_detectors_load_back_through_from_pretrained(detectors):
    from transformers import GroundingDinoForObjectDetection, Owlv2ForObjectDetection

    want = {"grounding_dino": GroundingDinoForObjectDetection, "owlv2": Owlv2ForObjectDetection}
    for kind, folder in {k: detectors[k] for k in want}.items():
        loaded = models.load(kind, folder, torch.device("cpu"))
        assert isinstance(loaded.model, want[kind]) and not loaded.model.training and loaded.random
        assert json.loads((folder / "source.json").read_text())["params"] < 2_000_000


@pytest.mark.parametrize("kind", ["grounding_dino", "owlv2"])
def test_boxes_are_in_the_image_and_best_first(detectors, image, kind):
    loaded = models.load(kind, detectors[kind], torch.device("cpu"))
    knobs = {"box_threshold": 0.0, "text_threshold": 0.0, "score_threshold": 0.0, "nms_iou": 0.5, "max_instances": 6}
    found = DETECT[kind].boxes(loaded, image, PHRASES, knobs)
    assert 1 <= len(found) <= 6  # a threshold of 0 keeps every box: NMS and max_instances cut them
    h, w = image.shape[:2]
    for b in found:
        x0, y0, x1, y1 = b.xyxy
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and 0 <= b.score <= 1 and b.phrase
    scores = [b.score for b in found]
    assert scores == sorted(scores, reverse=True)
    assert {b.phrase for b in found} <= set(PHRASES)  # each box named by a configured phrase
    # the threshold is honoured: nothing at all above a score of 1
    strict = dict(knobs, box_threshold=1.0, score_threshold=1.0)
    assert DETECT[kind].boxes(loaded, image, PHRASES, strict) == []


class _Fixed(torch.nn.Module):
    """A model whose answer is given: boxes (centre x, y, width, height, relative) and their logits
    against each phrase."""

    def __init__(self, boxes, logits):
        super().__init__()
        self.boxes, self.logits = torch.tensor([boxes]), torch.tensor([logits])

    def forward(self, **inputs):
        return SimpleNamespace(logits=self.logits, pred_boxes=self.boxes)


def _owlv2_answering(detectors, boxes, logits) -> Loaded:
    real = models.load("owlv2", detectors["owlv2"], torch.device("cpu"))
    return Loaded(_Fixed(boxes, logits), real.processor, real.source, real.device)


def test_owlv2_boxes_are_scaled_to_its_padded_square(detectors):
    """OWLv2 pads the image to a square (bottom and right) before resizing: its relative boxes are
    fractions of the longer side on both axes. On a 640x360 frame, a box centred at (0.5, 0.25) with
    size (0.2, 0.1) is (256, 128)-(384, 192); scaling y by the height instead would put it at y 72-108."""
    fixed = _owlv2_answering(detectors, [[0.5, 0.25, 0.2, 0.1], [0.5, 0.5, 0.01, 0.01]], [[9.0, -9.0], [-9.0, -9.0]])
    found = owlv2.boxes(fixed, np.zeros((360, 640, 3), np.uint8), ["a rabbit", "a tree"],
                        {"score_threshold": 0.5, "nms_iou": 0.5, "max_instances": 5})  # fmt: skip
    assert [(b.xyxy, b.phrase) for b in found] == [([256.0, 128.0, 384.0, 192.0], "a rabbit")]


def test_one_object_matched_by_two_phrases_is_one_instance(detectors):
    """Class-agnostic NMS: two nearly equal boxes (one per phrase) keep the better; a box elsewhere
    stays; then max_instances cuts, best first."""
    found_boxes = [[0.3, 0.3, 0.2, 0.2], [0.31, 0.3, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]
    logits = [[2.0, -9.0], [-9.0, 3.0], [1.0, -9.0]]
    fixed = _owlv2_answering(detectors, found_boxes, logits)
    image, knobs = np.zeros((100, 100, 3), np.uint8), {"score_threshold": 0.5, "nms_iou": 0.5, "max_instances": 5}
    found = owlv2.boxes(fixed, image, ["a rabbit", "a tree"], knobs)
    assert [b.phrase for b in found] == ["a tree", "a rabbit"] and found[1].xyxy == [75.0, 75.0, 85.0, 85.0]
    assert len(owlv2.boxes(fixed, image, ["a rabbit", "a tree"], dict(knobs, nms_iou=1.0))) == 3  # 1 keeps all
    assert [b.phrase for b in owlv2.boxes(fixed, image, ["a rabbit", "a tree"], dict(knobs, max_instances=1))] == [
        "a tree"
    ]


def test_a_grounding_dino_label_names_the_phrase_it_shares_most_words_with():
    """Its tokens above text_threshold may span two phrases, be partial, or be none."""
    phrases = ["a tree", "a white rabbit"]
    assert grounding_dino.matched_phrase("white rabbit. a", phrases) == "a white rabbit"
    assert grounding_dino.matched_phrase("tree", phrases) == "a tree"
    assert grounding_dino.matched_phrase("", phrases) == "a tree"  # nothing to go by: the first


def test_clipseg_with_several_phrases_takes_their_pixelwise_maximum(tiny_models, image):
    clipseg = models.load("clipseg", tiny_models["clipseg"], torch.device("cpu"))
    one, two = heatmap(clipseg, image, PHRASES[0]), heatmap(clipseg, image, PHRASES[1])
    assert not np.allclose(one, two)
    np.testing.assert_allclose(heatmap(clipseg, image, PHRASES), np.maximum(one, two), atol=1e-5)


def _override(kind: str, **extra) -> dict:
    return {"segment": {"detector": kind, "targets": {"both": {"prompt": PHRASES}}, **extra}}


def _cfg(kind: str, **extra) -> str:
    return json.dumps(_override(kind, **extra))


@pytest.mark.parametrize("kind", ["grounding_dino", "owlv2", "sam3"])
def test_segment_image_with_another_detector_writes_the_same_outputs(detectors, tiny_models, tmp_path, kind):
    """The script, as its rule runs it: instances.json names the detector, each instance its box, score
    and phrase; SAM2 refined every box (SAM 3: its own masks, as configured); the pictures are those
    CLIPSeg's run writes."""
    args = [a for c in DEMO_CONFIGS for a in ("--config", str(c))]
    thresholds = {"box_threshold": 0.0, "text_threshold": 0.0} if kind == "grounding_dino" else {"score_threshold": 0.0}
    if kind == "sam3":
        thresholds.update(mask_threshold=0.5, refine=False)
    loose = {kind: {**thresholds, "nms_iou": 0.5, "max_instances": 3}}
    out = tmp_path / "out"
    run_script("segment_image", *args, "--config", _cfg(kind, **loose), "--image", FRAME, "--target", "both",
               "--detector", detectors[kind], "--sam2", tiny_models["sam2"], "--out-dir", out, "--log", tmp_path / "log")  # fmt: skip
    doc = json.loads((out / "instances.json").read_text())
    assert doc["detector"] == kind and doc["prompt"] == PHRASES and 1 <= doc["found"] <= 3
    assert doc["threshold"]["value"] == 0.0 and doc["weights"]["random"]
    for inst in doc["instances"]:
        assert {"detector_score", "detector_box", "phrase", "sam2_iou", "segmentation"} <= set(inst)
        assert inst["mask_from"] in ("sam2", kind) and inst["area"] > 0
        assert (
            (inst["mask_from"] == "sam3" and inst["sam2_iou"] is None)
            if kind == "sam3"
            else inst["sam2_iou"] is not None
        )
    assert sorted(p.name for p in out.iterdir()) == ["heatmap.png", "instances.json", "mask.png", "overlay.png"]
    # the run hashes the blocks its rule passes: the detector's, not CLIPSeg's (spelled out here, not
    # taken from layout.image_blocks, which computes them for the rule and the script alike)
    cfg = deep_merge(load(DEMO_CONFIGS), _override(kind, **loose))
    blocks = ("segment.targets.both", "segment.detector", f"segment.{kind}", "segment.sam2", "segment.overlay",
              "segment.limits.max_pixels", "segment.limits.downscale", "segment.seed", "segment.device")  # fmt: skip
    assert doc["provenance"]["config_sha256"] == config_sha256(cfg, blocks)
    assert config_sha256(cfg, blocks) != config_sha256(cfg, image_blocks("both", "clipseg"))


def test_re_detection_uses_the_configured_detector(detectors, tiny_models, tmp_path):
    """propagate with segment.redetect.every 2 and OWLv2: the detector runs on frames 2 and 4, and its
    instances enter the tracks exactly as CLIPSeg's do."""
    from vispipe.segment.evaluation.synthetic import make_clip, save_clip

    clip = tmp_path / "clip.mp4"
    save_clip(make_clip(n_frames=5, size=(120, 160)), clip, tmp_path / "gt")
    args = [a for c in DEMO_CONFIGS for a in ("--config", str(c))]
    owl = {"score_threshold": 0.0, "nms_iou": 0.5, "max_instances": 2}
    cfg = _cfg(
        "owlv2",
        owlv2=owl,
        redetect={"every": 2, "match_iou": 0.5, "min_similarity": 0.8},
        frames={"max_seconds": None, "stride": 1},
    )  # all 5 frames
    d = tmp_path / "v"
    run_script("extract_frames", *args, "--config", cfg, "--video", clip, "--frames", d / "frames", "--meta", d / "meta.json")  # fmt: skip
    models_args = ["--detector", detectors["owlv2"], "--sam2", tiny_models["sam2"]]
    run_script("segment_first", *args, "--config", cfg, "--frames", d / "frames", "--meta", d / "meta.json",
               "--target", "both", "--out-dir", d / "t", *models_args)  # fmt: skip
    run_script("propagate", *args, "--config", cfg, "--frames", d / "frames", "--meta", d / "meta.json",
               "--instances", d / "t/instances.json", "--masks", d / "t/masks", "--tracks", d / "t/tracks.json",
               "--rle", d / "t/rle.json", *models_args, "--log", tmp_path / "log")  # fmt: skip
    assert f"re-detecting {PHRASES!r} every 2 kept frames (owlv2)" in (tmp_path / "log").read_text()
    tracks = load_tracks(d / "t/tracks.json")
    assert "re-detection" in tracks["stage_times"]["stage_seconds"]  # the detector ran, and was timed
    # frames 2 and 4 say what re-detection did to each instance; the frames between say nothing of it
    redetected = {"re-detected", "revived", "born", "not re-detected"}
    reasons = [{v["reason"] for v in f["instances"].values()} for f in tracks["frames"]]
    assert all(reasons[k] & redetected for k in (2, 4)) and not any(reasons[k] & redetected for k in (1, 3)), reasons
    cfg = deep_merge(load(DEMO_CONFIGS), json.loads(cfg))
    want = config_sha256(cfg, propagate_blocks("both", True, "flow", "owlv2"))
    assert tracks["provenance"]["config_sha256"] == want


def test_an_unknown_detector_and_a_missing_repo_are_config_errors(tmp_path):
    from vispipe.config import validate

    with pytest.raises(ConfigError, match="segment.detector"):
        validate(dict(load(DEMO_CONFIGS)["segment"], detector="yolo"), "segment")
    with pytest.raises(ConfigError, match=r"segment\.models\.owlv2 is missing.*google/owlv2-base-patch16-ensemble"):
        model_dirs({"source": "hub", "dir": "m", "sam2": {"repo": "a/b", "revision": "main"}}, ("owlv2", "sam2"))


def test_each_detector_and_tracker_runs_through_snakemake_on_the_demo(tmp_path):
    """Grounding DINO with EdgeTAM's tracker, then SAM2's, on the demo video up to its tracks and on the
    still image, then OWLv2 on both, then SAM 3 as detector and tracker on both, each chosen by one key:
    fetch_models builds the chosen detector, fetch_tracker the tracker's model; the unused detector's
    block is not read (editing it reruns nothing), the chosen one's is (editing it reruns detection and
    what follows); switching the tracker fetches its model alone and reruns propagate only."""
    from conftest import assert_nothing_to_do, copy_workflow, job_counts, snakemake

    wf = copy_workflow(tmp_path / "wf")
    video = "results/segment/bigbuckbunny/rabbit"
    image = "results/segment/images/bigbuckbunny_frame/rabbit/instances.json"
    configs = ["--configfile", "config/demo.yaml", "det.yaml"]

    def choose(kind, method="edgetam_video"):  # the demo video's first second (13 kept frames), to keep it short
        seg = {"detector": kind, "propagate": {"method": method}, "frames": {"max_seconds": 1}}
        (wf / "det.yaml").write_text(json.dumps({"segment": seg}))

    def edit(kind, *targets):
        (wf / "edit.yaml").write_text(json.dumps({"segment": {kind: {"nms_iou": 0.9}}}))
        return snakemake(wf, "-n", *configs, "edit.yaml", "--", *targets)

    choose("grounding_dino")
    snakemake(wf, *configs, "--", f"{video}/tracks.json", image)
    for path in (f"{video}/instances.json", image):
        doc = json.loads((wf / path).read_text())
        assert doc["detector"] == "grounding_dino" and doc["weights"]["models"][0] == "random-tiny"
    tracks = load_tracks(wf / video / "tracks.json")
    first = json.loads((wf / video / "instances.json").read_text())["instances"]
    assert tracks["frames"] and set(tracks["instances"]) == {i["id"] for i in first}
    assert tracks["method"] == "edgetam_video" and "edgetam image encoder" in tracks["stage_times"]["stage_seconds"]
    assert_nothing_to_do(edit("owlv2", f"{video}/tracks.json", image))
    counts = job_counts(edit("grounding_dino", f"{video}/tracks.json", image).stdout)
    assert counts == {"segment_first": 1, "propagate": 1, "segment_image": 1}, counts
    (wf / "sam3.yaml").write_text(json.dumps({"segment": {"propagate": {"method": "sam3_video"}}}))
    counts = job_counts(snakemake(wf, "-n", *configs, "sam3.yaml", "--", f"{video}/tracks.json").stdout)
    assert counts == {"fetch_tracker": 1, "propagate": 1}, counts  # another tracker: its model, and propagate
    (wf / "sam2.yaml").write_text(json.dumps({"segment": {"propagate": {"method": "sam2_video"}}}))
    snakemake(wf, *configs, "sam2.yaml", "--", f"{video}/tracks.json")  # SAM2's tracker, all models at hand
    assert json.loads((wf / video / "tracks.json").read_text())["method"] == "sam2_video"

    choose("owlv2")
    snakemake(wf, *configs, "--", image, f"{video}/instances.json")  # the video's first frame too
    assert all(json.loads((wf / p).read_text())["detector"] == "owlv2" for p in (image, f"{video}/instances.json"))
    assert_nothing_to_do(edit("grounding_dino", image))

    choose("sam3", "sam3_video")  # one model, one folder: detector and tracker
    snakemake(wf, *configs, "--", f"{video}/overlay.mp4", image)
    doc, tracks = json.loads((wf / image).read_text()), load_tracks(wf / video / "tracks.json")
    assert doc["detector"] == "sam3" and all(i["mask_from"] == "sam3" for i in doc["instances"])
    assert tracks["method"] == "sam3_video" and len(tracks["frames"]) == 13 and tracks["events"]
    models = sorted(p.name for p in (wf / "resources/models").iterdir() if not p.name.startswith("."))
    assert models == [f"random-tiny--{m}" for m in ("edgetam", "grounding_dino", "owlv2", "sam2", "sam3")]
