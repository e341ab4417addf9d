"""Seeds as replicates (classify.seeds): every run once per seed, each its own job, and the tables'
statistics (mean, std, n; the KD gain and each variant's Δ paired by seed)."""

from __future__ import annotations

import json
import re
import statistics

import pytest

from conftest import job_counts, snakemake
from vispipe.classify.compare import ablation, compare

TEACHER = {
    "role": "teacher",
    "arch": "resnet",
    "top5": 0.99,
    "params": 11_170_000,
    "train_time_s": 600.0,
    "n_test": 360,
}
STUDENT = {"role": "student", "arch": "vit", "top5": 0.95, "params": 1000, "train_time_s": 90.0, "n_test": 360}


def seeded(base: dict, top1: dict[int, float], **extra) -> list[dict]:
    return [dict(base, seed=seed, top1=acc, top5=min(1.0, acc + 0.05), **extra) for seed, acc in top1.items()]


def test_two_seeds_are_two_jobs_per_model_and_each_seed_trains_from_its_own_teacher(workflow_dir):
    (workflow_dir / "seeds.yaml").write_text("classify: {seeds: [0, 1]}\n")
    proc = snakemake(workflow_dir, "-n", "-p", "--configfile", "config/demo.yaml", "seeds.yaml")
    out = proc.stdout + proc.stderr
    counts = job_counts(out)
    # the demo's models: the teacher, the student and its no-KD variant, each trained and evaluated twice
    assert (counts["train_teacher"], counts["train_student"], counts["evaluate"]) == (2, 4, 6), counts
    assert counts["compare_models"] == 1 and counts["ablation"] == 1
    commands = [line for line in out.splitlines() if '"$VISPIPE_SCRIPTS"/train_' in line]
    assert len(commands) == 6, out[-3000:]
    seeds = {}
    for cmd in commands:
        cfg = json.loads(re.search(r"--config '(\{.*?\})'", cmd)[1])
        out_dir = re.search(r"--out-dir (\S+)", cmd)[1]
        seeds[out_dir.split("results/classify/")[1]] = cfg["classify"]["seed"]
        if "--teacher" in cmd:
            teacher = re.search(r"--teacher (\S+)", cmd)[1]
            assert teacher == ("results/classify/seed1/teacher/model.pt" if "seed1/" in out_dir
                               else "results/classify/teacher/model.pt"), cmd  # fmt: skip
    assert seeds == {"teacher": 0, "student": 0, "variants/no_kd": 0,
                     "seed1/teacher": 1, "seed1/student": 1, "seed1/variants/no_kd": 1}, seeds  # fmt: skip
    compare_cmd = next(line for line in out.splitlines() if '"$VISPIPE_SCRIPTS"/compare_models.py' in line)
    assert re.search(
        r"--student results/classify/student/eval/metrics.json results/classify/seed1/student/", compare_cmd
    )


def test_the_comparison_reports_mean_std_n_and_the_kd_gain_paired_by_seed():
    teacher = seeded(TEACHER, {0: 0.90, 1: 0.91, 2: 0.93})
    student = seeded(STUDENT, {0: 0.95, 1: 0.93, 2: 0.96})
    no_kd = seeded(STUDENT, {2: 0.92, 0: 0.94, 1: 0.90})  # another order: pairing goes by seed, not position
    md, table = compare(teacher, student, no_kd)
    rows = table.set_index("model")
    for label, runs in (("student (vit)", student), ("teacher (resnet)", teacher), ("student without KD (vit)", no_kd)):
        for key in ("top1", "top5"):
            values = [100 * m[key] for m in runs]
            assert rows.loc[label, key] == round(statistics.mean(values), 2)
            assert rows.loc[label, f"{key}_std"] == round(statistics.stdev(values), 2)
        assert rows.loc[label, "n_seeds"] == 3
    by_seed = {m["seed"]: m["top1"] for m in no_kd}
    gains = [100 * (m["top1"] - by_seed[m["seed"]]) for m in student]  # +1, +3, +4 points
    want = f"{statistics.mean(gains):+.2f} ± {statistics.stdev(gains):.2f} points (mean ± std of 3 seeds"
    assert want in md and "paired by seed: +1.00, +3.00, +4.00" in md, md
    assert re.search(r"\| student \(vit\) +\| 94\.67 ± 1\.53 +\| 99\.33 ± 1\.15 +\| +3 \|", md), md  # mean ± std, n


