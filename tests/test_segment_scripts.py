"""Each segmentation script as a subprocess: help, the happy path on the demo video, bad input."""

import json

import av
import cv2
import numpy as np
import pytest

from conftest import DEMO_CONFIGS, DEMO_VIDEO, ROOT, assert_overlay_shows_masks, run_script
from vispipe.config import load
from vispipe.segment.files.tracks import load as load_tracks

SCRIPTS = ["fetch_models", "extract_frames", "segment_first", "propagate", "render_overlay", "segment_image",
           "evaluate_segmentation", "make_synthetic", "export_annotations", "davis_table"]  # fmt: skip
SHORT = {"segment": {"frames": {"max_seconds": 1.0, "stride": 5}}}  # 5 frames: 0, 5, 10, 15, 20


def cfg_args(override: dict | None = None) -> list[str]:
    args = [a for c in DEMO_CONFIGS for a in ("--config", str(c))]
    return args + ["--config", json.dumps(override)] if override else args


def assert_nothing_left(folder):
    """After a failure: no output, no temporary file."""
    leftovers = [p.name for p in folder.rglob("*")] if folder.exists() else []
    assert leftovers == [], leftovers


def failed(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """fetch_models, extract_frames, segment_first, propagate and render_overlay, once, on 5 demo frames."""
    d = tmp_path_factory.mktemp("seg")
    m = {"clipseg": d / "models/clipseg", "sam2": d / "models/sam2"}
    run_script("fetch_models", *cfg_args(), "--clipseg", m["clipseg"], "--sam2", m["sam2"], "--log", d / "fetch.log")
    run_script(
        "extract_frames", *cfg_args(SHORT), "--video", DEMO_VIDEO, "--frames", d / "frames", "--meta", d / "meta.json"
    )
    models = ["--clipseg", m["clipseg"], "--sam2", m["sam2"]]
    t = d / "rabbit"
    run_script("segment_first", *cfg_args(), "--frames", d / "frames", "--meta", d / "meta.json", "--target", "rabbit",
               "--out-dir", t, *models, "--log", d / "first.log")  # fmt: skip
    run_script("propagate", *cfg_args(), "--frames", d / "frames", "--meta", d / "meta.json", "--instances", t / "instances.json",
               "--masks", t / "masks", "--tracks", t / "tracks.json", "--rle", t / "masks.rle.json", "--sam2", m["sam2"])  # fmt: skip
    run_script("render_overlay", *cfg_args(), "--frames", d / "frames", "--meta", d / "meta.json", "--masks", t / "masks",
               "--tracks", t / "tracks.json", "--out", t / "overlay.mp4", "--first", t / "first/overlay.png")  # fmt: skip
    return d, m


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name):
    proc = run_script(name, "-h")
    reads_config = name not in ("evaluate_segmentation", "make_synthetic", "davis_table")  # these read no config key
    assert "usage:" in proc.stdout and ("--config" in proc.stdout) == reads_config and "--log" in proc.stdout


def test_fetch_models_builds_random_tiny_and_says_so(run):
    d, m = run
    for folder in m.values():
        assert json.loads((folder / "source.json").read_text())["random_weights"] is True
    assert "RANDOM WEIGHTS" in (d / "fetch.log").read_text()


def test_extract_frames_honours_max_seconds_and_stride(run):
    d, _ = run
    meta = json.loads((d / "meta.json").read_text())
    assert meta["source"] == {"fps": 25.0, "fps_fraction": "25", "width": 1280, "height": 720, "frame_count": 132,
                              "duration_s": pytest.approx(5.28), "codec": "h264", "frame_folder": False,
                              "rotation": 0, "variable_frame_rate": False}  # fmt: skip
    assert (meta["stride"], meta["max_seconds"], meta["output_fps"], meta["count"]) == (5, 1.0, "5", 5)
    assert meta["kept"] == [0, 5, 10, 15, 20]
    assert sorted(p.name for p in (d / "frames").iterdir()) == meta["files"] == [f"{k:05d}.jpg" for k in range(5)]
    assert cv2.imread(str(d / "frames/00004.jpg")).shape == (720, 1280, 3)


