"""`snakemake --report`: one HTML file holding the demo's figures, tables and videos, by category."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import snakemake

pytestmark = pytest.mark.slow

# category -> files the report must hold (paths relative to the workflow)
EXPECTED = {
    "Classification": [
        "results/classify/teacher/curves.png",
        "results/classify/student/curves.png",
        "results/classify/teacher/eval/confusion_counts.png",
        "results/classify/student/eval/confusion_normalized.png",
        "results/classify/variants/no_kd/eval/per_class_accuracy.png",
        "results/classify/student/eval/pred_grid.png",
        "results/classify/comparison.csv",
    ],
    "Ablations": ["results/classify/ablation.csv", "results/classify/ablation.png"],
    "Segmentation": [
        "results/segment/bigbuckbunny/rabbit/first/overlay.png",
        "results/segment/bigbuckbunny/rabbit/overlay.mp4",
        "results/segment/images/bigbuckbunny_frame/rabbit/overlay.png",
    ],
}


@pytest.fixture(scope="module")
def report_html(demo_run):
    out = demo_run / "report.html"
    if not out.exists():
        snakemake(demo_run, "--report", "report.html", "--configfile", "config/demo.yaml", timeout=600)
    return out


def test_the_report_holds_every_category_and_file(report_html):
    html = report_html.read_text()
    assert len(html) > 100_000  # the pictures and the video are embedded: one file to send
    for category, files in EXPECTED.items():
        assert category in html, category
        for path in files:
            assert path in html, f"{path} is not in the report"
    # the workflow description (it warns about the demo's random models) and the captions are in
    assert "its masks show the plumbing" in html and "Training curves: loss and train accuracy" in html
    assert "Each ablation variant is the student" in html


def test_a_browser_renders_it(report_html, tmp_path):
    """Headless Chromium loads the report and draws something (skips where no Chromium is installed)."""
    browser = next(
        (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )
    if browser is None:
        if os.environ.get("CI"):  # .ci/run installs it: a CI run without it would hide this test
            pytest.fail("no Chromium on this CI machine: .ci/run installs Debian's chromium")
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    import numpy as np
    from PIL import Image

    shot = tmp_path / "report.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--virtual-time-budget=10000", "--window-size=1400,1000", f"--screenshot={shot}", report_html.as_uri()]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-3000:]
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (1000, 1400)
    # a page with text and panels, not a blank or an error page: many distinct grey levels and rows
    assert len(np.unique(img)) > 20 and (img.std(axis=1) > 5).sum() > 200, re.sub(r"\s+", " ", proc.stderr)[-500:]
