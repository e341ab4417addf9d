"""Every result records which run made it: code version, software, device and config hash."""

import hashlib
import json
import platform
import shutil
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest

import vispipe
from conftest import DEMO_CONFIGS, DEMO_VIDEO, ROOT, run_script
from vispipe import provenance as prov_mod
from vispipe.classify.layout import EVAL_BLOCKS, EVAL_OUTPUTS, train_blocks, train_outputs
from vispipe.config import deep_merge, load, params_json, subset
from vispipe.provenance import config_sha256, git_state, provenance
from vispipe.segment.layout import FIRST_PICTURES, INSTANCES, PICTURES, first_blocks, image_blocks, propagate_blocks

FIELDS = {"vispipe", "git_commit", "git_dirty", "python", "torch", "torchvision", "transformers", "device",
          "config_sha256"}  # fmt: skip
CFG_ARGS = [a for c in DEMO_CONFIGS for a in ("--config", str(c))]


def test_the_fields():
    cfg = load(DEMO_CONFIGS)
    p = provenance("cpu", cfg, EVAL_BLOCKS)
    assert set(p) == FIELDS
    assert p["vispipe"] == vispipe.__version__ and p["python"] == platform.python_version()
    assert p["torch"] == metadata.version("torch") and p["torchvision"] == metadata.version("torchvision")
    assert p["transformers"] == metadata.version("transformers")
    assert p["device"] == "cpu" and p["config_sha256"] == config_sha256(cfg, EVAL_BLOCKS)
    assert len(p["config_sha256"]) == 16 and int(p["config_sha256"], 16) >= 0
    json.dumps(p)  # it goes into JSON files as it is
    bare = provenance()
    assert bare["device"] is None and bare["config_sha256"] is None


def test_a_package_that_is_not_installed_is_none(monkeypatch):
    monkeypatch.setattr(prov_mod, "PACKAGES", ("torch", "no-such-package-here"))
    p = provenance()
    assert p["no-such-package-here"] is None and p["torch"] == metadata.version("torch")


def test_this_checkout_is_recorded():
    if not prov_mod.SOURCE_DIR.is_relative_to(ROOT) or shutil.which("git") is None:
        pytest.skip("vispipe is not imported from this checkout")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert provenance()["git_commit"] == head.stdout.strip()


def test_recording_imports_nothing_heavy():
    code = "import sys, vispipe.provenance as p; p.provenance(); print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------------------- git


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    r = tmp_path / "repo"
    (r / "pkg").mkdir(parents=True)
    (r / "pkg" / "__init__.py").write_text("x = 1\n")
    (r / ".gitignore").write_text("/venv/\n")
    git(r, "init", "-q")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "one")
    return r


def test_a_clean_checkout(repo):
    assert git_state(repo / "pkg") == (git(repo, "rev-parse", "HEAD"), False)


def test_a_modified_tracked_file_is_dirty_and_an_untracked_one_is_not(repo):
    (repo / "pkg" / "new.py").write_text("y = 2\n")  # untracked: results, scratch files
    assert git_state(repo / "pkg")[1] is False
    (repo / ".gitignore").write_text("/venv/\n*.tmp\n")  # tracked, outside the package: still this code's checkout
    assert git_state(repo / "pkg") == (git(repo, "rev-parse", "HEAD"), True)


def test_outside_a_checkout_there_is_no_commit(repo, tmp_path):
    (tmp_path / "plain").mkdir()
    assert git_state(tmp_path / "plain") == (None, None)
    site = repo / "venv" / "site-packages" / "pkg"  # installed into an ignored folder of some checkout
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("x = 1\n")
    assert git_state(site) == (None, None)


