"""The demo pipeline run by Snakemake in a temp copy of the workflow, segmentation side:
outputs, the H.264 overlay decoded back, fan-out over videos and targets, and which steps a knob edit reruns."""

import json
import re

import av
import pytest

from conftest import assert_nothing_to_do, assert_overlay_shows_masks, job_counts, snakemake
from vispipe.config import load
from vispipe.segment.files.tracks import load as load_tracks
from vispipe.segment.layout import final_outputs

pytestmark = pytest.mark.slow

SEG = "results/segment/bigbuckbunny"
SEG_RULES = {"fetch_models", "extract_frames", "segment_first", "propagate", "render_overlay", "segment_image",
             "export_annotations"}  # fmt: skip


@pytest.fixture(scope="module")
def seg_run(demo_run):
    """The whole demo (classification included) run once by Snakemake: see conftest.demo_run."""
    return demo_run


def test_overlay_mp4_decodes_as_h264_at_source_fps_over_stride(seg_run):
    meta = json.loads((seg_run / SEG / "meta.json").read_text())
    assert (meta["stride"], meta["count"], meta["source"]["fps"]) == (2, 66, 25.0)  # demo: 6 s, stride 2
    with av.open(str(seg_run / SEG / "rabbit/overlay.mp4")) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == meta["source"]["fps"] / meta["stride"] == 12.5
    assert len(frames) == meta["count"]
    assert frames[0].shape == (meta["source"]["height"], meta["source"]["width"], 3) == (720, 1280, 3)
    masks = sorted((seg_run / SEG / "rabbit/masks").glob("*.png"))
    assert len(masks) == meta["count"] == len(list((seg_run / SEG / "frames").glob("*.jpg")))
    tracks = load_tracks(seg_run / SEG / "rabbit/tracks.json")
    assert len(tracks["frames"]) == meta["count"] and tracks["weights"]["random"]
    style = load([seg_run / "config/config.yaml", seg_run / "config/demo.yaml"])["segment"]["overlay"]
    assert_overlay_shows_masks(
        seg_run / SEG / "rabbit/overlay.mp4", seg_run / SEG / "frames", seg_run / SEG / "rabbit/masks", meta, style
    )


def test_the_rle_file_is_coco_with_video_and_track_ids_read_by_pycocotools(seg_run):
    """masks.rle.json as TAO-style COCO: pycocotools' own reader decodes every annotation to exactly
    its track's pixels in the id PNG, every (frame, track) of the PNGs has one, and the track ids
    are those of tracks.json."""
    import numpy as np
    from pycocotools.coco import COCO

    from vispipe.segment.files.masks import read_id_mask

    run = seg_run / SEG / "rabbit"
    coco = COCO(str(run / "masks.rle.json"))
    tracks = load_tracks(run / "tracks.json")
    assert [v["id"] for v in coco.dataset["videos"]] == [1] and coco.dataset["videos"][0]["length"] == len(coco.imgs)
    seen = set()
    for k, image in sorted(coco.imgs.items()):
        assert (image["video_id"], image["frame_index"]) == (1, k)
        ids = read_id_mask(run / "masks" / f"{k:05d}.png")
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[k]))
        assert sorted(a["track_id"] for a in anns) == sorted(int(i) for i in np.unique(ids) if i), k
        for a in anns:
            assert np.array_equal(coco.annToMask(a).astype(bool), ids == a["track_id"]), (k, a["track_id"])
            seen.add(a["track_id"])
    tracked = {int(i) for f in tracks["frames"] for i in f["instances"]}
    assert seen and {t["id"] for t in coco.dataset["tracks"]} == seen <= tracked


def test_every_output_log_and_benchmark(seg_run):
    for name in ("first/heatmap.png", "first/mask.png", "first/overlay.png", "instances.json", "masks.rle.json"):
        assert (seg_run / SEG / "rabbit" / name).stat().st_size > 0, name
    still = seg_run / "results/segment/images/bigbuckbunny_frame/rabbit"
    assert sorted(p.name for p in still.iterdir()) == ["heatmap.png", "instances.json", "mask.png", "overlay.png"]
    logs = seg_run / "logs/segment"
    for log in ("fetch_models.log", "bigbuckbunny/extract_frames.log", "bigbuckbunny/rabbit/segment_first.log",
                "bigbuckbunny/rabbit/propagate.log", "bigbuckbunny/rabbit/render_overlay.log",
                "images/bigbuckbunny_frame/rabbit.log"):  # fmt: skip
        assert (logs / log).stat().st_size > 0, log
    assert "RANDOM WEIGHTS" in (logs / "bigbuckbunny/rabbit/segment_first.log").read_text()
    assert (seg_run / "benchmarks/segment/bigbuckbunny/rabbit/propagate.tsv").exists()
    assert json.loads((seg_run / "resources/models/random-tiny--sam2/source.json").read_text())["random_weights"]


