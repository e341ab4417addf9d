"""The registry (vispipe/segment/registry.py): its names are the schema's, each module offers what
the steps call, and a module a config picks by name is in its step's code hash."""

from __future__ import annotations

import shutil

import pytest

from conftest import ROOT
from vispipe.codedeps import code_hash
from vispipe.config import schema, schema_keys
from vispipe.segment import registry
from vispipe.segment.layout import DEFAULT_REPOS


def segment_schema() -> dict:
    return schema()["properties"]["segment"]["properties"]


def test_the_registry_names_what_the_schema_allows():
    seg = segment_schema()
    assert set(registry.DETECTORS) == set(seg["detector"]["enum"])
    assert set(registry.TRACKERS) == set(seg["propagate"]["properties"]["method"]["enum"])
    assert set(registry.FORMATS) == set(seg["export"]["properties"]["formats"]["items"]["enum"])
    assert set(registry.MODELS) <= schema_keys("segment.models")
    # every model's block in config.yaml names its registry repo
    import yaml

    models = yaml.safe_load((ROOT / "config/config.yaml").read_text())["segment"]["models"]
    assert {kind: models[kind]["repo"] for kind in registry.MODELS} == DEFAULT_REPOS


@pytest.mark.parametrize("name", registry.DETECTORS)
def test_each_detector_module_is_its_models_family(name):
    module = registry.load(registry.DETECTORS, name)
    for attr in ("tiny", "detect", "refines", "NOTHING_FOUND"):
        assert hasattr(module, attr), (name, attr)
    assert hasattr(module, "classes") or hasattr(module, "CLASSES"), name  # a function, or an image model's names


@pytest.mark.parametrize("name", registry.TRACKERS)
def test_each_tracker_module_builds_a_stepper(name):
    module = registry.load(registry.TRACKERS, name)
    assert callable(module.build)
    model = registry.TRACKERS[name].model
    assert model is None or model in registry.MODELS


@pytest.mark.parametrize("name", registry.FORMATS)
def test_each_format_module_writes(name):
    writer = registry.load(registry.FORMATS, name).Writer
    assert all(callable(getattr(writer, verb, None)) for verb in ("add", "close", "discard")), name


CONFIG = {
    "detector": "clipseg",
    "propagate": {"method": "flow"},
    "redetect": {"every": 0},
    "export": {"formats": ["cvat"]},
}


@pytest.mark.parametrize(
    ("step", "edited", "config", "reruns"),
    [
        ("segment_first", "detect/clipseg.py", {}, True),
        ("segment_first", "detect/owlv2.py", {}, False),
        ("segment_first", "detect/owlv2.py", {"detector": "owlv2"}, True),
        ("segment_first", "detect/boxes.py", {"detector": "owlv2"}, True),  # what the box detectors share
        ("segment_first", "track/flow.py", {}, False),
        ("propagate", "track/flow.py", {}, True),
        ("propagate", "track/sam2_video.py", {}, False),
        ("propagate", "track/sam2_video.py", {"propagate": {"method": "edgetam_video"}}, True),  # its loop
        ("propagate", "models/edgetam.py", {"propagate": {"method": "edgetam_video"}}, True),  # its model
        ("propagate", "detect/clipseg.py", {}, False),
        ("propagate", "detect/clipseg.py", {"redetect": {"every": 5}}, True),  # it re-detects
        ("propagate", "files/formats/cvat.py", {}, False),
        ("propagate", "evaluation/vos.py", {}, False),
        ("propagate", "evaluation/synthetic.py", {}, False),
        ("extract_frames", "track/flow.py", {}, False),
        ("extract_frames", "detect/sam3.py", {}, False),
        ("export_annotations", "files/formats/cvat.py", {}, True),
        ("export_annotations", "files/formats/yolo.py", {}, False),
        ("render_overlay", "files/formats/cvat.py", {}, False),
        ("evaluate_segmentation", "evaluation/vos.py", {}, True),
        ("evaluate_segmentation", "track/loop.py", {}, False),
    ],
)
def test_a_steps_code_hash_covers_the_modules_it_runs_and_no_other(tmp_path, step, edited, config, reruns):
    """The rules' code param (scripts/<step>.py with registry.step_modules) before and after an edit
    to a copy of the library."""
    root = tmp_path / "src"
    shutil.copytree(ROOT / "src", root, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    seg = {**CONFIG, **config}
    modules = tuple(registry.step_modules(step, seg))
    script = ROOT / "scripts" / f"{step}.py"
    before = code_hash(script, root, modules)
    path = root / "vispipe/segment" / edited
    path.write_text(path.read_text() + "\n# an edit\n")
    from vispipe.codedeps import source_files

    source_files.cache_clear()
    assert (code_hash(script, root, modules) != before) == reruns