def test_without_git_or_when_it_hangs_there_is_no_commit(repo, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert git_state(repo / "pkg") == (None, None)
    monkeypatch.undo()

    def hang(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs.get("timeout"))

    monkeypatch.setattr(prov_mod.subprocess, "run", hang)
    assert git_state(repo / "pkg") == (None, None)
    assert provenance()["git_commit"] is None


# --------------------------------------------------------------------------------------- config hash


def edit(cfg, path, value):
    override: dict = {}
    node = override
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return deep_merge(cfg, override)


def reordered(node):
    """The same config with every mapping's keys in reverse order."""
    if isinstance(node, dict):
        return {k: reordered(node[k]) for k in reversed(list(node))}
    return node


@pytest.mark.parametrize(
    "blocks, read, unrelated",
    [
        (train_blocks("student"), "classify.student.train.epochs", "classify.teacher.train.epochs"),
        (train_blocks("teacher"), "classify.seed", "classify.eval.batch_size"),
        (EVAL_BLOCKS, "classify.eval.grid_images", "classify.student.kd.alpha"),
        (first_blocks("rabbit"), "segment.targets.rabbit.prompt", "segment.overlay.alpha"),
        (propagate_blocks("rabbit", False), "segment.flow.scale", "segment.clipseg.min_score"),
        (propagate_blocks("rabbit", False), "segment.propagate.method", "segment.sam2_video.max_cond_frames"),
        (propagate_blocks("rabbit", False, "sam2_video"), "segment.sam2_video.offload_state", "segment.flow.scale"),
        (propagate_blocks("rabbit", True), "segment.clipseg.min_score", "segment.overlay.alpha"),
        (image_blocks("rabbit"), "segment.overlay.alpha", "segment.flow.scale"),
        # a box detector reads its own block and the choice, not CLIPSeg's nor the other detector's
        (first_blocks("rabbit", "owlv2"), "segment.owlv2.score_threshold", "segment.clipseg.min_score"),
        (first_blocks("rabbit", "owlv2"), "segment.detector", "segment.grounding_dino.box_threshold"),
        (
            propagate_blocks("rabbit", True, "flow", "grounding_dino"),
            "segment.grounding_dino.text_threshold",
            "segment.owlv2.nms_iou",
        ),
        (
            propagate_blocks("rabbit", False, "flow", "grounding_dino"),
            "segment.flow.scale",
            "segment.grounding_dino.box_threshold",
        ),
    ],
)
def test_the_hash_follows_exactly_the_blocks_read(blocks, read, unrelated):
    cfg = load(DEMO_CONFIGS)
    h = config_sha256(cfg, blocks)
    assert config_sha256(edit(cfg, read, "changed"), blocks) != h
    assert config_sha256(edit(cfg, unrelated, "changed"), blocks) == h
    # the blocks alone (what a rule passes its script) hash as the whole config does: a hand run
    # and a Snakemake run of the same settings agree; key order does not matter
    assert config_sha256(subset(cfg, *blocks), blocks) == h
    assert config_sha256(reordered(cfg), reversed(blocks)) == h
    assert h == hashlib.sha256(params_json(cfg, *blocks).encode()).hexdigest()[:16]


def test_another_target_is_an_unrelated_block():
    cfg = edit(load(DEMO_CONFIGS), "segment.targets.other", {"prompt": "tree"})
    h = config_sha256(cfg, first_blocks("rabbit"))
    assert config_sha256(edit(cfg, "segment.targets.other.prompt", "bush"), first_blocks("rabbit")) == h


# ------------------------------------------------------------------------------- the scripts record it
# (and write exactly the files that vispipe.classify.layout and vispipe.segment.layout name)


def check(doc, cfg, blocks, device="cpu"):
    p = doc["provenance"]
    assert set(p) == FIELDS and p["vispipe"] == vispipe.__version__ and p["device"] == device
    assert p["config_sha256"] == config_sha256(cfg, blocks)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """32 training and 16 test images: the fewest that run every classification step."""
    from vispipe.classify.data import Split, save_split

    d = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for name, n in (("train", 32), ("test", 16)):
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        save_split(Split(images, np.arange(n) % 10, [str(i) for i in range(10)]), d / f"{name}.npz")
    return d


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_training_evaluation_and_comparison_record_it(tiny_data, tmp_path):
    fast = {"classify": {"teacher": {"train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 16}}}}
    cfg = deep_merge(load(DEMO_CONFIGS), fast)
    t = tmp_path / "teacher"
    run_script("train_teacher", *CFG_ARGS, "--config", json.dumps(fast), "--data", tiny_data, "--out-dir", t)
    assert names(t) == sorted(train_outputs("teacher"))
    trained = json.loads((t / "metrics.json").read_text())
    check(trained, cfg, train_blocks("teacher"))

    run_script("evaluate", *CFG_ARGS, "--checkpoint", t / "model.pt", "--test", tiny_data / "test.npz",
               "--train-metrics", t / "metrics.json", "--out-dir", t / "eval")  # fmt: skip
    assert names(t / "eval") == sorted(EVAL_OUTPUTS)
    evaluated = json.loads((t / "eval" / "metrics.json").read_text())
    check(evaluated, cfg, EVAL_BLOCKS)
    assert evaluated["train_provenance"] == trained["provenance"]

    student = dict(evaluated, role="student", arch="vit")
    (tmp_path / "s.json").write_text(json.dumps(student))
    run_script("compare_models", "--teacher", t / "eval" / "metrics.json", "--student", tmp_path / "s.json",
               "--md", tmp_path / "c.md", "--csv", tmp_path / "c.csv")  # fmt: skip
    md = (tmp_path / "c.md").read_text()
    commit = evaluated["provenance"]["git_commit"]
    code = f"commit {commit[:12]}" if commit else "(not a git checkout)"
    for model in ("student (vit)", "teacher (resnet)"):
        line = next(x for x in md.splitlines() if x.startswith(f"- {model}: "))
        assert code in line and "on cpu" in line
    assert md.strip().splitlines()[-1].startswith("- this comparison: ")
    import pandas as pd

    table = pd.read_csv(tmp_path / "c.csv", dtype=str, keep_default_na=False)
    assert (table["eval_vispipe"] == vispipe.__version__).all() and (table["eval_device"] == "cpu").all()
    assert (table["eval_config_sha256"] == config_sha256(cfg, EVAL_BLOCKS)).all()
    assert (table["train_config_sha256"] == config_sha256(cfg, train_blocks("teacher"))).all()
    assert (table["eval_git_commit"] == (commit or "")).all()


def test_segmentation_records_it(tiny_models, tmp_path):
    cfg, m = load(DEMO_CONFIGS), tiny_models
    models = ["--clipseg", m["clipseg"], "--sam2", m["sam2"]]
    one = {"segment": {"frames": {"max_seconds": 0.04, "stride": 1}}}  # one frame
    run_script("extract_frames", *CFG_ARGS, "--config", json.dumps(one), "--video", DEMO_VIDEO,
               "--frames", tmp_path / "frames", "--meta", tmp_path / "meta.json")  # fmt: skip
    frames = ["--frames", tmp_path / "frames", "--meta", tmp_path / "meta.json"]
    r = tmp_path / "rabbit"
    run_script("segment_first", *CFG_ARGS, *frames, "--target", "rabbit", "--out-dir", r, *models)
    assert names(r) == ["first", INSTANCES] and names(r / "first") == sorted(FIRST_PICTURES)
    check(json.loads((r / "instances.json").read_text()), cfg, first_blocks("rabbit"))
    run_script("propagate", *CFG_ARGS, *frames, "--instances", r / "instances.json", "--masks", r / "masks",
               "--tracks", r / "tracks.json", "--rle", r / "rle.json", "--sam2", m["sam2"])  # fmt: skip
    check(json.loads((r / "tracks.json").read_text()), cfg, propagate_blocks("rabbit", False))
    image = ROOT / "resources/demo/bigbuckbunny_frame.jpg"
    run_script(
        "segment_image", *CFG_ARGS, "--image", image, "--target", "rabbit", "--out-dir", tmp_path / "img", *models
    )
    assert names(tmp_path / "img") == sorted([*PICTURES, INSTANCES])
    check(json.loads((tmp_path / "img/instances.json").read_text()), cfg, image_blocks("rabbit"))
