"""The comparison table and the KD gain: the student with KD minus the same student without KD."""

import csv
import json
import math
import subprocess
import sys

import pytest

from conftest import run_script
from vispipe.classify.compare import compare
from vispipe.errors import UserError

TEACHER = {"role": "teacher", "arch": "resnet", "top1": 0.9, "top5": 0.995, "params": 11_170_000,
           "train_time_s": 600.0, "train_device": "NVIDIA H100", "n_test": 360}  # fmt: skip
STUDENT = {"role": "student", "arch": "vit", "top1": 0.5, "top5": 0.9, "params": 1000, "train_time_s": 90.0,
           "train_device": "cpu", "n_test": 360}  # fmt: skip
NO_KD = dict(STUDENT, top1=0.4625, top5=0.85, train_time_s=60.0)


def test_without_a_no_kd_run_there_is_no_gain_and_no_student_minus_teacher():
    md, table = compare(TEACHER, STUDENT)
    assert list(table["model"]) == ["student (vit)", "teacher (resnet)"]
    assert "KD gain: not measured" in md
    assert "points" not in md and "-40.00" not in md and "kd_gain" not in table.to_csv(index=False)
    assert "| student (vit)" in md and "| teacher (resnet)" in md and "NVIDIA H100" in md


def test_the_gain_is_the_student_with_kd_minus_the_same_student_without():
    md, table = compare(TEACHER, STUDENT, NO_KD)
    assert list(table["model"]) == ["student (vit)", "teacher (resnet)", "student without KD (vit)"]
    assert "KD gain (student with KD minus the same student without KD): +3.75 points." in md
    worse = dict(NO_KD, top1=0.6)
    assert "-10.00 points" in compare(TEACHER, STUDENT, worse)[0]
    row = table.set_index("model").loc["student without KD (vit)"]
    assert (row["top1"], row["top5"], row["train_time_min"]) == (46.25, 85.0, 1.0)


def test_markdown_formats_and_a_missing_training_time_is_an_empty_cell():
    student = {k: v for k, v in STUDENT.items() if k not in ("train_time_s", "train_device")}
    md, table = compare(TEACHER, student)
    lines = md.splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == [
        "Model", "Top-1 (%)", "Top-5 (%)", "Parameters (M)", "Training time (min)", "Device"]  # fmt: skip
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells == ["student (vit)", "50.00", "90.00", "0.00", "", ""]
    assert [c.strip() for c in lines[3].strip("|").split("|")][1:5] == ["90.00", "99.50", "11.17", "10.0"]
    assert math.isnan(table["train_time_min"][0]) and "nan" not in "".join(lines[:4])


def test_one_provenance_line_per_input_and_one_for_the_table():
    run = {"git_commit": "0123456789abcdef" * 2 + "01234567", "git_dirty": True, "device": "NVIDIA H100"}
    teacher = dict(TEACHER, provenance=dict(run, device="cpu"), train_provenance=run)
    own = {"vispipe": "9.9", "git_commit": None, "git_dirty": None, "device": None}
    md, table = compare(teacher, STUDENT, NO_KD, own)
    lines = md.splitlines()
    assert lines[lines.index("Provenance:") + 2 :] == [
        "- student (vit): evaluation no provenance recorded",
        "- teacher (resnet): evaluation commit 0123456789ab (dirty) on cpu; "
        "training commit 0123456789ab (dirty) on NVIDIA H100",
        "- student without KD (vit): evaluation no provenance recorded",
        "- this comparison: vispipe 9.9 (not a git checkout)",
    ]
    assert table["eval_git_commit"][1] == run["git_commit"] and table["train_device"][1] == "NVIDIA H100"
    assert table["eval_device"][1] == "cpu" and table["eval_git_dirty"][1] is True


@pytest.mark.parametrize(
    "change, message", [({"arch": "resnet"}, "same student"), ({"n_test": 100}, "same test split")]
)
def test_a_no_kd_run_of_another_model_or_test_set_is_refused(change, message):
    with pytest.raises(UserError, match=message):
        compare(TEACHER, STUDENT, dict(NO_KD, **change))


