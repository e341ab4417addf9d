"""Exports for annotation and training tools, on a clip with exact masks: two objects, the second
out of view on frames 3 and 4. Each format is read back by a reader other than its writer and
compared with the id PNGs: YOLO by supervision's importer (IoU >= 0.95 per instance), CVAT's XML
and Label Studio's JSON by the standard library's parsers against their documented layouts (same
track ids, polygons IoU >= 0.95, the outside flags and the enabled gaps where the object left).
Then by the tools themselves where they install beside the pipeline: Ultralytics' dataset check and
loader from another working directory and on a moved copy; Label Studio's own validator (its SDK's,
which its server runs on every import) on the task and its labeling config. CVAT, a server that CI
cannot run, by a file it wrote: cvat.xml is laid out as CVAT's own dump in tests/fixtures. And on a
clip whose object enters as a 1-pixel sliver, that its frame is in YOLO and CVAT, and that CVAT's
frame numbers and Label Studio's frame rate fit the task and project the files name. And by datumaro,
whose pins conflict with the pipeline's, in a virtual environment of its own
(tests/datumaro-requirements.txt, built once into pytest's cache folder): the COCO layout (every
frame's image, each mask pixel for pixel, its box and track id) and cvat.xml (tracks, polygons,
outside flags)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from defusedxml import ElementTree

from conftest import DEMO_CONFIGS, run_script
from vispipe.errors import UserError
from vispipe.segment.files.masks import write_image
from vispipe.segment.settings import Settings
from vispipe.segment.steps.export import export_annotations

H, W, N = 96, 128, 8
GONE = {2: (3, 4)}  # instance 2 is out of view on these frames


def exact_clip(root: Path, ids: list[np.ndarray] | None = None) -> tuple[Path, Path, Path, Path, list[np.ndarray]]:
    """Frames, meta.json, id PNGs and tracks.json of a clip whose masks are known exactly (``ids``; by
    default a disk moving right, id 1, and a rotated rectangle moving down, id 2), kept at stride 2
    of a 25 fps video."""
    if ids is None:
        ids = []
        for k in range(N):
            m = np.zeros((H, W), np.uint8)
            cv2.circle(m, (20 + 8 * k, 30), 14, 1, -1)
            if k not in GONE[2]:
                box = cv2.boxPoints(((90, 40 + 4 * k), (30, 16), 20)).astype(np.int32)
                cv2.fillPoly(m, [box], 2)
            ids.append(m)
    frames, masks = root / "frames", root / "masks"
    frames.mkdir(parents=True)
    masks.mkdir()
    files = []
    for k, m in enumerate(ids):
        files.append(f"{k:05d}.jpg")
        write_image(frames / files[-1], np.full((H, W, 3), 60 + 10 * k, np.uint8))
        write_image(masks / f"{k:05d}.png", m, rgb=False)
    n = len(ids)
    meta = {"video": str(root / "clip.mp4"), "source": {"width": W, "height": H, "fps": 25.0}, "count": n,
            "kept": list(range(0, 2 * n, 2)), "files": files, "output_fps": "25/2", "stride": 2,  # as extract_frames writes it
            "times_s": [round(k / 12.5, 6) for k in range(n)]}  # fmt: skip
    tracks = {"target": "rabbit", "frames_file": "tracks.jsonl", "frame_count": n}  # as propagate writes them
    (root / "meta.json").write_text(json.dumps(meta))
    (root / "tracks.json").write_text(json.dumps(tracks))
    (root / "tracks.jsonl").write_text(
        "".join(json.dumps({"frame": k, "file": f"{k:05d}.png"}) + "\n" for k in range(n))
    )
    return frames, root / "meta.json", masks, root / "tracks.json", ids


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def fill(points: np.ndarray) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    cv2.fillPoly(m, [np.round(points).astype(np.int32)], 1)
    return m.astype(bool)


SETTINGS = Settings.parse({"segment": {"export": {"formats": ["yolo", "cvat", "label_studio"]}}})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    frames, meta, masks, tracks, ids = exact_clip(root)
    written = export_annotations(SETTINGS, frames, meta, masks, tracks, root / "export")
    assert written == ["yolo/", "cvat.xml", "label_studio.json"]
    return root / "export", ids


def test_yolo_reads_back_through_supervision(exported):
    import supervision as sv

    out, ids = exported
    ds = sv.DetectionDataset.from_yolo(
        str(out / "yolo/images"), str(out / "yolo/labels"), str(out / "yolo/data.yaml"), force_masks=True
    )
    assert ds.classes == ["rabbit"] and len(ds) == N
    for path, image, det in ds:
        k = int(Path(path).stem)
        assert image.shape[:2] == (H, W)  # the link reaches the kept frame
        truth = [ids[k] == i for i in np.unique(ids[k]) if i]
        assert len(det) == len(truth) and set(det.class_id) == {0}
        for t in truth:  # YOLO has no ids: each true mask has its polygon among the lines
            assert max(iou(t, m) for m in det.mask) >= 0.95


def test_cvat_video_tracks_with_outside_flags(exported):
    out, ids = exported
    root = ElementTree.parse(out / "cvat.xml").getroot()
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    task = root.find("meta/task")
    assert (task.findtext("size"), task.findtext("mode"), task.findtext("stop_frame")) == (
        str(N),
        "interpolation",
        str(N - 1),
    )
    assert [lab.findtext("name") for lab in task.find("labels")] == ["rabbit"]
    assert (task.findtext("original_size/width"), task.findtext("original_size/height")) == (str(W), str(H))
    tracks = {int(t.get("id")): t for t in root.findall("track")}
    assert sorted(tracks) == [0, 1] and {t.get("label") for t in tracks.values()} == {"rabbit"}
    for track_id, track in tracks.items():
        instance = track_id + 1
        shapes = {int(p.get("frame")): p for p in track.findall("polygon")}
        for k in range(N):
            seen = (ids[k] == instance).any()
            if seen:
                p = shapes[k]
                assert p.get("outside") == "0" and p.get("keyframe") == "1"
                points = np.array([[float(v) for v in xy.split(",")] for xy in p.get("points").split(";")])
                assert iou(fill(points), ids[k] == instance) >= 0.95, (instance, k)
            elif k == GONE[2][0]:
                assert shapes[k].get("outside") == "1"  # it left here
            else:
                assert k not in shapes  # still out of view: nothing until it is back
    assert [int(p.get("frame")) for p in tracks[1].findall("polygon") if p.get("outside") == "1"] == [3]


def test_label_studio_video_boxes_and_gaps(exported):
    out, ids = exported
    (task,) = json.loads((out / "label_studio.json").read_text())
    assert task["data"]["video"].endswith("clip.mp4")
    regions = {r["meta"]["track_id"]: r for r in task["predictions"][0]["result"]}
    assert sorted(regions) == [1, 2]
    for instance, r in regions.items():
        assert (r["type"], r["from_name"], r["to_name"], r["value"]["labels"]) == (
            "videorectangle",
            "box",
            "video",
            ["rabbit"],
        )
        assert r["value"]["framesCount"] == N
        by_frame = {s["frame"]: s for s in r["value"]["sequence"]}
        for k in range(N):
            mask = ids[k] == instance
            if not mask.any():
                assert k + 1 not in by_frame
                continue
            s = by_frame[k + 1]  # Label Studio counts frames from 1
            x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
            assert np.allclose(
                [s["x"], s["y"], s["width"], s["height"]], [100 * x / W, 100 * y / H, 100 * w / W, 100 * h / H]
            )
            assert s["time"] == pytest.approx(k / 12.5, abs=1e-6)
    enabled = {s["frame"]: s["enabled"] for s in regions[2]["value"]["sequence"]}
    assert enabled[GONE[2][0]] is False  # the last frame before the gap: no interpolation across it
    assert all(enabled[f] for f in enabled if f != GONE[2][0])


def test_no_format_or_a_broken_input_writes_nothing(tmp_path):
    frames, meta, masks, tracks, _ = exact_clip(tmp_path)
    none = Settings.parse({"segment": {"export": {"formats": []}}})
    with pytest.raises(UserError, match="segment.export.formats"):
        export_annotations(none, frames, meta, masks, tracks, tmp_path / "export")
    (masks / "00004.png").unlink()
    with pytest.raises(UserError, match="00004.png.*rerun propagate"):
        export_annotations(SETTINGS, frames, meta, masks, tracks, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_the_script_runs_alone(tmp_path):
    frames, meta, masks, tracks, _ = exact_clip(tmp_path)
    cfg = [a for c in DEMO_CONFIGS for a in ("--config", str(c))]
    run_script("export_annotations", *cfg, "--frames", frames, "--meta", meta, "--masks", masks, "--tracks", tracks,
               "--out-dir", tmp_path / "export", "--formats", "cvat")  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["cvat.xml"]


# ------------------------------------------------------------------------ opened by the tools themselves


def entering_clip(root: Path):
    """An object entering from the bottom edge as a sliver (16x1 px, then 16x3, then more; id 1) and
    a disk (id 2): the frames every format must keep."""
    ids = []
    for k in range(N):
        m = np.zeros((H, W), np.uint8)
        cv2.circle(m, (30 + 6 * k, 30), 12, 2, -1)
        m[H - (1 + 2 * k) :, 70:86] = 1  # 1 row on frame 0, 3 on frame 1, ...
        ids.append(m)
    return exact_clip(root, ids)


# Ultralytics' dataset check, loader and rasteriser on a data.yaml: prints [data, labels], each label
# with its image file, shape and its polygons drawn by polygon2mask
READ_YOLO = """
import json, sys
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset, polygon2mask
yaml_path, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = check_det_dataset(yaml_path)
labels = YOLODataset(img_path=data["train"], data=data, task="segment", augment=False, imgsz=w).labels
out = [{"im_file": lab["im_file"], "shape": list(lab["shape"]),
        "drawn": [polygon2mask((h, w), [seg * [w, h]]).astype(bool).tolist() for seg in lab["segments"]]}
       for lab in labels]