def test_segment_first_outputs(run):
    d, _ = run
    doc = json.loads((d / "rabbit/instances.json").read_text())
    assert doc["target"] == "rabbit" and doc["prompt"] == "rabbit" and doc["source_index"] == 0
    assert doc["detector"] == "clipseg" and {i["phrase"] for i in doc["instances"]} == {"rabbit"}
    assert doc["weights"]["random"] and "RANDOM WEIGHTS" in doc["weights"]["warning"]
    assert doc["found"] == len(doc["instances"]) >= 1 and doc["found"] <= 3  # demo: max_instances 3
    for k, inst in enumerate(doc["instances"], start=1):
        assert inst["id"] == k and inst["area"] > 0 and len(inst["box"]) == 4
        assert {"detector_score", "phrase", "sam2_iou", "segmentation"} <= set(inst) and 0 <= inst[
            "detector_score"
        ] <= 1
    for name in ("heatmap.png", "overlay.png"):
        img = cv2.imread(str(d / "rabbit/first" / name))
        assert img.shape == (720, 1280, 3) and tuple(img[-2, 2]) == (0, 0, 200)  # the red RANDOM WEIGHTS strip (BGR)
    assert "RANDOM WEIGHTS" in (d / "first.log").read_text()


def test_propagate_outputs(run):
    d, _ = run
    t = d / "rabbit"
    assert_propagate_outputs(t / "masks", t / "tracks.json", t / "masks.rle.json", t / "instances.json")


@pytest.fixture(scope="module")
def trackers(tmp_path_factory):
    """The tiny random EdgeTAM and SAM 3 the other trackers run: {model: folder}."""
    from vispipe.segment.models import fetch

    root = tmp_path_factory.mktemp("trackers")
    dirs = {kind: root / kind for kind in ("edgetam", "sam3")}
    fetch(load(DEMO_CONFIGS)["segment"]["models"], dirs)
    return dirs


TRACKERS = {  # method: (its model, what the log says, its stages besides decode and write)
    "sam2_video": (None, "SAM2's own tracker", {"sam2 image encoder", "sam2 memory + mask decode"}),
    "edgetam_video": ("edgetam", "EdgeTAM's own tracker", {"edgetam image encoder", "edgetam memory + mask decode"}),
    "sam3_video": ("sam3", "SAM 3's concept tracker", {"sam3 image encoder", "sam3 detect + track"}),
}


@pytest.mark.parametrize("method", TRACKERS)
def test_propagate_with_a_tracker_writes_the_same_outputs(run, trackers, tmp_path, method):
    """Each of SAM2's, EdgeTAM's and SAM 3's trackers (segment.propagate.method): the flow mode's files,
    checked the same way, and where the time went per stage (in tracks.json and the log). SAM 3 finds
    objects itself: they join the first frame's instances with new ids."""
    d, m = run
    model, says, stages = TRACKERS[method]
    t, out = d / "rabbit", tmp_path / "sv"
    tracker = ["--tracker", trackers[model]] if model else []
    run_script("propagate", *cfg_args({"segment": {"propagate": {"method": method}}}), "--frames", d / "frames",
               "--meta", d / "meta.json", "--instances", t / "instances.json", "--masks", out / "masks",
               "--tracks", out / "tracks.json", "--rle", out / "rle.json", "--sam2", m["sam2"], *tracker,
               "--log", out / "log")  # fmt: skip
    assert_propagate_outputs(out / "masks", out / "tracks.json", out / "rle.json", t / "instances.json",
                             new_ids=method == "sam3_video")  # fmt: skip
    tracks, flow = (load_tracks(p) for p in (out / "tracks.json", t / "tracks.json"))
    assert tracks["method"] == method and flow["method"] == "flow"
    assert {"decode", "write", *stages} <= set(tracks["stage_times"]["stage_seconds"])
    assert {"flow", "sam2 image encoder", "sam2 prompt + mask decode"} <= set(flow["stage_times"]["stage_seconds"])
    assert tracks["stage_times"]["frames"] == 5 and tracks["stage_times"]["device"] == "cpu"
    log = (out / "log").read_text()
    assert says in log and f"{method}, cpu: 5 frames" in log and min(stages) in log
    born = [e for e in tracks["events"] if e["event"] == "born"]
    first = json.loads((t / "instances.json").read_text())["found"]
    assert [e["id"] for e in born if e["frame"] == 0] == list(range(1, first + 1))
    if method == "sam3_video":  # the tiny random SAM 3 finds objects on later frames: each a new id, once
        later = [e["id"] for e in born if e["frame"] > 0]
        assert later and later == list(range(first + 1, first + 1 + len(later))), tracks["events"]
        assert all(e["reason"] == "sam3 detection" for e in born if e["frame"] > 0)