def test_one_seed_keeps_the_single_run_tables():
    md, table = compare(TEACHER | {"top1": 0.9}, STUDENT | {"top1": 0.5}, STUDENT | {"top1": 0.4625})
    assert "Seeds" not in md and "±" not in md and "+3.75 points." in md
    assert list(table["n_seeds"]) == [1, 1, 1] and table["top1_std"].isna().all()


def test_the_ablation_deltas_are_paired_by_seed_and_a_missing_seed_is_refused():
    from vispipe.errors import UserError

    student = seeded(STUDENT, {0: 0.95, 1: 0.93})
    patch8 = seeded(STUDENT, {0: 0.92, 1: 0.93}, name="patch8")
    md, table = ablation(seeded(TEACHER, {0: 0.9, 1: 0.9}), student, {"patch8": patch8}, {"patch8": {"model": {}}})
    row = table.set_index("model").loc["variant patch8 (vit)"]
    deltas = [-3.0, 0.0]
    assert row["delta_top1"] == round(statistics.mean(deltas), 2) and row["delta_top1_std"] == round(
        statistics.stdev(deltas), 2
    )
    assert "-1.50 ± 2.12" in md
    with pytest.raises(UserError, match=r"variant patch8 was trained with seeds \[0\], the student with \[0, 1\]"):
        ablation(TEACHER | {"top1": 0.9}, student, {"patch8": patch8[:1]}, {"patch8": {"model": {}}})


def test_the_ablation_chart_draws_error_bars(tmp_path):
    import numpy as np
    from PIL import Image

    from vispipe.classify.plots import ablation_chart

    args = (["student", "variant", "teacher"], [95.0, 93.0, 90.0], [1.0, 1.0, 2.0], [1.0, 1.0, 11.0])
    ablation_chart(*args, tmp_path / "plain.png", "t")
    ablation_chart(*args, tmp_path / "bars.png", "t", top1_std=[0.5, 1.5, float("nan")])
    plain, bars = (np.asarray(Image.open(tmp_path / f"{n}.png").convert("L")) for n in ("plain", "bars"))
    assert plain.shape == bars.shape and (plain != bars).sum() > 200  # the bars (and the ± labels) are drawn


def test_the_scripts_take_one_file_per_seed(tmp_path):
    import csv

    from conftest import run_script

    def files(kind: str, runs: list[dict]) -> list:
        paths = []
        for m in runs:
            path = tmp_path / f"{kind}{m['seed']}.json"
            path.write_text(json.dumps(m))
            paths.append(path)
        return paths

    teacher = files("t", seeded(TEACHER, {0: 0.9, 1: 0.92}))
    student = files("s", seeded(STUDENT, {0: 0.95, 1: 0.93}))
    no_kd = files("n", seeded(STUDENT, {0: 0.93, 1: 0.92}, name="no_kd"))
    run_script("compare_models", "--teacher", *teacher, "--student", *student, "--no-kd", *no_kd,
               "--md", tmp_path / "c.md", "--csv", tmp_path / "c.csv")  # fmt: skip
    rows = {r["model"]: r for r in csv.DictReader(open(tmp_path / "c.csv"))}
    assert (rows["student (vit)"]["top1"], rows["student (vit)"]["n_seeds"], rows["student (vit)"]["seeds"]) == (
        "94.0", "2", "0 1")  # fmt: skip
    assert "+1.50 ± 0.71 points (mean ± std of 2 seeds" in (tmp_path / "c.md").read_text()
    overrides = json.dumps({"classify": {"variants": {"no_kd": {"kd": {"alpha": 0.0}}}}})
    run_script("ablation", "--config", overrides, "--teacher", *teacher, "--student", *student, "--variants", *no_kd,
               "--md", tmp_path / "a.md", "--csv", tmp_path / "a.csv", "--png", tmp_path / "a.png")  # fmt: skip
    rows = {r["model"]: r for r in csv.DictReader(open(tmp_path / "a.csv"))}
    assert (rows["variant no_kd (vit)"]["delta_top1"], rows["variant no_kd (vit)"]["delta_top1_std"]) == (
        "-1.5",
        "0.71",
    )
    proc = run_script("ablation", "--config", overrides, "--teacher", *teacher, "--student", *student,
                      "--variants", *no_kd, no_kd[0], "--md", tmp_path / "b.md", "--csv", tmp_path / "b.csv",
                      "--png", tmp_path / "b.png", check=False)  # fmt: skip
    assert proc.returncode == 2 and "two metrics files given for variant 'no_kd', seed 0" in proc.stderr