print(json.dumps([{"train": str(data["train"]), "names": data["names"]}, out]))
"""


def test_yolo_opens_in_ultralytics_from_any_folder_and_as_a_moved_copy(tmp_path, monkeypatch):
    """Ultralytics' own dataset check and loader (the code ``yolo train`` runs before training) read
    the export from another working directory (data.yaml has no ``path: .``, which Ultralytics takes
    from the working directory), and, with ``yolo.copy_images``, a copy moved elsewhere after the
    frames are gone; every frame's polygons, rasterised by Ultralytics' polygon2mask, cover the id
    PNG's masks, the sliver's frame included."""
    import subprocess
    import sys

    frames, meta, masks, tracks, ids = entering_clip(tmp_path / "clip")
    linked = Settings.parse({"segment": {"export": {"formats": ["yolo"]}}})
    copied = Settings.parse({"segment": {"export": {"formats": ["yolo"], "yolo": {"copy_images": True}}}})
    export_annotations(linked, frames, meta, masks, tracks, tmp_path / "linked")
    export_annotations(copied, frames, meta, masks, tracks, tmp_path / "copied")
    shutil.copytree(tmp_path / "copied/yolo", tmp_path / "moved/yolo", symlinks=True)
    shutil.rmtree(frames)  # the copy holds its own images
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    for folder in (tmp_path / "linked/yolo", tmp_path / "moved/yolo"):
        if folder.parent.name == "linked":
            shutil.copytree(tmp_path / "copied/yolo/images", frames)  # the frames the links reach
        # in a process of its own: importing Ultralytics patches PIL's Image.open for the whole process
        env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics")}  # its settings, not ~/.config
        proc = subprocess.run([sys.executable, "-c", READ_YOLO, str(folder / "data.yaml"), str(W), str(H)],
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        data, labels = json.loads(proc.stdout.splitlines()[-1])
        assert Path(data["train"]) == folder / "images" and data["names"] == {"0": "rabbit"}
        assert len(labels) == N
        for label in labels:
            k = int(Path(label["im_file"]).stem)
            assert cv2.imread(label["im_file"]) is not None and tuple(label["shape"]) == (H, W)
            drawn = [np.array(d, bool) for d in label["drawn"]]
            for instance in (1, 2):
                truth = ids[k] == instance
                best = max(drawn, key=lambda d: (d & truth).sum())
                if k == 0 and instance == 1:  # the 16x1 px sliver: its box, drawn over every pixel of it
                    assert (best & truth).sum() == truth.sum() and best.sum() <= 3 * truth.sum(), folder
                else:  # Ultralytics truncates the polygon's pixel coordinates: a few-row object loses a row
                    assert iou(best, truth) >= (0.8 if truth.sum() > 300 else 0.5), (folder, k, instance)
        shutil.rmtree(frames, ignore_errors=True)


def test_cvat_keeps_the_sliver_and_numbers_frames_for_the_task_it_names(tmp_path):
    """CVAT gets the sliver's frame too (its box as the polygon), and frame numbers that fit the task
    the file names: the kept frames' images (0, 1, 2, ...), or with ``cvat.frames: source`` the
    source video with frame step = the stride (CVAT's frame = start + task frame x step)."""
    frames, meta, masks, tracks, ids = entering_clip(tmp_path / "clip")
    for numbering, number in (("kept", lambda k: k), ("source", lambda k: 2 * k)):
        s = Settings.parse({"segment": {"export": {"formats": ["cvat"], "cvat": {"frames": numbering}}}})
        export_annotations(s, frames, meta, masks, tracks, tmp_path / numbering)
        text = (tmp_path / numbering / "cvat.xml").read_text()
        root = ElementTree.fromstring(text.encode())
        task = root.find("meta/task")
        if numbering == "source":
            assert "clip.mp4 with start frame 0 and frame step 2" in text
            assert (task.findtext("frame_filter"), task.findtext("stop_frame")) == ("step=2", str(2 * (N - 1)))
        else:
            assert "the 8 kept frames' images" in text and task.findtext("frame_filter") is None
        (sliver,) = [t for t in root.findall("track") if t.get("id") == "0"]
        shapes = {int(p.get("frame")): p for p in sliver.findall("polygon")}
        assert sorted(shapes) == [number(k) for k in range(N)]
        points = np.array([[float(v) for v in xy.split(",")] for xy in shapes[number(0)].get("points").split(";")])
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
        assert (x0, y0, x1, y1) == (70, H - 1, 86, H)  # the 16x1 px sliver's box


def test_label_studio_config_places_each_box_at_its_second(exported):
    """label_studio.xml, the labeling config written beside the task, has the names the regions use
    and the kept frames' rate: Label Studio shows frame n at (n - 1) / framerate seconds, which must
    be the kept frame's time in the source video (stride 2 of 25 fps: 12.5 frames a second)."""
    out, _ = exported
    view = ElementTree.parse(out / "label_studio.xml").getroot()
    video, rect = view.find("Video"), view.find("VideoRectangle")
    assert (video.get("name"), video.get("value"), rect.get("name"), rect.get("toName")) == (
        "video",
        "$video",
        "box",
        "video",
    )
    assert [lab.get("value") for lab in view.find("Labels")] == ["rabbit"]
    framerate = float(video.get("framerate"))
    (task,) = json.loads((out / "label_studio.json").read_text())
    meta = json.loads((out.parent / "meta.json").read_text())
    for region in task["predictions"][0]["result"]:
        assert (region["from_name"], region["to_name"]) == (rect.get("name"), video.get("name"))
        for box in region["value"]["sequence"]:
            assert (box["frame"] - 1) / framerate == pytest.approx(meta["times_s"][box["frame"] - 1], abs=1e-6)


# ------------------------------------------------------------------ datumaro, in an environment of its own

DATUMARO_REQUIREMENTS = Path(__file__).with_name("datumaro-requirements.txt")
OFFLINE = (
    "from versions: none",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
)


def datumaro_python(cache: Path) -> Path:
    """The Python of a virtual environment with tests/datumaro-requirements.txt (datumaro's pins conflict
    with the pipeline's), built once into ``cache`` under a name that changes with the file; skips,
    saying why, where it cannot be built (no package index reachable), except under CI, which must run
    this test."""
    import fcntl
    import hashlib
    import subprocess
    import sys

    venv = cache / f"datumaro-{hashlib.sha256(DATUMARO_REQUIREMENTS.read_bytes()).hexdigest()[:12]}"
    python, done = venv / "bin" / "python", venv / "installed"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV")}
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time: another pytest may be building it
        if done.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)  # an interrupted build
        why = ""
        cmd = [sys.executable, "-m", "venv", str(venv)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode:
            why = f"python -m venv failed: {proc.stderr.strip()[-300:]}"
        else:
            cmd = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
                   str(DATUMARO_REQUIREMENTS)]  # fmt: skip
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
            out = proc.stdout + proc.stderr
            if proc.returncode and any(sign in out for sign in OFFLINE):
                why = f"pip could not reach a package index: {out.strip().splitlines()[-1][-300:]}"
            elif proc.returncode:
                raise AssertionError(f"pip install -r {DATUMARO_REQUIREMENTS.name} failed:\n{out[-3000:]}")
        if why:
            shutil.rmtree(venv, ignore_errors=True)
            if os.environ.get("CI"):  # CI has the network: a CI run without datumaro would hide this test
                raise AssertionError(f"no environment for datumaro: {why}")
            pytest.skip(f"no environment for datumaro: {why}")
        done.write_text(DATUMARO_REQUIREMENTS.read_text())
    return python


