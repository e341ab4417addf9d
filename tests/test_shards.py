"""A sharded run (vispipe/segment/shards.py): N videos per segment_shard job, with exact reruns.

The Snakemake test runs four tiny synthetic clips in two shards of two on this machine (no Slurm:
the shard job is the same wherever it runs; test_slurm.py counts the sbatch submissions), and
checks what the issue asks of many clips per job: a failed clip is retried alone and leaves its
neighbours' outputs; rerunning runs only what is missing; editing one video's entry, or one knob,
reruns exactly the steps that read it; and an unsharded run afterwards finds nothing to do.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import assert_nothing_to_do, copy_workflow, job_counts, snakemake
from vispipe.segment import shards

# --- the pieces -------------------------------------------------------------------------------


def test_split_sorts_and_chunks():
    got = shards.split(["c", "a", "e", "b", "d"], 2)
    assert got == {"0000": ["a", "b"], "0001": ["c", "d"], "0002": ["e"]}
    # a video added at the end of the order changes the last shard only
    more = shards.split(["c", "a", "e", "b", "d", "f"], 2)
    assert {k: v for k, v in more.items() if k != "0002"} == {k: v for k, v in got.items() if k != "0002"}


def test_digest_reads_its_own_videos_and_the_shared_knobs():
    seg = {"overlay": {"alpha": 0.5}, "videos": {"a": {"path": "a.mp4"}, "b": {"path": "b.mp4"}}, "images": {}}
    base = shards.digest(seg, ["a"], "code")
    other_video = {**seg, "videos": {**seg["videos"], "b": {"path": "B.mp4"}}}
    assert shards.digest(other_video, ["a"], "code") == base  # another shard's video: not this shard's
    own_video = {**seg, "videos": {**seg["videos"], "a": {"path": "A.mp4"}}}
    assert shards.digest(own_video, ["a"], "code") != base
    assert shards.digest({**seg, "overlay": {"alpha": 0.6}}, ["a"], "code") != base
    assert shards.digest(seg, ["a"], "other code") != base


@pytest.mark.parametrize(
    "given, n", [(None, 0), ({}, 0), ({"train_teacher": {"gpu": 1}}, 0), ({"segment_shard": {"clips": 20}}, 20)]
)
def test_clips_per_job(given, n):
    assert shards.clips_per_job(given) == n


@pytest.mark.parametrize("bad", [-1, "many"])
def test_clips_per_job_rejects_what_is_not_a_count(bad):
    with pytest.raises(ValueError, match="segment_shard:clips"):
        shards.clips_per_job({"segment_shard": {"clips": bad}})


# --- a sharded run ----------------------------------------------------------------------------

# config/demo.yaml's own video (bigbuckbunny) stays in the config and sorts after these keys, into a
# third shard that the test does not ask for
KEYS = ["a0", "a1", "a2", "a3"]
SHAPE, BLOB = "shape", "blob"
STAMPS = [shards.stamp("0000"), shards.stamp("0001")]  # a0 a1 | a2 a3


def _clip(path: Path, seed: int) -> None:
    from vispipe.segment.evaluation.synthetic import make_clip, save_clip

    save_clip(make_clip(6, (96, 128), seed=seed), path, path.parent / "gt" / path.stem)


def _config(wf: Path, targets: dict[str, list[str]], alpha: float = 0.5) -> Path:
    cfg = {
        "segment": {
            "device": "cpu",
            "frames": {"max_seconds": None, "stride": 1},
            "targets": {SHAPE: {"prompt": "a textured shape"}, BLOB: {"prompt": "a round blob"}},
            "videos": {k: {"path": f"clips/{k}.mp4", "targets": targets.get(k, [SHAPE])} for k in KEYS},
            "images": {},
            "overlay": {"alpha": alpha},
        }
    }
    path = wf / "config" / "shards_test.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run(wf: Path, *extra: str, check: bool = True):
    return snakemake(
        wf, *STAMPS, "--configfile", "config/demo.yaml", "config/shards_test.yaml",
        "--set-resources", "segment_shard:clips=2", *extra, check=check,
    )  # fmt: skip


def _started(inner_log: Path) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job the inner Snakemake of a shard started, in order."""
    text = inner_log.read_text()
    return re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    wildcards: (.*)\n", text, flags=re.M)


def _mtimes(wf: Path, video: str) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted((wf / "results/segment" / video).rglob("*")) if p.is_file()}