def assert_propagate_outputs(masks_dir, tracks_path, rle_path, instances_path, new_ids=False):
    """Masks, tracks.json and the RLE of 5 frames agree with each other and with segment_first's
    instances (``new_ids``: the tracker may add instances of its own)."""
    masks = sorted(masks_dir.iterdir())
    assert [p.name for p in masks] == [f"{k:05d}.png" for k in range(5)]
    ids = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in masks]
    assert all(m.shape == (720, 1280) and m.dtype == np.uint8 for m in ids)
    tracks = load_tracks(tracks_path)
    n = json.loads(instances_path.read_text())["found"]
    assert len(tracks["frames"]) == 5 and tracks["instances"][:n] == list(range(1, n + 1))
    assert new_ids or len(tracks["instances"]) == n
    born = {e["id"]: e["frame"] for e in tracks["events"] if e["event"] == "born"}
    assert all(sum(counts.values()) == 5 - born[int(i)] for i, counts in tracks["summary"].items())  # from its birth
    for frame, m in zip(tracks["frames"], ids):
        visible = {int(i) for i, v in frame["instances"].items() if v["state"] != "lost"}
        assert set(np.unique(m)) - {0} <= visible
    by_frame = assert_png_equals_rle(ids, rle_path)
    for frame, masks in zip(tracks["frames"], by_frame.values()):  # one RLE mask per instance in view
        assert set(masks) == {int(i) for i, v in frame["instances"].items() if v["state"] != "lost"}


def assert_png_equals_rle(ids: list[np.ndarray], rle_path) -> dict[int, dict[int, np.ndarray]]:
    """Each frame's id PNG is exactly its RLE masks, the lower id winning an overlap; {frame: {id: mask}}."""
    from vispipe.segment.files.masks import decode_rle

    rle = json.loads(rle_path.read_text())
    assert len(rle["images"]) == len(ids) and rle["categories"] == [{"id": 1, "name": "rabbit"}]
    by_frame: dict[int, dict[int, np.ndarray]] = {k: {} for k in range(len(ids))}
    for ann in rle["annotations"]:
        mask = decode_rle(ann["segmentation"])
        assert mask.sum() == ann["area"] and ann["instance_id"] not in by_frame[ann["image_id"]]
        by_frame[ann["image_id"]][ann["instance_id"]] = mask
    assert any(m.any() for masks in by_frame.values() for m in masks.values()), "every mask is empty"
    for k, masks in by_frame.items():
        png, covered = ids[k], np.zeros(ids[k].shape, bool)
        for i in sorted(masks):
            own = masks[i] & ~covered  # its pixels not under a lower id
            assert (png[own] == i).all(), f"frame {k}: instance {i}'s pixels do not carry its id"
            assert (png == i).sum() == own.sum(), f"frame {k}: id {i} outside its mask"
            assert not own.any() or i in png, f"frame {k}: instance {i} is missing from the PNG"
            covered |= masks[i]
        assert not png[~covered].any(), f"frame {k}: ids outside every RLE mask"
    return by_frame