@pytest.fixture(scope="module")
def datumaro(request, tmp_path_factory) -> Path:
    """datumaro's Python, its environment kept in pytest's cache folder (.pytest_cache/d/, which a
    fresh clone creates; ``pytest --cache-clear`` rebuilds it), or in a temp folder without one."""
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    cache = cache.mkdir("datumaro") if cache else tmp_path_factory.mktemp("datumaro")
    return datumaro_python(Path(cache))


# datumaro's own importers on the export: prints what it read, for the test to compare with the id PNGs
READ_DATUMARO = """
import json, sys
import numpy as np
import datumaro as dm
coco, cvat = sys.argv[1], sys.argv[2]
ds = dm.Dataset.import_from(coco, "coco_instances")
names = [label.name for label in ds.categories()[dm.AnnotationType.label]]
items = {}
for item in ds:
    image = item.media.data  # the image file, through datumaro's own path checks
    items[item.id] = {"subset": item.subset, "shape": list(image.shape), "mean": float(image.mean()), "annotations": [
        {"type": a.type.name, "label": names[a.label], "group": a.group, "attributes": a.attributes,
         "box": [float(v) for v in a.get_bbox()],
         "pixels": np.flatnonzero(a.image).tolist() if a.type == dm.AnnotationType.mask else None}
        for a in item.annotations]}
tracks = {}
for item in dm.Dataset.import_from(cvat, "cvat"):
    for a in item.annotations:
        tracks.setdefault(a.attributes["track_id"], []).append(
            {"frame": item.attributes["frame"], "outside": a.attributes["outside"], "points": [float(v) for v in a.points]})
print(json.dumps({"detected": dm.Dataset.detect(coco), "items": items, "cvat": tracks}))
"""