def test_sharded_run_retries_alone_and_reruns_exactly(tmp_path):
    wf = copy_workflow(tmp_path / "wf")
    (wf / "clips").mkdir()
    for i, key in enumerate(KEYS):
        _clip(wf / "clips" / f"{key}.mp4", seed=i)
    good_a1 = (wf / "clips" / "a1.mp4").read_bytes()
    (wf / "clips" / "a1.mp4").write_bytes(b"not a video" * 100)  # a1 fails until it is replaced
    _config(wf, {})

    # 1. a1 fails: retried once, alone; a0, its neighbour in shard 0000, and shard 0001 are done
    first = _run(wf, "--keep-going", check=False)
    assert first.returncode != 0
    assert not (wf / STAMPS[0]).exists() and (wf / STAMPS[1]).exists()
    started = _started(wf / "logs/segment/shards/0000.snakemake.log")
    assert started.count(("extract_frames", "video=a1")) == 2, started  # the first try and its retry
    assert all(w.startswith("video=a0") for r, w in started if "a1" not in w), started
    assert sum(1 for _, w in started if w.startswith("video=a0")) == 4, started  # a0's four steps, once each
    for key in ("a0", "a2", "a3"):
        assert (wf / f"results/segment/{key}/{SHAPE}/overlay.mp4").stat().st_size > 0, key
    assert not (wf / "results/segment/a1").exists() or not list((wf / "results/segment/a1").rglob("*.mp4"))
    shard_log = (wf / "logs/segment/shards/0000.log").read_text()
    assert "not done: a1" in shard_log, shard_log
    # the shard's warm worker loaded the models once, for its steps to share
    assert "loaded clipseg, sam2" in (wf / "logs/segment/shards/0000.warm_worker.log").read_text()
    before = {key: _mtimes(wf, key) for key in KEYS if key != "a1"}

    # 2. a1 replaced and a2 given a second target: each shard reruns only what is missing or new
    (wf / "clips" / "a1.mp4").write_bytes(good_a1)
    _config(wf, {"a2": [SHAPE, BLOB]})
    _run(wf)
    inner = {s: _started(wf / f"logs/segment/shards/{s}.snakemake.log") for s in ("0000", "0001")}
    assert {w.split(",")[0] for _, w in inner["0000"]} == {"video=a1"}, inner["0000"]
    assert sorted(r for r, _ in inner["0001"]) == ["propagate", "render_overlay", "segment_first"], inner["0001"]
    assert {w for _, w in inner["0001"]} == {f"video=a2, target={BLOB}"}, inner["0001"]
    after = {key: _mtimes(wf, key) for key in before}
    for key in ("a0", "a3"):
        assert after[key] == before[key], key  # untouched
    assert {k: v for k, v in after["a2"].items() if f"/{BLOB}/" not in k} == before["a2"]
    assert (wf / f"results/segment/a2/{BLOB}/overlay.mp4").stat().st_size > 0
    assert (wf / f"results/segment/a1/{SHAPE}/overlay.mp4").stat().st_size > 0

    # 3. one knob (the overlay's alpha): both shards rerun, and in them render_overlay only
    _config(wf, {"a2": [SHAPE, BLOB]}, alpha=0.7)
    dry = _run(wf, "-n")
    assert job_counts(dry.stdout) == {"segment_shard": 2}, dry.stdout[-2000:]
    _run(wf)
    for s, videos in (("0000", 2), ("0001", 3)):  # a2 has two targets
        started = _started(wf / f"logs/segment/shards/{s}.snakemake.log")
        assert [r for r, _ in started] == ["render_overlay"] * videos, started

    # 4. the shards' inner runs kept Snakemake's own records: an unsharded run has nothing to do
    outputs = [f"results/segment/{k}/{SHAPE}/overlay.mp4" for k in KEYS] + [f"results/segment/a2/{BLOB}/tracks.json"]
    assert_nothing_to_do(snakemake(wf, *outputs, "-n", "--configfile", "config/demo.yaml", "config/shards_test.yaml"))


def test_the_run_config_is_passed_on_relative(tmp_path, monkeypatch):
    # as arguments, one per file and entry: the rule quotes each ({params.configfiles:q})
    monkeypatch.chdir(tmp_path)
    files, args = shards.passed_on([tmp_path / "config" / "demo.yaml", "/elsewhere/my run.yaml"], ["a=1", "b=x y"])
    assert files == ["config/demo.yaml", "/elsewhere/my run.yaml"]
    assert args == ["a=1", "b=x y"]
    assert shards.passed_on([], None) == ([], [])
    # the Snakefiles' configfile: lines first (the workflow's defaults among them), --configfile last
    loaded = [tmp_path / "config" / "demo.yaml", "/wf/config/config.yaml", "host.yaml"]
    assert shards.in_load_order(loaded, [tmp_path / "config" / "demo.yaml"]) == [
        "/wf/config/config.yaml",
        "host.yaml",
        tmp_path / "config" / "demo.yaml",
    ]