def test_render_overlay_is_h264_at_fps_over_stride(run):
    d, _ = run
    with av.open(str(d / "rabbit/overlay.mp4")) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.pix_fmt, s.average_rate) == ("h264", "yuv420p", 5)
        assert (s.width, s.height) == (1280, 720) and sum(1 for _ in c.decode(s)) == 5


def test_render_overlay_draws_the_masks_over_the_frames(run):
    d, _ = run
    meta = json.loads((d / "meta.json").read_text())
    style = load(DEMO_CONFIGS)["segment"]["overlay"]
    assert_overlay_shows_masks(d / "rabbit/overlay.mp4", d / "frames", d / "rabbit/masks", meta, style)


def test_segment_image(run, tmp_path):
    _, m = run
    out = tmp_path / "still"
    proc = run_script("segment_image", *cfg_args(), "--image", ROOT / "resources/demo/bigbuckbunny_frame.jpg",
                      "--target", "rabbit", "--out-dir", out, "--clipseg", m["clipseg"], "--sam2", m["sam2"])  # fmt: skip
    assert "RANDOM WEIGHTS" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["heatmap.png", "instances.json", "mask.png", "overlay.png"]
    doc = json.loads((out / "instances.json").read_text())
    assert doc["image"].endswith("bigbuckbunny_frame.jpg") and doc["size"] == [720, 1280] and doc["found"] >= 1


def test_a_target_without_foreground_is_not_a_crash(run, tmp_path):
    """Nothing reaches min_score: found 0 and a warning, empty masks, an overlay without instances."""
    d, m = run
    none = {"segment": {"clipseg": {"min_score": 1.0}}}
    t = tmp_path / "rabbit"
    proc = run_script("segment_first", *cfg_args(none), "--frames", d / "frames", "--meta", d / "meta.json",
                      "--target", "rabbit", "--out-dir", t, "--clipseg", m["clipseg"], "--sam2", m["sam2"],
                      "--log", tmp_path / "first.log")  # fmt: skip
    doc = json.loads((t / "instances.json").read_text())
    assert doc["found"] == 0 and doc["instances"] == [] and "no foreground found for 'rabbit'" in doc["warning"]
    assert "WARNING no foreground found" in (tmp_path / "first.log").read_text() and proc.returncode == 0
    assert sorted(p.name for p in (t / "first").iterdir()) == ["heatmap.png", "mask.png"]
    assert not cv2.imread(str(t / "first/mask.png"), cv2.IMREAD_GRAYSCALE)[:600].any()
    run_script("propagate", *cfg_args(), "--frames", d / "frames", "--meta", d / "meta.json", "--instances", t / "instances.json",
               "--masks", t / "masks", "--tracks", t / "tracks.json", "--rle", t / "masks.rle.json", "--sam2", m["sam2"])  # fmt: skip
    assert all(not cv2.imread(str(p), cv2.IMREAD_UNCHANGED).any() for p in (t / "masks").iterdir())
    assert len(list((t / "masks").iterdir())) == 5
    assert json.loads((t / "masks.rle.json").read_text())["annotations"] == []
    run_script("render_overlay", *cfg_args(), "--frames", d / "frames", "--meta", d / "meta.json", "--masks", t / "masks",
               "--tracks", t / "tracks.json", "--out", t / "overlay.mp4")  # fmt: skip
    with av.open(str(t / "overlay.mp4")) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    source = cv2.cvtColor(cv2.imread(str(d / "frames/00000.jpg")), cv2.COLOR_BGR2RGB)
    assert np.abs(first[:600].astype(int) - source[:600]).mean() < 4  # just the frame (H.264 is lossy)


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 100, DEMO_VIDEO.read_bytes()[:300_000]])
def test_extract_frames_rejects_broken_videos(tmp_path, content):
    video = tmp_path / "broken.mp4"
    video.write_bytes(content)
    out = tmp_path / "out"
    proc = run_script(
        "extract_frames",
        *cfg_args(),
        "--video",
        video,
        "--frames",
        out / "frames",
        "--meta",
        out / "meta.json",
        check=False,
    )
    failed(proc, f"cannot read video {video}", "Replace the file")
    assert_nothing_left(out)