def test_coco_opens_in_datumaro_with_its_track_ids(tmp_path, datumaro):
    """datumaro itself (1.13, in its own environment) reads ``export/coco`` as it is: detected as
    ``coco_instances``; an item per kept frame, an empty one included, whose image loads though the
    frames (here links to a frame folder, as for DAVIS) and the folder they name are deleted (the
    export holds hard links to the files, not to the links); each instance's mask pixel for pixel
    as the id PNG has it, its box, the target as label and the PNG's value as ``track_id``, mask and
    box one group. And ``cvat.xml`` through datumaro's CVAT importer: a track per instance (id - 1),
    its polygons, ``outside`` on the frame it left."""
    import subprocess

    ids = exact_clip(tmp_path / "truth")[-1]
    ids[-1] = np.zeros_like(ids[-1])  # a frame with no object: an item all the same
    frames, meta, masks, tracks, _ = exact_clip(tmp_path / "clip", ids)
    shutil.move(frames, tmp_path / "folder")  # the clip's frames as links into a frame folder
    frames.mkdir()
    for f in sorted((tmp_path / "folder").iterdir()):
        os.symlink(f, frames / f.name)
    s = Settings.parse({"segment": {"export": {"formats": ["cvat", "coco"]}}})
    assert export_annotations(s, frames, meta, masks, tracks, tmp_path / "export") == ["cvat.xml", "coco/"]
    for k in range(N):  # the folder's file itself, not a second copy, nor the frame's link
        image = tmp_path / f"export/coco/images/default/{k:05d}.jpg"
        assert not image.is_symlink() and image.stat().st_ino == (tmp_path / f"folder/{k:05d}.jpg").stat().st_ino
    shutil.rmtree(frames)
    shutil.rmtree(tmp_path / "folder")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(datumaro), "-c", READ_DATUMARO, "coco", "cvat.xml"], cwd=tmp_path / "export", env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    read = json.loads(proc.stdout.splitlines()[-1])
    assert read["detected"] == "coco_instances"
    items = read["items"]
    assert sorted(items) == [f"{k:05d}" for k in range(N)]
    for k in range(N):
        item = items[f"{k:05d}"]
        assert item["subset"] == "default" and item["shape"] == [H, W, 3]
        assert item["mean"] == pytest.approx(60 + 10 * k, abs=2)  # this frame's image, not another's
        truth = {int(i): ids[k] == i for i in np.unique(ids[k]) if i}
        masks_read = {a["attributes"]["track_id"]: a for a in item["annotations"] if a["type"] == "mask"}
        boxes_read = {a["attributes"]["track_id"]: a for a in item["annotations"] if a["type"] == "bbox"}
        assert sorted(masks_read) == sorted(boxes_read) == sorted(truth), k
        for i, mask in truth.items():
            got = masks_read[i]
            assert got["label"] == "rabbit" and got["attributes"]["keyframe"] is True
            assert got["pixels"] == np.flatnonzero(mask).tolist(), (k, i)  # pixel for pixel
            x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
            assert boxes_read[i]["box"] == got["box"] == [x, y, w, h] and boxes_read[i]["group"] == got["group"]
    tracks_read = {int(t): shapes for t, shapes in read["cvat"].items()}
    assert sorted(tracks_read) == [0, 1]
    for track_id, shapes in tracks_read.items():
        instance = track_id + 1
        by_frame = {s["frame"]: s for s in shapes}
        seen = [k for k in range(N) if (ids[k] == instance).any()]
        left = [k for k in range(1, N) if k - 1 in seen and k not in seen]  # 3 and 7 for instance 2, 7 for 1
        assert sorted(k for k, s in by_frame.items() if not s["outside"]) == seen
        assert sorted(k for k, s in by_frame.items() if s["outside"]) == left
        for k in seen:
            assert iou(fill(np.reshape(by_frame[k]["points"], (-1, 2))), ids[k] == instance) >= 0.95, (instance, k)