def dry_run(wf, override: str | None = None, *targets: str) -> str:
    args = ["-n", *targets, "--configfile", "config/demo.yaml"]
    if override is not None:
        (wf / "override.yaml").write_text(override + "\n")
        args.append("override.yaml")
    return snakemake(wf, *args).stdout


def reasons(dry_run_output: str) -> dict[str, list[str]]:
    """{rule: [reason of each of its jobs]} from ``snakemake -n`` output."""
    out: dict[str, list[str]] = {}
    rule = None
    for line in dry_run_output.splitlines():
        if m := re.match(r"(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif rule and line.strip().startswith("reason:"):
            out.setdefault(rule, []).append(line.strip())
    return out


def test_nothing_to_do_after_the_run(seg_run):
    targets = final_outputs(load([seg_run / "config/config.yaml", seg_run / "config/demo.yaml"])["segment"])
    assert_nothing_to_do(snakemake(seg_run, "-n", *targets, "--configfile", "config/demo.yaml"))


@pytest.mark.parametrize(
    "override, changed, downstream",
    [
        ("segment: {sam2: {n_pos: 3}}", {"segment_first", "segment_image"}, {"propagate", "render_overlay"}),
        ("segment: {clipseg: {min_cc_area: 500}}", {"segment_first", "segment_image"}, {"propagate", "render_overlay"}),
        (
            "segment: {targets: {rabbit: {prompt: a rabbit}}}",
            {"segment_first", "segment_image"},
            {"propagate", "render_overlay"},
        ),
        ("segment: {flow: {winsize: 21}}", {"propagate"}, {"render_overlay"}),
        ("segment: {propagate: {max_area_ratio: 3.0}}", {"propagate"}, {"render_overlay"}),
        ("segment: {redetect: {every: 5}}", {"propagate"}, {"render_overlay"}),
        ("segment: {overlay: {alpha: 0.3}}", {"segment_image", "render_overlay"}, set()),
        ("segment: {frames: {stride: 3}}", {"extract_frames"}, {"segment_first", "propagate", "render_overlay"}),
        # exports switched on: the export step alone (its outputs are new), nothing it reads
        ("segment: {export: {formats: [yolo, cvat]}}", set(), {"export_annotations"}),
    ],
)
def test_a_segmentation_knob_reruns_exactly_the_affected_steps(seg_run, override, changed, downstream):
    """Over the whole workflow (rule all): the first steps that read the edited knob rerun for changed
    params and their consumers follow (Snakemake gives one reason per job: "input files updated");
    a colour edit only redraws pictures; frame extraction reruns only for frames knobs, the models
    never; nothing of the classification chain reruns."""
    why = reasons(dry_run(seg_run, override))
    assert {r for r, rs in why.items() if any("Params have changed" in x for x in rs)} == changed
    assert {r for r in why if r in SEG_RULES} == changed | downstream
    assert "fetch_models" not in why
    assert not {"fetch_cifar10", "train_teacher", "train_student", "evaluate", "compare_models"} & set(why)


def test_videos_and_targets_fan_out_through_wildcards(seg_run):
    override = (
        "segment:\n"
        "  targets: {white_rabbit: {prompt: a white rabbit}}\n"
        "  videos: {bunny2: {path: resources/demo/bigbuckbunny.mp4, targets: [rabbit, white_rabbit]}}\n"
        "  images: {bigbuckbunny_frame: {path: resources/demo/bigbuckbunny_frame.jpg, targets: [rabbit, white_rabbit]}}\n"
    )
    out = dry_run(seg_run, override)
    counts = job_counts(out)
    # deep-merged config: bigbuckbunny/rabbit exists; bunny2 x {rabbit, white_rabbit} and the still's new target are new
    assert {r: counts.get(r, 0) for r in SEG_RULES} == {
        "fetch_models": 0, "extract_frames": 1, "segment_first": 2, "propagate": 2, "render_overlay": 2, "segment_image": 1,
        "export_annotations": 0,
    }  # fmt: skip
    outputs = [line for line in out.splitlines() if line.strip().startswith("output:")]
    assert any("results/segment/bunny2/white_rabbit/overlay.mp4" in line for line in outputs)
    assert not any("white rabbit" in line for line in outputs)  # the key names paths, never the prompt


def test_unknown_target_key_and_bad_knob_stop_the_workflow(seg_run):
    (seg_run / "override.yaml").write_text("segment: {videos: {bigbuckbunny: {targets: [fox]}}}\n")
    proc = snakemake(seg_run, "-n", "--configfile", "config/demo.yaml", "override.yaml", check=False)
    assert proc.returncode != 0 and "segment.videos.bigbuckbunny.targets names 'fox'" in proc.stderr + proc.stdout
    (seg_run / "override.yaml").write_text("segment: {flow: {poly_n: 6}}\n")
    proc = snakemake(seg_run, "-n", "--configfile", "config/demo.yaml", "override.yaml", check=False)
    assert proc.returncode != 0 and "config key segment.flow.poly_n" in proc.stderr + proc.stdout


def test_a_video_with_ground_truth_is_scored(seg_run):
    """scripts/make_synthetic.py makes a clip with exact masks; naming them as the video's ground truth
    adds evaluate_segmentation for each of its targets, and its J agrees with the masks and the truth."""
    import csv

    import numpy as np

    from conftest import run_script
    from vispipe.segment.evaluation.synthetic import read_palette_png
    from vispipe.segment.files.masks import read_id_mask

    run_script("make_synthetic", "--video", "resources/synthetic/clip.mp4", "--ground-truth",
               "resources/synthetic/clip_gt", "--frames", "24", cwd=seg_run)  # fmt: skip
    (seg_run / "synth.yaml").write_text(
        "segment:\n  videos:\n    synthetic: {path: resources/synthetic/clip.mp4, targets: [rabbit],"
        " ground_truth: resources/synthetic/clip_gt}\n"
    )
    configs = ["--configfile", "config/demo.yaml", "synth.yaml"]
    counts = job_counts(snakemake(seg_run, "-n", *configs).stdout)
    assert counts.get("evaluate_segmentation") == 1 and counts.get("extract_frames") == 1, counts
    assert not {"train_teacher", "segment_image", "fetch_models"} & set(counts), counts  # only the new video
    snakemake(seg_run, *configs)
    ev = seg_run / "results/segment/synthetic/rabbit/eval"
    md = (ev / "jf.md").read_text()
    assert "| mean" in md and "J&F" in md and "matched ids" in md
    rows = list(csv.DictReader(open(ev / "jf.csv")))
    meta = json.loads((seg_run / "results/segment/synthetic/meta.json").read_text())
    assert meta["stride"] == 2 and {int(r["frame"]) for r in rows} == set(meta["kept"])
    # recompute one row from the files
    row = next(r for r in rows if r["object"] == "1" and r["pred_id"])
    k = meta["kept"].index(int(row["frame"]))
    pred = read_id_mask(seg_run / f"results/segment/synthetic/rabbit/masks/{k:05d}.png") == int(float(row["pred_id"]))
    gt = read_palette_png(seg_run / f"resources/synthetic/clip_gt/{int(row['frame']):05d}.png") == 1
    assert float(row["J"]) == pytest.approx(np.logical_and(pred, gt).sum() / np.logical_or(pred, gt).sum())
    assert (ev / "j_per_frame.png").stat().st_size > 10_000
    ids = json.loads((ev / "identity.json").read_text())
    truth = [read_palette_png(seg_run / f"resources/synthetic/clip_gt/{f:05d}.png") for f in meta["kept"]]
    masks = [read_id_mask(seg_run / f"results/segment/synthetic/rabbit/masks/{k:05d}.png") for k in range(len(truth))]
    assert ids["objects"] == len(set(np.unique(truth)) - {0}) and "Identity" in md
    assert ids["predicted_ids"] == len(set(np.unique(masks)) - {0})
    # IDF1, ID switches and MOTA as py-motmetrics scores these masks (pairs at mask IoU >= 0.5)
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for t, m in zip(truth, masks):
        oids, hids = [int(i) for i in np.unique(t) if i], [int(i) for i in np.unique(m) if i]
        dist = np.array([[1 - ((t == o) & (m == h)).sum() / ((t == o) | (m == h)).sum() for h in hids] for o in oids])
        acc.update(oids, hids, np.where(dist <= 0.5, dist, np.nan).reshape(len(oids), len(hids)))
    metrics = ["idf1", "num_switches", "mota"]
    want = mm.metrics.create().compute(acc, metrics=metrics, name="video").iloc[0]
    assert (ids["idf1"], ids["id_switches"], ids["mota"]) == pytest.approx(tuple(want[metrics])), ids
    # the tiny random models track nothing (IDF1 0, no switch): the script again, on the run's own
    # masks as the truth and, as the prediction, those masks with their id changed halfway (one
    # switch, IDF1 about 0.5), against the same reference
    from vispipe.segment.evaluation.synthetic import write_palette_png
    from vispipe.segment.files.masks import write_image

    half, (gt_dir, switched) = len(masks) // 2, (seg_run / "self_gt", seg_run / "switched")
    gt_dir.mkdir()
    switched.mkdir()
    for f in range(max(meta["kept"]) + 1):  # one truth PNG per source frame: the kept frame's masks
        write_palette_png(
            gt_dir / f"{f:05d}.png",
            masks[min(meta["kept"].index(f), len(masks) - 1)] if f in meta["kept"] else masks[0],
        )
    moved = [np.where(m > 0, m + (50 if k >= half else 0), 0).astype(np.uint8) for k, m in enumerate(masks)]
    for k, m in enumerate(moved):
        write_image(switched / f"{k:05d}.png", m, rgb=False)
    run_script("evaluate_segmentation", "--masks", switched, "--meta", seg_run / "results/segment/synthetic/meta.json",
               "--ground-truth", gt_dir, "--out-dir", seg_run / "self_eval", "--no-match")  # fmt: skip
    got = json.loads((seg_run / "self_eval/identity.json").read_text())
    acc = mm.MOTAccumulator(auto_id=True)
    for t, m in zip(masks, moved):
        oids, hids = [int(i) for i in np.unique(t) if i], [int(i) for i in np.unique(m) if i]
        dist = np.array([[1 - ((t == o) & (m == h)).sum() / ((t == o) | (m == h)).sum() for h in hids] for o in oids])
        acc.update(oids, hids, np.where(dist <= 0.5, dist, np.nan).reshape(len(oids), len(hids)))
    want = mm.metrics.create().compute(acc, metrics=metrics, name="video").iloc[0]
    assert want["num_switches"] >= 1 and 0.2 < want["idf1"] < 0.8, want
    assert (got["idf1"], got["id_switches"], got["mota"]) == pytest.approx(tuple(want[metrics])), got


def test_launcher_settings_rerun_nothing(seg_run):
    """warm_worker and gpu_slots_per_device change how steps start, never what they compute."""
    (seg_run / "launch.yaml").write_text("warm_worker: false\ngpu_slots_per_device: 2\n")
    assert_nothing_to_do(snakemake(seg_run, "-n", "--configfile", "config/demo.yaml", "launch.yaml"))


def test_steps_run_in_the_warm_worker_give_what_cold_scripts_give(seg_run, tmp_path):
    """The demo ran its segmentation steps in the warm worker (forked children); the same scripts run
    cold, one Python each, on the same inputs write the same bytes (timings and provenance aside)."""
    from conftest import drop_timing, run_script

    worker_log = (seg_run / "logs/warm_worker.log").read_text()
    for script in ("extract_frames.py", "segment_first.py", "propagate.py", "render_overlay.py"):
        assert f"{script} (pid" in worker_log and "exit 0" in worker_log, worker_log[-3000:]
    cfg = ["--config", str(seg_run / "config/config.yaml"), "--config", str(seg_run / "config/demo.yaml")]
    models = ["--clipseg", seg_run / "resources/models/random-tiny--clipseg",
              "--sam2", seg_run / "resources/models/random-tiny--sam2"]  # fmt: skip
    frames = ["--frames", seg_run / SEG / "frames", "--meta", seg_run / SEG / "meta.json"]
    # the rules' thread count (the demo's threads.segment): another count sums floats in another order
    threads = [
        "--threads",
        str(load([seg_run / "config/config.yaml", seg_run / "config/demo.yaml"])["threads"]["segment"]),
    ]
    run_script("segment_first", *cfg, *frames, *threads, "--target", "rabbit", *models, "--out-dir", tmp_path)
    run_script("propagate", *cfg, *frames, *threads, "--instances", tmp_path / "instances.json", *models, "--masks",
               tmp_path / "masks", "--tracks", tmp_path / "tracks.json", "--rle", tmp_path / "masks.rle.json")  # fmt: skip
    warm = seg_run / SEG / "rabbit"
    for name in ("instances.json", "tracks.json", "masks.rle.json"):
        cold_doc, warm_doc = (json.loads((d / name).read_text()) for d in (tmp_path, warm))
        assert drop_timing(cold_doc) == drop_timing(warm_doc), name
    for name in ("first/heatmap.png", "first/mask.png"):
        assert (tmp_path / name).read_bytes() == (warm / name).read_bytes(), name
    masks = sorted(p.name for p in (warm / "masks").glob("*.png"))
    assert masks and masks == sorted(p.name for p in (tmp_path / "masks").glob("*.png"))
    assert all((tmp_path / "masks" / m).read_bytes() == (warm / "masks" / m).read_bytes() for m in masks)


def test_the_demo_tracks_export_through_the_rule(seg_run):
    """segment.export.formats on the demo: export_annotations alone runs, and
    each format holds every kept frame and every track of tracks.json; editing the formats reruns it."""
    from defusedxml import ElementTree

    (seg_run / "export.yaml").write_text("segment: {export: {formats: [yolo, cvat, label_studio]}}\n")
    configs = ["--configfile", "config/demo.yaml", "export.yaml"]
    assert job_counts(snakemake(seg_run, "-n", *configs).stdout) == {"export_annotations": 1, "all": 1}
    snakemake(seg_run, *configs)
    out = seg_run / SEG / "rabbit/export"
    meta = json.loads((seg_run / SEG / "meta.json").read_text())
    tracks = load_tracks(seg_run / SEG / "rabbit/tracks.json")
    assert sorted(p.name for p in (out / "yolo/labels").iterdir()) == [f"{k:05d}.txt" for k in range(meta["count"])]
    assert all((out / "yolo/images" / f).resolve() == (seg_run / SEG / "frames" / f).resolve() for f in meta["files"])
    import numpy as np

    from vispipe.segment.files.masks import read_id_mask

    shown = set()  # the ids the PNGs show on some frame
    for f in tracks["frames"]:
        shown |= {int(i) for i in np.unique(read_id_mask(seg_run / SEG / "rabbit/masks" / f["file"])) if i}
    assert shown and shown <= set(tracks["instances"])
    cvat = ElementTree.parse(out / "cvat.xml").getroot()
    assert {int(t.get("id")) + 1 for t in cvat.findall("track")} == shown
    (task,) = json.loads((out / "label_studio.json").read_text())
    assert {r["meta"]["track_id"] for r in task["predictions"][0]["result"]} == shown
    (seg_run / "export.yaml").write_text("segment: {export: {formats: [cvat]}}\n")
    assert job_counts(snakemake(seg_run, "-n", *configs).stdout) == {"export_annotations": 1, "all": 1}


@pytest.mark.parametrize(
    ("edited", "triggered", "untouched"),
    [
        # an export format: the exports alone (they feed nothing)
        ("segment/files/formats/cvat.py", {"export_annotations": 1}, {"propagate", "render_overlay"}),
        # the flow tracker: propagate, and what reads its masks; not the frames nor the first frame
        ("segment/track/flow.py", {"propagate": 1}, {"extract_frames", "segment_first", "segment_image"}),
        # the configured detector: the first frame and the still image; another detector: nothing
        ("segment/detect/clipseg.py", {"segment_first": 1, "segment_image": 1}, {"extract_frames"}),
        ("segment/detect/owlv2.py", {}, set()),
        ("segment/track/sam2_video.py", {}, set()),  # a tracker the config does not use
        ("segment/evaluation/vos.py", {}, set()),  # the demo scores nothing (tests/test_davis.py does)
    ],
)
def test_a_code_edit_reruns_the_steps_that_run_that_code(seg_run, edited, triggered, untouched):
    """The rules hash each step's code: its script's imports, and the detector, tracker and formats the
    config picks by name (vispipe.segment.registry.step_modules). An edit reruns the steps that run the
    edited module, and Snakemake's usual cascade below them; nothing else."""
    import subprocess
    import sys

    from conftest import library_copy, param_triggered

    src, env = library_copy(seg_run)
    (seg_run / "export.yaml").write_text("segment: {export: {formats: [yolo, cvat, label_studio]}}\n")

    def run(*flags):
        cmd = [sys.executable, "-m", "snakemake", *flags, "--configfile", "config/demo.yaml", "export.yaml"]
        proc = subprocess.run(cmd, cwd=seg_run, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    def dry_run():
        return run("-n")

    run("--cores", "2")  # the exports, where no test before this one made them (this one run alone)
    assert_nothing_to_do(dry_run())
    path = src / "vispipe" / edited
    original = path.read_text()
    try:
        path.write_text(original + "\n# an edit\n")
        out = dry_run()
        assert param_triggered(out) == triggered, out[-4000:]
        assert not untouched & set(job_counts(out)), job_counts(out)
        if not triggered:
            assert_nothing_to_do(out)
    finally:
        path.write_text(original)