def test_extract_frames_missing_video(tmp_path):
    proc = run_script("extract_frames", *cfg_args(), "--video", tmp_path / "nope.mp4", "--frames", tmp_path / "f",
                      "--meta", tmp_path / "meta.json", check=False)  # fmt: skip
    failed(proc, "video not found", "nope.mp4")


def first_args(run, out, override=None, target="rabbit", models=True):
    d, m = run
    args = [
        *cfg_args(override),
        "--frames",
        d / "frames",
        "--meta",
        d / "meta.json",
        "--target",
        target,
        "--out-dir",
        out,
    ]
    return args + ["--clipseg", m["clipseg"], "--sam2", m["sam2"]] if models else args


def test_unknown_target(run, tmp_path):
    proc = run_script("segment_first", *first_args(run, tmp_path / "out", target="fox"), check=False)
    failed(proc, "unknown target 'fox'", "segment.targets (known: rabbit)")
    assert_nothing_left(tmp_path / "out")


@pytest.mark.parametrize(
    "override, key",
    [
        ({"segment": {"sam2": {"n_pos": -1}}}, "segment.sam2.n_pos"),
        ({"segment": {"clipseg": {"top_pct_fallback": 1.5}}}, "segment.clipseg.top_pct_fallback"),
        ({"segment": {"sam2": {"border": 0}}}, "segment.sam2.border"),
    ],
)
def test_out_of_range_knob_names_the_key(run, tmp_path, override, key):
    proc = run_script("segment_first", *first_args(run, tmp_path / "out", override), check=False)
    failed(proc, f"config key {key}:", "config.schema.yaml")
    assert_nothing_left(tmp_path / "out")


def test_out_of_range_frames_knob(tmp_path):
    proc = run_script("extract_frames", *cfg_args({"segment": {"frames": {"stride": 0}}}), "--video", DEMO_VIDEO,
                      "--frames", tmp_path / "f", "--meta", tmp_path / "meta.json", check=False)  # fmt: skip
    failed(proc, "config key segment.frames.stride:")
    assert_nothing_left(tmp_path)


def test_missing_models_name_fetch_models(run, tmp_path):
    where = {"segment": {"models": {"dir": str(tmp_path / "empty")}}}
    proc = run_script("segment_first", *first_args(run, tmp_path / "out", where, models=False), check=False)
    failed(proc, "model missing in", "run the fetch_models rule first")
    assert_nothing_left(tmp_path / "out")


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n garbage"])
def test_segment_image_rejects_unreadable_images(run, tmp_path, content):
    _, m = run
    image = tmp_path / "broken.png"
    image.write_bytes(content)
    proc = run_script("segment_image", *cfg_args(), "--image", image, "--target", "rabbit", "--out-dir", tmp_path / "out",
                      "--clipseg", m["clipseg"], "--sam2", m["sam2"], check=False)  # fmt: skip
    failed(proc, f"cannot read image {image}")
    assert_nothing_left(tmp_path / "out")


def test_fetch_models_offline_hub_is_a_clear_error(tmp_path):
    hub = {"segment": {"models": {"source": "hub", "dir": str(tmp_path / "models")}}}
    proc = run_script("fetch_models", *cfg_args(hub), check=False)  # conftest runs scripts with HF_HUB_OFFLINE=1
    failed(proc, "could not download CIDAS/clipseg-rd64-refined@main", "HF_HUB_OFFLINE must be unset")
    assert not (tmp_path / "models" / "CIDAS--clipseg-rd64-refined").exists()


