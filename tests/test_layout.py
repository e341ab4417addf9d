"""One list of output names: the layout modules define them, the rules and the steps use them."""

import subprocess
import sys

import pytest

from conftest import ROOT
from vispipe.classify import layout as cls
from vispipe.layout import output_key, outputs
from vispipe.segment import layout as seg


@pytest.mark.parametrize(
    "name, key",
    [
        ("metrics.json", "metrics_json"),
        ("classification_report.txt", "classification_report_txt"),
        ("classification_report.csv", "classification_report_csv"),
        ("first/heatmap.png", "first_heatmap_png"),
        ("masks.rle.json", "masks_rle_json"),
    ],
)
def test_output_key(name, key):
    assert output_key(name) == key and key.isidentifier()


def test_outputs_are_keyed_by_output_key_and_wildcards_survive():
    assert outputs("results/classify/{model}/eval", ["metrics.json", "pred_grid.png"]) == {
        "metrics_json": "results/classify/{model}/eval/metrics.json",
        "pred_grid_png": "results/classify/{model}/eval/pred_grid.png",
    }


@pytest.mark.parametrize(
    "names",
    [cls.TRAIN_OUTPUTS, cls.EVAL_OUTPUTS, cls.train_outputs("teacher"), cls.train_outputs("student"), seg.PICTURES],
)
def test_every_list_has_distinct_keys(names):
    assert len({output_key(n) for n in names}) == len(names)


def test_final_outputs():
    classify = cls.final_outputs()
    assert "results/classify/student/eval/metrics.json" in classify
    assert "results/classify/teacher/eval/classification_report.csv" in classify
    assert classify[-2:] == ["results/classify/comparison.md", "results/classify/comparison.csv"]
    assert len(classify) == len(set(classify)) == 2 * len(cls.EVAL_OUTPUTS) + 2
    with_variants = cls.final_outputs(with_variants=True)
    assert with_variants[: len(classify)] == classify
    assert with_variants[len(classify) :] == [
        f"results/classify/{n}" for n in ("ablation.md", "ablation.csv", "ablation.png")
    ]


def test_the_rules_use_one_key_convention():
    for rules in (ROOT / "rules").glob("*.smk"):
        text = rules.read_text()
        assert 'split(".")' not in text and 'replace(".", "_")' not in text, rules.name


def test_the_layout_modules_import_nothing_heavy():
    code = (
        "import sys, vispipe.layout, vispipe.classify.layout, vispipe.segment.layout; "
        "print(sorted({'torch', 'torchvision', 'transformers', 'cv2'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
