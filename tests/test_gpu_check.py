"""bench/gpu_check.py as CI can run it: on the CPU, tiny sizes. Checks the report, not timings."""

import json
import subprocess
import sys

from conftest import ROOT, env_with_venv
from vispipe.classify.data import load_split
from vispipe.config import load


def test_gpu_check_smoke_on_cpu_writes_the_whole_report(tmp_path):
    out = tmp_path / "check"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench/gpu_check.py"), "--device", "cpu", "--tiny", "--data", "digits",
         "--out", str(out)],
        env=env_with_venv(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((out / "report.json").read_text())
    demo = load([ROOT / "config/config.yaml", ROOT / "config/demo.yaml"])["classify"]
    assert r["device"] == "cpu" and r["torch"] and "cuda" in r and r["python"] and r["vispipe"]
    for role, epochs in (("teacher", 1), ("student", 2)):
        m = r[role]
        assert m["epochs"] == epochs and m["full_recipe_epochs"] == demo[role]["train"]["epochs"]  # projected to
        assert m["median_epoch_s"] > 0 and m["images_per_s"] > 0 and m["gflop_per_image"] > 0
        assert m["mfu"] is None  # no peak FLOP/s for a CPU
        assert 0 <= m["top1"] <= m["top5"] <= 1 and m["projected_full_recipe_min"] > 0
        for f in ("confusion_counts.png", "pred_grid.png", "classification_report.txt", "metrics.json"):
            assert (out / role / "eval" / f).stat().st_size > 0
    assert r["projected_full_recipe_min"] == round(
        r["teacher"]["projected_full_recipe_min"] + r["student"]["projected_full_recipe_min"], 2
    )
    assert r["cpu_reload"]["images"] == len(load_split(out / "data/test.npz")) == 258  # --tiny: 256, stratified
    assert set(r["stages_s"]) == {"data", "teacher", "student", "evaluate_teacher", "evaluate_student",
                                  "cpu_reload", "bench", "segment_bench"}  # fmt: skip
    assert r["bench"]["input_pipeline"]["ours_img_s"] > 0 and r["bench"]["student_step"]["eager"]["ratio"] > 0
    seg = r["segment_bench"]  # the demo's tiny SAM2 here; SAM2.1-small on a GPU
    assert set(seg["rows"]) == {"flow", "flow_dis", "sam2_video", "peer"} and all(
        v["frames_per_s"] > 0 for v in seg["rows"].values()
    )
    assert (
        seg["ratios_vs_peer"]["peer"] == 1 and "sam2 image encoder" in seg["rows"]["sam2_video"]["stages_ms_per_frame"]
    )
    md = (out / "report.md").read_text()
    assert md.startswith("# GPU check: cpu") and "| teacher | 1 |" in md and "| student | 2 |" in md
    assert "Projected full recipe" in md and "bench/classify.py on this device" in md
    assert "bench/segment.py on this device" in md and "| sam2_video |" in md