def _copy_run(run, dest):
    """A private copy of the fixture's frames, meta and target folder that a test may damage."""
    import shutil

    d, m = run
    for name in ("frames", "meta.json", "rabbit"):
        src = d / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    return dest, m


def _propagate(d, m, out):
    return run_script("propagate", *cfg_args(), "--frames", d / "frames", "--meta", d / "meta.json",
                      "--instances", d / "rabbit/instances.json", "--masks", out / "masks", "--tracks",
                      out / "tracks.json", "--rle", out / "rle.json", "--sam2", m["sam2"], check=False)  # fmt: skip


def _render(d, out):
    return run_script("render_overlay", *cfg_args(), "--frames", d / "frames", "--meta", d / "meta.json", "--masks",
                      d / "rabbit/masks", "--tracks", d / "rabbit/tracks.json", "--out", out / "o.mp4", check=False)  # fmt: skip


@pytest.mark.parametrize(
    "damage, step, fragments",
    [
        # fault: a frame listed in meta.json is gone (an interrupted copy) -> name the folder and extract_frames
        (lambda d: (d / "frames/00002.jpg").unlink(), "propagate", ["lacks 1 frame(s)", "rerun extract_frames"]),
        # fault: instances.json cut short -> name it and segment_first
        (
            lambda d: (d / "rabbit/instances.json").write_text('{"instances": [{"id"'),
            "propagate",
            ["instances.json is damaged", "rerun the segment_first rule"],
        ),  # fmt: skip
        # fault: meta.json is some other JSON -> name it and extract_frames
        (lambda d: (d / "meta.json").write_text("[1, 2]"), "propagate", ["meta.json lacks", "extract_frames rule"]),
        # fault: tracks.json cut short -> name it and propagate
        (
            lambda d: (d / "rabbit/tracks.json").write_text((d / "rabbit/tracks.json").read_text()[:100]),
            "render",
            ["tracks.json is damaged", "rerun the propagate rule"],
        ),  # fmt: skip
        # fault: a mask PNG of another size (left from another run) -> name it and propagate
        (
            lambda d: cv2.imwrite(str(d / "rabbit/masks/00001.png"), np.zeros((10, 20), np.uint8)),
            "render",
            ["00001.png is 20x10 but the video is 1280x720", "rerun the propagate rule"],
        ),  # fmt: skip
    ],
    ids=["frame-missing", "instances-truncated", "meta-foreign", "tracks-truncated", "mask-wrong-size"],
)
def test_damaged_files_between_rules_exit_2_naming_the_file_and_the_rule(run, tmp_path, damage, step, fragments):
    d, m = _copy_run(run, tmp_path)
    damage(d)
    out = tmp_path / "out"
    proc = _propagate(d, m, out) if step == "propagate" else _render(d, out)
    failed(proc, *fragments)
    assert_nothing_left(out)


def test_a_model_folder_missing_its_weights_exits_2_naming_fetch_models(run, tmp_path):
    """Fault: the weight file of the SAM2 folder is gone (a partial copy to a cluster node)."""
    import shutil

    d, m = _copy_run(run, tmp_path)
    sam2 = tmp_path / "sam2"
    shutil.copytree(m["sam2"], sam2)
    weights = [p for p in sam2.iterdir() if p.suffix in (".safetensors", ".bin")]
    assert weights
    for p in weights:
        p.unlink()
    proc = _propagate(d, {"sam2": sam2}, tmp_path / "out")
    failed(proc, f"sam2 model in {sam2} is incomplete or damaged", "rerun the fetch_models rule")
    assert_nothing_left(tmp_path / "out")