def test_coco_images_are_copies_where_the_file_system_refuses_links(tmp_path, monkeypatch):
    """Where a hard link fails (the frames on another device), each image is a copy of its frame."""
    import errno

    from vispipe.segment.files.formats import coco

    def refuse(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(coco.os, "link", refuse)
    frames, meta, masks, tracks, _ = exact_clip(tmp_path)
    s = Settings.parse({"segment": {"export": {"formats": ["coco"]}}})
    export_annotations(s, frames, meta, masks, tracks, tmp_path / "export")
    images = sorted((tmp_path / "export/coco/images/default").iterdir())
    assert [p.name for p in images] == [f"{k:05d}.jpg" for k in range(N)]
    for p in images:
        assert not p.is_symlink() and p.stat().st_nlink == 1 and p.read_bytes() == (frames / p.name).read_bytes()


# CVAT runs as a Django server in Docker, not in CI: our file is compared with one that CVAT wrote
CVAT_FIXTURE = Path(__file__).parent / "fixtures" / "cvat_for_video" / "annotations.xml"
# CVAT writes a track's polygons, polylines and points alike (frame, outside, occluded, keyframe,
# points, z_order); the fixture has no polygon track, so ours are compared with its polylines and points
SAME_AS = {"polygon": ("polyline", "points")}


def xml_layout(root) -> dict[str, dict]:
    """Per element path (``annotations/track/box``): the sequences of child tags its elements have
    (repeats folded), the tuples of attribute names in their order, and each attribute's values."""
    out: dict[str, dict] = {}

    def walk(element, path):
        entry = out.setdefault(path, {"children": set(), "attributes": set(), "values": {}})
        entry["attributes"].add(tuple(element.attrib))
        for name, value in element.attrib.items():
            entry["values"].setdefault(name, set()).add(value)
        tags = [child.tag for child in element]
        entry["children"].add(tuple(t for i, t in enumerate(tags) if i == 0 or tags[i - 1] != t))
        for child in element:
            walk(child, f"{path}/{child.tag}")

    walk(root, root.tag)
    return out


def as_cvat_writes(path: str) -> list[str]:
    """The paths in CVAT's file that ``path`` of ours corresponds to."""
    paths = [""]
    for tag in path.split("/"):
        paths = [f"{p}/{t}".lstrip("/") for p in paths for t in SAME_AS.get(tag, (tag,))]
    return paths


def is_subsequence(ours, theirs) -> bool:
    """Whether CVAT's child tags ``theirs`` hold ours, in the same order."""
    rest = iter(theirs)
    return all(any(tag in SAME_AS.get(mine, (mine,)) for tag in rest) for mine in ours)


def decimals(points: str) -> set[int]:
    """The decimal places of the numbers in a ``x,y;x,y`` points attribute (asserting that layout)."""
    pairs = [pair.split(",") for pair in points.split(";")]
    assert all(len(pair) == 2 and all(re.fullmatch(r"-?\d+(\.\d+)?", v) for v in pair) for pair in pairs), points
    return {len(v.partition(".")[2]) for pair in pairs for v in pair}


def test_cvat_file_is_laid_out_as_cvat_writes_it(tmp_path):
    """Our cvat.xml, in both frame numberings, against an annotations.xml that CVAT itself dumped
    (tests/fixtures/cvat_for_video): the same version; each element where CVAT puts one, its children
    in CVAT's order (some of them: CVAT adds its ids, dates, owner and segments) and its attributes
    the names CVAT writes, in CVAT's order (a track's id, label, source; a shape's frame, outside,
    occluded, keyframe, points, z_order); the values CVAT writes as digits (flags, frames, ids, sizes)
    as digits, the flags among the values CVAT gives them, points as ``x,y;x,y`` with CVAT's decimal
    places; track ids counted from 0 and each track's label one of the task's, as in CVAT's file."""
    cvat_root = ElementTree.parse(CVAT_FIXTURE).getroot()
    cvat = xml_layout(cvat_root)
    values = {}  # attribute name -> every value CVAT's file gives it
    for entry in cvat.values():
        for name, seen in entry["values"].items():
            values.setdefault(name, set()).update(seen)
    as_digits = {name for name, seen in values.items() if all(v.isdigit() for v in seen)}
    assert {"frame", "outside", "occluded", "keyframe", "z_order", "id"} <= as_digits
    cvat_task = cvat_root.find("meta/task")
    texts = {}  # tag -> its texts in CVAT's task
    for e in cvat_task.iter():
        texts.setdefault(e.tag, set()).add((e.text or "").strip())
    digit_texts = {tag for tag, seen in texts.items() if all(t.isdigit() for t in seen)}
    assert {"size", "start_frame", "stop_frame", "width", "height"} <= digit_texts
    cvat_shapes = [e for t in cvat_root.iter("track") for e in t if "points" in e.attrib]
    places = set().union(*(decimals(e.get("points")) for e in cvat_shapes))

    def tracks_and_labels(root):
        ids = [int(t.get("id")) for t in root.findall("track")]
        names = {label.findtext("name") for label in root.iterfind("meta/task/labels/label")}
        return ids == list(range(len(ids))), {t.get("label") for t in root.findall("track")} <= names

    assert tracks_and_labels(cvat_root) == (True, True)

    frames, meta, masks, tracks, _ = entering_clip(tmp_path / "clip")
    for numbering in ("kept", "source"):
        s = Settings.parse({"segment": {"export": {"formats": ["cvat"], "cvat": {"frames": numbering}}}})
        export_annotations(s, frames, meta, masks, tracks, tmp_path / numbering)
        root = ElementTree.parse(tmp_path / numbering / "cvat.xml").getroot()
        assert root.findtext("version") == cvat_root.findtext("version")
        for path, entry in xml_layout(root).items():
            theirs = [cvat[p] for p in as_cvat_writes(path) if p in cvat]
            assert theirs, f"CVAT writes no {path}"
            for children in entry["children"]:
                assert any(is_subsequence(children, c) for t in theirs for c in t["children"]), (path, children)
            for names in entry["attributes"]:
                assert any(names in t["attributes"] for t in theirs), (path, names, [t["attributes"] for t in theirs])
            for name, seen in entry["values"].items():
                assert name not in as_digits or all(v.isdigit() for v in seen), (path, name, seen)
                if name in ("outside", "occluded", "keyframe", "z_order"):
                    assert seen <= values[name], (path, name, seen, values[name])
        shapes = [e for t in root.iter("track") for e in t]
        assert shapes and all(decimals(e.get("points")) <= places for e in shapes), places
        task = root.find("meta/task")
        assert all(e.text.isdigit() for e in task.iter() if e.tag in digit_texts), numbering
        assert task.findtext("mode") == cvat_task.findtext("mode")
        if numbering == "source":  # CVAT's frame filter: step=<n>
            key, _, step = task.findtext("frame_filter").partition("=")
            assert key == cvat_task.findtext("frame_filter").partition("=")[0] and step.isdigit()
        assert tracks_and_labels(root) == (True, True)


def test_label_studio_validates_the_task_against_its_config(exported):
    """Label Studio's own validation, from label-studio-sdk (the version the Label Studio 1.23 server
    pins, whose import runs ``LabelInterface(project's config).validate_prediction(prediction)`` on
    every task it is given): label_studio.xml passes its config checks (schema, unique names, toName,
    tag attributes), the task has the data the config asks for, and each prediction has no error. The
    SDK does not check a videorectangle's labels (its <VideoRectangle> has none: they are the <Labels>
    tag's), so they are checked against the labels it reads from the config. And it is no rubber
    stamp: a region naming a tag the config lacks, or without ``framesCount``, is refused."""
    import copy

    from label_studio_sdk.label_interface import LabelInterface

    out, _ = exported
    config = LabelInterface((out / "label_studio.xml").read_text())
    config.validate()  # raises on an invalid config
    labels = {value for control in config.controls if control.tag == "Labels" for value in control.labels}
    (task,) = json.loads((out / "label_studio.json").read_text())
    # its validate_task checks the data only (given predictions, it calls validate_prediction without them)
    assert config.validate_task({"data": task["data"]})
    assert not config.validate_task({"data": {}})
    (prediction,) = task["predictions"]
    assert config.validate_prediction(prediction, return_errors=True) == []
    regions = prediction["result"]
    assert len(regions) == 2 and all(set(r["value"]["labels"]) <= labels for r in regions)

    def broken(change) -> list[str]:
        bad = copy.deepcopy(prediction)
        change(bad["result"][0])
        return config.validate_prediction(bad, return_errors=True)

    assert broken(lambda r: r.update(from_name="rect"))
    assert broken(lambda r: r.update(to_name="image"))
    assert broken(lambda r: r["value"].pop("framesCount"))
