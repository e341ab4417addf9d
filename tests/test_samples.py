"""Sample sheets and folder patterns (segment.samples, segment.globs): rows and matches become videos
and images as if written in the config; every bad row is an error naming the sheet, the line and the
column; editing one row reruns that video alone."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import DEMO_VIDEO, assert_nothing_to_do, job_counts, snakemake
from vispipe.config import ConfigError, load, validate
from vispipe.segment.layout import VIDEO_KEY
from vispipe.segment.samples import key_of, with_samples

TARGETS = {"rabbit": {"prompt": "rabbit"}, "bird": {"prompt": "a bird"}}


def seg(**extra) -> dict:
    return {"targets": TARGETS, "videos": {}, "images": {}, **extra}


def files(root: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
        out.append(p)
    return out


def sheet(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Paths in sheets and patterns are relative to the working directory, as in Snakemake."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_tsv_sheet_becomes_videos_beside_the_configs_own(in_tmp):
    files(in_tmp, "clips/a.mp4", "clips/b.mov", "gt/a/00000.png")
    tsv = sheet(in_tmp / "videos.tsv", "# my clips\nid\tpath\ttargets\tground_truth\n"
                "a\tclips/a.mp4\trabbit, bird\tgt/a\n\nb\tclips/b.mov\tbird\t\n")  # fmt: skip
    out = with_samples(seg(videos={"demo": {"path": "x.mp4", "targets": ["rabbit"]}},
                           samples={"videos": tsv.name, "images": None}))  # fmt: skip
    assert out["videos"] == {
        "demo": {"path": "x.mp4", "targets": ["rabbit"]},
        "a": {"path": "clips/a.mp4", "targets": ["rabbit", "bird"], "ground_truth": "gt/a"},
        "b": {"path": "clips/b.mov", "targets": ["bird"]},
    }
    validate(out["videos"], "segment.videos")  # what the rules receive is what the schema allows


def test_a_csv_sheet_of_images(in_tmp):
    files(in_tmp, "img/one.jpg")
    csv = sheet(in_tmp / "images.csv", 'id,path,targets\none,img/one.jpg,"rabbit bird"\n')
    out = with_samples(seg(samples={"videos": None, "images": csv.name}))
    assert out["images"] == {"one": {"path": "img/one.jpg", "targets": ["rabbit", "bird"]}}


BAD_ROWS = [
    ("id\tpath\ttargets\nclip1\tmissing.mp4\trabbit\n", r"videos.tsv, line 2, column path: the file missing.mp4 does not exist"),
    ("id\tpath\ttargets\nclip1\ta.mp4\trabbit\nclip1\tb.mp4\tbird\n",
     r"videos.tsv, line 3, column id: id 'clip1' is also on line 2"),
    ("id\tpath\ttargets\n\nclip1\ta.mp4\tcat\n",
     r"videos.tsv, line 3, column targets: target 'cat' is not a key of segment.targets \(known: rabbit, bird\)"),
    ("id\tpath\ttarget\nclip1\ta.mp4\trabbit\n", r"videos.tsv, line 1: unknown column 'target' \(a videos sheet has"),
    ("id\tpath\nclip1\ta.mp4\n", r"videos.tsv, line 1: no column 'targets'"),
    ("id\tpath\ttargets\nclip1\ta.mp4\n", r"videos.tsv, line 2: 2 cells for 3 columns \(tabs separate the cells\)"),
    ("id\tpath\ttargets\nmy clip\ta.mp4\trabbit\n", r"videos.tsv, line 2, column id: id 'my clip' cannot name"),
    ("id\tpath\ttargets\nimages\ta.mp4\trabbit\n", r"videos.tsv, line 2, column id: id 'images' cannot name"),
    ("id\tpath\ttargets\nclip1\ta.mp4\t\n", r"videos.tsv, line 2, column targets: no targets"),
    ("id\tpath\ttargets\tground_truth\nclip1\ta.mp4\trabbit\tgt/none\n",
     r"videos.tsv, line 2, column ground_truth: the ground-truth folder gt/none does not exist"),
    ("id\tpath\ttargets\ndemo\ta.mp4\trabbit\n",
     r"videos.tsv, line 2: id 'demo' is already used by config key segment.videos.demo"),
]  # fmt: skip


@pytest.mark.parametrize("text, message", BAD_ROWS, ids=[m.split(": ", 1)[1][:40] for _, m in BAD_ROWS])
def test_a_bad_row_names_the_sheet_the_line_and_the_column(in_tmp, text, message):
    files(in_tmp, "a.mp4", "b.mp4")
    tsv = sheet(in_tmp / "videos.tsv", text)
    cfg = seg(videos={"demo": {"path": "a.mp4", "targets": ["rabbit"]}}, samples={"videos": tsv.name})
    with pytest.raises(ConfigError, match=message):
        with_samples(cfg)


def test_a_sheet_that_is_not_there_or_not_tsv_nor_csv(in_tmp):
    with pytest.raises(ConfigError, match=r"segment.samples.videos: the sample sheet nope.tsv does not exist"):
        with_samples(seg(samples={"videos": "nope.tsv"}))
    sheet(in_tmp / "videos.xlsx", "")
    with pytest.raises(ConfigError, match=r"must end in .tsv \(tabs\) or .csv \(commas\)"):
        with_samples(seg(samples={"videos": "videos.xlsx"}))


def test_a_glob_keys_files_by_their_path_below_its_fixed_folder(in_tmp):
    files(in_tmp, "data/clips/cam1/a.mp4", "data/clips/cam2/a.mp4", "data/clips/b c.mp4", "data/clips/notes.txt")
    spec = {"pattern": "data/clips/**/*.mp4", "targets": ["rabbit"]}
    out = with_samples(seg(globs={"videos": [spec]}))
    assert out["videos"] == {
        "b_c": {"path": "data/clips/b c.mp4", "targets": ["rabbit"]},
        "cam1__a": {"path": "data/clips/cam1/a.mp4", "targets": ["rabbit"]},
        "cam2__a": {"path": "data/clips/cam2/a.mp4", "targets": ["rabbit"]},
    }
    # adding files keeps every key that was there (keys come from paths, not from positions)
    files(in_tmp, "data/clips/aaa.mp4", "data/clips/cam1/0.mp4")
    again = with_samples(seg(globs={"videos": [spec]}))
    assert {k: v for k, v in again["videos"].items() if k in out["videos"]} == out["videos"]
    assert set(again["videos"]) - set(out["videos"]) == {"aaa", "cam1__0"}
    assert key_of(Path("x/y/z.tar.mp4"), Path("x")) == "y__z_tar"


def test_a_glob_error_names_the_key_and_both_files(in_tmp):
    files(in_tmp, "clips/a b.mp4", "clips/a_b.mp4")
    with pytest.raises(ConfigError, match=r"segment.globs.videos\[0\]: clips/a b.mp4 and clips/a_b.mp4 would both get"):
        with_samples(seg(globs={"videos": [{"pattern": "clips/*.mp4", "targets": ["rabbit"]}]}))
    with pytest.raises(ConfigError, match=r"segment.globs.images\[0\].pattern: 'pics/\*.jpg' matches no file"):
        with_samples(seg(globs={"images": [{"pattern": "pics/*.jpg", "targets": ["rabbit"]}]}))
    with pytest.raises(ConfigError, match=r"segment.globs.videos\[1\].targets: target 'cat' is not a key"):
        with_samples(seg(globs={"videos": [{"pattern": "clips/a_b.mp4", "targets": ["rabbit"]},
                                                   {"pattern": "clips/a?b.mp4", "targets": ["cat"]}]}))  # fmt: skip


def test_a_sheet_row_and_a_glob_match_with_one_id_is_an_error_naming_both(in_tmp):
    files(in_tmp, "clips/a.mp4")
    tsv = sheet(in_tmp / "videos.tsv", "id\tpath\ttargets\na\tclips/a.mp4\trabbit\n")
    cfg = seg(samples={"videos": tsv.name}, globs={"videos": [{"pattern": "clips/*.mp4", "targets": ["bird"]}]})
    with pytest.raises(ConfigError, match=r"\(clips/a.mp4\): id 'a' is already used by videos.tsv, line 2"):
        with_samples(cfg)


def test_the_shipped_config_holds_empty_sheets_and_patterns():
    cfg = load(["config/config.yaml"])
    validate(cfg)
    assert with_samples(cfg["segment"])["videos"] == cfg["segment"]["videos"]


# ------------------------------------------------------------------------------- through Snakemake


def test_editing_one_row_reruns_that_video_alone(workflow_dir):
    """Three videos from a sheet; their frames extracted; then one row's path changes and another row
    is added: a dry run plans frames for those two videos and nothing for the third."""
    wf = workflow_dir
    clips = wf / "clips"
    clips.mkdir()
    for name in ("v1", "v2", "v3", "v4"):
        shutil.copy(DEMO_VIDEO, clips / f"{name}.mp4")
    rows = ["id\tpath\ttargets", "v1\tclips/v1.mp4\trabbit", "v2\tclips/v2.mp4\trabbit", "v3\tclips/v3.mp4\trabbit"]
    (wf / "videos.tsv").write_text("\n".join(rows) + "\n")
    extra = {"segment": {"samples": {"videos": "videos.tsv"}, "frames": {"max_seconds": 0.5, "stride": 5}}}
    (wf / "sheet.yaml").write_text(yaml.safe_dump(extra))
    args = ["--configfile", "config/demo.yaml", "sheet.yaml", "--"]
    meta = [f"results/segment/{v}/meta.json" for v in ("v1", "v2", "v3")]

    plan = snakemake(wf, "-n", *args, "all")  # the sheet's videos are part of the whole run
    assert job_counts(plan.stdout)["extract_frames"] == 4, plan.stdout[-3000:]  # the config's demo video + 3 rows
    snakemake(wf, *args, *meta)
    assert_nothing_to_do(snakemake(wf, "-n", *args, *meta))

    rows[2] = "v2\tclips/v4.mp4\trabbit"  # v2 now points at another file
    rows.append("v5\tclips/v4.mp4\trabbit")  # and a new row
    (wf / "videos.tsv").write_text("\n".join(rows) + "\n")
    out = snakemake(wf, "-n", *args, *meta, "results/segment/v5/meta.json").stdout
    planned = re.findall(r"rule extract_frames:\n(?:\s+\S.*\n)*?\s+wildcards: video=(\w+)", out)
    assert sorted(planned) == ["v2", "v5"], out[-3000:]


def test_a_bad_sheet_stops_the_dry_run_naming_the_line_and_writes_nothing(workflow_dir):
    wf = workflow_dir
    (wf / "videos.tsv").write_text("id\tpath\ttargets\nv1\tclips/none.mp4\trabbit\n")
    (wf / "sheet.json").write_text(json.dumps({"segment": {"samples": {"videos": "videos.tsv"}}}))
    proc = snakemake(wf, "-n", "--configfile", "config/demo.yaml", "sheet.json", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "videos.tsv, line 2, column path: the file clips/none.mp4 does not exist" in out, out[-3000:]
    assert "Traceback" not in out
    assert not (wf / "results").exists()


def test_outputs_of_an_unknown_key_are_an_error_naming_it(workflow_dir):
    """The video and image wildcards take any key (a list of 10,000 made dry runs quadratic); asking
    for a key that no entry, row or match has fails in the input function, naming it."""
    proc = snakemake(workflow_dir, "-n", "--configfile", "config/demo.yaml", "--",
                     "results/segment/nokey/rabbit/overlay.mp4", check=False)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "outputs of 'nokey' were asked for, but it is not one of segment.videos" in out, out[-3000:]
    assert re.fullmatch(VIDEO_KEY, "cam1__a") and not re.fullmatch(VIDEO_KEY + "/x", "images/x")