def test_propagate_with_re_detection_records_its_events(run, tmp_path):
    """segment.redetect.every 2 on the 5 demo frames: CLIPSeg and SAM2 (tiny, random) run again on
    frames 2 and 4; every instance's state there says what re-detection did, and tracks.json lists the
    births, losses and revivals (the random models decide which)."""
    d, m = run
    redetect = {"segment": {"redetect": {"every": 2, "match_iou": 0.5, "min_similarity": 0.8}}}
    out = tmp_path / "t"
    run_script("propagate", *cfg_args(redetect), "--frames", d / "frames", "--meta", d / "meta.json", "--instances",
               d / "rabbit/instances.json", "--masks", out / "masks", "--tracks", out / "tracks.json", "--rle",
               out / "rle.json", "--sam2", m["sam2"], "--clipseg", m["clipseg"], "--log", tmp_path / "log")  # fmt: skip
    tracks = load_tracks(out / "tracks.json")
    assert "re-detecting 'rabbit' every 2 kept frames" in (tmp_path / "log").read_text()
    assert "re-detection" in tracks["stage_times"]["stage_seconds"]  # CLIPSeg's share of it, timed
    reasons = {k: {v["reason"] for v in tracks["frames"][k]["instances"].values()} for k in (2, 4)}
    redetected = {"re-detected", "revived", "born", "not re-detected", "lost earlier"}
    assert all(r <= redetected for r in reasons.values()), reasons
    first = json.loads((d / "rabbit/instances.json").read_text())["instances"]
    assert [e["id"] for e in tracks["events"] if e["frame"] == 0] == [i["id"] for i in first]
    born = [e["id"] for e in tracks["events"] if e["event"] == "born" and e["frame"] > 0]
    assert sorted(tracks["instances"]) == sorted({i["id"] for i in first} | set(born))
    assert set(tracks["summary"]) == {str(i) for i in tracks["instances"]}
    # the masks hold exactly the ids tracks.json calls visible: each PNG is its frame's RLE masks, and
    # those are the instances in view there
    pngs = [cv2.imread(str(out / "masks" / frame["file"]), cv2.IMREAD_UNCHANGED) for frame in tracks["frames"]]
    for k, (frame, masks) in enumerate(zip(tracks["frames"], assert_png_equals_rle(pngs, out / "rle.json").values())):
        shown = {int(i) for i, v in frame["instances"].items() if v["state"] != "lost"}
        assert set(masks) == shown, (k, sorted(masks), shown)


def test_a_step_validates_its_config_once_at_entry_and_never_inside_the_library(run, tmp_path, monkeypatch):
    """Settings.parse validates each segment block once; propagate_video then reads the parsed
    settings only: with the validator made to fail after parsing, the whole step still runs."""
    import vispipe.config
    import vispipe.segment.settings as settings_module
    from vispipe.segment.settings import PER_KEY, Settings
    from vispipe.segment.steps.propagate import propagate_video

    d, m = run
    seen = []

    def counted(block, path="", where=None):
        seen.append(path)
        return real(block, path, where)

    real = settings_module.validate
    monkeypatch.setattr(settings_module, "validate", counted)
    settings = Settings.parse(load([*DEMO_CONFIGS, {"segment": {"redetect": {"every": 2}}}]))
    blocks = settings.as_config()["segment"]
    expected = [f"segment.{name}" for name in blocks if name not in PER_KEY]
    expected += [f"segment.{name}.{key}" for name in PER_KEY for key in blocks.get(name, {})]  # limits: key by key
    assert sorted(seen) == sorted(expected)  # each block (or key) once

    def no_more(*args, **kwargs):
        raise AssertionError("the library validated a config block again")

    for module in (vispipe.config, settings_module):
        monkeypatch.setattr(module, "validate", no_more)
    out = tmp_path / "t"
    propagate_video(settings, d / "frames", d / "meta.json", d / "rabbit/instances.json", out / "masks",
                          out / "tracks.json", out / "rle.json", m["sam2"], m["clipseg"])  # fmt: skip
    assert len(list((out / "masks").iterdir())) == 5
    with pytest.raises(AttributeError, match="read-only"):
        settings.frames = {}