def write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_script_with_and_without_no_kd(tmp_path):
    t, s, n = (write(tmp_path / f"{k}.json", m) for k, m in (("t", TEACHER), ("s", STUDENT), ("n", NO_KD)))
    out = ["--md", tmp_path / "c.md", "--csv", tmp_path / "c.csv"]
    run_script("compare_models", "--teacher", t, "--student", s, *out)
    rows = list(csv.DictReader(open(tmp_path / "c.csv")))
    assert [r["model"] for r in rows] == ["student (vit)", "teacher (resnet)"]
    assert (rows[0]["top1"], rows[1]["top5"], rows[1]["device"]) == ("50.0", "99.5", "NVIDIA H100")
    assert "KD gain: not measured" in (tmp_path / "c.md").read_text()

    proc = run_script("compare_models", "--teacher", t, "--student", s, "--no-kd", n, *out)
    assert "+3.75 points" in (tmp_path / "c.md").read_text() and "+3.75 points" in proc.stderr
    rows = list(csv.DictReader(open(tmp_path / "c.csv")))
    assert [r["model"] for r in rows] == ["student (vit)", "teacher (resnet)", "student without KD (vit)"]
    assert rows[2]["top1"] == "46.25"


def test_script_refuses_a_no_kd_run_of_another_model(tmp_path):
    t, s = write(tmp_path / "t.json", TEACHER), write(tmp_path / "s.json", STUDENT)
    proc = run_script("compare_models", "--teacher", t, "--student", s, "--no-kd", t,
                      "--md", tmp_path / "c.md", "--csv", tmp_path / "c.csv", check=False)  # fmt: skip
    assert proc.returncode == 2 and "same student" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "c.md").exists() and not (tmp_path / "c.csv").exists()


def test_the_comparison_does_not_load_torch():
    code = "import sys, vispipe.classify.compare; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


OVERRIDES = {"no_kd": {"kd": {"alpha": 0.0}, "model": {"distill_token": False}}, "patch8": {"model": {"patch_size": 8}}}
PATCH8 = dict(STUDENT, name="patch8", top1=0.53, params=900, train_time_s=30.0)


def test_the_ablation_table_sets_each_variant_beside_the_student_and_the_teacher():
    from vispipe.classify.compare import ablation

    variants = {"patch8": PATCH8, "no_kd": dict(NO_KD, name="no_kd")}
    md, table = ablation(TEACHER, STUDENT, variants, OVERRIDES)
    assert list(table["model"]) == ["student (vit)", "variant no_kd (vit)", "variant patch8 (vit)", "teacher (resnet)"]
    assert list(table["changes"][1:3]) == ["kd.alpha=0.0, model.distill_token=false", "model.patch_size=8"]
    assert list(table["delta_top1"][:3]) == [0.0, -3.75, 3.0] and math.isnan(table["delta_top1"].iloc[3])
    assert list(table["params_M"]) == [0.0, 0.0, 0.0, 11.17] and list(table["train_time_min"][:3]) == [1.5, 1.0, 0.5]
    assert "| variant patch8 (vit) | model.patch_size=8" in md and "+3.00" in md and "-3.75" in md
    assert md.count("- variant ") == 2 and "Δ top-1 vs student" in md


def test_the_ablation_refuses_another_test_set_and_unknown_variants():
    from vispipe.classify.compare import ablation

    with pytest.raises(UserError, match="evaluate both on the same test split"):
        ablation(TEACHER, STUDENT, {"patch8": dict(PATCH8, n_test=100)}, OVERRIDES)
    with pytest.raises(UserError, match="no overrides"):
        ablation(TEACHER, STUDENT, {"deeper": PATCH8}, OVERRIDES)


def test_ablation_script_writes_table_csv_and_chart(tmp_path):
    import numpy as np
    from PIL import Image

    t, s, v = (write(tmp_path / f"{k}.json", m) for k, m in (("t", TEACHER), ("s", STUDENT), ("v", PATCH8)))
    cfg = json.dumps({"classify": {"variants": OVERRIDES}})
    out = ["--md", tmp_path / "a.md", "--csv", tmp_path / "a.csv", "--png", tmp_path / "a.png"]
    run_script("ablation", "--teacher", t, "--student", s, "--variants", v, "--config", cfg, *out)
    rows = list(csv.DictReader(open(tmp_path / "a.csv")))
    assert [r["model"] for r in rows] == ["student (vit)", "variant patch8 (vit)", "teacher (resnet)"]
    assert rows[1]["delta_top1"] == "3.0" and rows[1]["changes"] == "model.patch_size=8"
    img = np.asarray(Image.open(tmp_path / "a.png").convert("L"))
    assert img.shape[1] > 800 and img.std() > 10
    # a variant the config does not list: refused, nothing written
    unknown = write(tmp_path / "u.json", dict(PATCH8, name="deeper"))
    out = ["--md", tmp_path / "b.md", "--csv", tmp_path / "b.csv", "--png", tmp_path / "b.png"]
    proc = run_script("ablation", "--teacher", t, "--student", s, "--variants", unknown, "--config", cfg, *out,
                      check=False)  # fmt: skip
    assert proc.returncode == 2 and "'deeper', which classify.variants does not list" in proc.stderr
    assert not list(tmp_path.glob("b.*"))
