"""Hostile and careless input: file names that are shell code, folders another user prepared, inputs
that would hold a node for hours, and values that used to end in a traceback (docs/faults.md,
"Hostile input"). Each case failed before the pipeline refused or handled it."""

from __future__ import annotations

import ast
import io
import json
import re
import shutil
import string
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import ROOT, copy_workflow, run_script, snakemake

# Every character a shell treats specially, a newline and letters beyond ASCII, in one folder name:
# a command substitution or backtick that ran would leave a PWNED_* file in the job's folder.
HOSTILE = 'bob\'s "data"; $(touch PWNED_SUB) `touch PWNED_TICK` a\nb ñé'
# a sheet's cell holds no newline (the sheet would need quoting then): the rest of the same
ONE_LINE = "eve's $(touch PWNED_ROW) `touch PWNED_ROW2`; x"
ALLOWED_UNQUOTED = re.compile(r"threads|resources\.\w+")


def shell_commands(smk: Path) -> list[tuple[int, str]]:
    """The shell command of every rule in ``smk``: (line number, the command's format string)."""
    lines = smk.read_text().splitlines()
    commands = []
    for n, line in enumerate(lines):
        if line.strip() != "shell:":
            continue
        indent, parts = len(line) - len(line.lstrip()), []
        for body in lines[n + 1 :]:
            if body.strip() and len(body) - len(body.lstrip()) <= indent:
                break
            if body.strip():
                parts.append(ast.literal_eval(body.strip()))
        commands.append((n + 1, "".join(parts)))
    return commands


def test_every_field_of_every_shell_command_is_quoted_by_snakemake():
    """`{input.x:q}`, never `'{input.x}'` or a bare `{output.y}`: Snakemake quotes each path (each
    item of a list) with shlex.quote, so no file name or config value is read as shell code."""
    smks = sorted((ROOT / "rules").glob("*.smk"))
    found = 0
    for smk in smks:
        for line, cmd in shell_commands(smk):
            found += 1
            assert not re.search(r"['\"]\{", cmd), f"{smk.name}:{line}: hand-written quotes around a field: {cmd}"
            for _, field, spec, _ in string.Formatter().parse(cmd):
                if field is None or ALLOWED_UNQUOTED.fullmatch(field):
                    continue
                assert (spec or "").endswith("q"), f"{smk.name}:{line}: {{{field}}} is not quoted ({{{field}:q}})"
    assert found >= 15, f"only {found} shell commands found in {[s.name for s in smks]}"


def _tiny_archive(path: Path) -> None:
    """A class-per-folder archive (train/<class>/*.jpg, test/<class>/*.jpg), as classify.data reads."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tf:
        for split in ("train", "test"):
            for cls in ("cat", "dog"):
                for k in range(3):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(buf, format="JPEG")
                    info = tarfile.TarInfo(f"{split}/{cls}/{k:04d}.jpg")
                    info.size = len(buf.getvalue())
                    tf.addfile(info, io.BytesIO(buf.getvalue()))


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """Every kind of user path at once under HOSTILE: a video with a prompt file and ground truth, a
    frame folder, a still image, a sample sheet (listing a video under ONE_LINE), a DAVIS-layout
    dataset, the model folder and a classification archive; one Snakemake run of all their steps."""
    wf = copy_workflow(tmp_path_factory.mktemp("hostile") / "wf")
    h, row = wf / "in" / HOSTILE, wf / "in" / ONE_LINE
    h.mkdir(parents=True)
    row.mkdir()
    size = ["--height", 96, "--width", 128]
    run_script("make_synthetic", "--video", h / "clip.mp4", "--ground-truth", h / "gt", "--frames", 8, *size, cwd=wf)
    run_script("make_synthetic", "--davis", h / "DAVIS", "--sequences", 1, "--frames", 6, *size, cwd=wf)
    shutil.copy(h / "clip.mp4", row / "clip2.mp4")
    (h / "frames").mkdir()
    for i in range(4):
        Image.fromarray(np.full((96, 128, 3), 40 * i, np.uint8)).save(h / "frames" / f"{i:05d}.jpg")
    Image.fromarray(np.full((96, 128, 3), 90, np.uint8)).save(h / "still.jpg")
    (h / "prompt.json").write_text(json.dumps({"instances": [{"box": [10, 10, 60, 60]}]}))
    (h / "sheet.tsv").write_text(f"id\tpath\ttargets\nsheetclip\t{row / 'clip2.mp4'}\tshape\n")
    _tiny_archive(h / "cifar.tar.gz")
    cfg = {
        "classify": {"data": {"source": "folder", "path": str(h / "cifar.tar.gz"), "name": "tiny"}},
        "segment": {
            "models": {"dir": str(h / "models")},
            "frames": {"max_seconds": None, "stride": 1},
            "propagate": {"refine": False},
            "targets": {"shape": {"prompt": "shape"}, "objects": {"prompt": None}},
            "videos": {
                "clip": {
                    "path": str(h / "clip.mp4"),
                    "targets": ["shape"],
                    "ground_truth": str(h / "gt"),
                    "prompts": {"shape": str(h / "prompt.json")},
                },
                "folder": {"path": str(h / "frames"), "fps": 10, "targets": ["shape"]},
            },  # fmt: skip
            "images": {"still": {"path": str(h / "still.jpg"), "targets": ["shape"]}},
            "samples": {"videos": str(h / "sheet.tsv")},
            "davis": {"root": str(h / "DAVIS"), "target": "objects"},
            "export": {"formats": ["yolo", "cvat", "label_studio"]},
        },
    }
    (wf / "hostile.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    seg = "results/segment"
    targets = ["data/tiny/train.npz", f"{seg}/clip/shape/overlay.mp4", f"{seg}/clip/shape/eval/jf.md",
               f"{seg}/clip/shape/export", f"{seg}/folder/shape/overlay.mp4", f"{seg}/sheetclip/shape/overlay.mp4",
               f"{seg}/images/still/shape/overlay.png", f"{seg}/davis/results.md"]  # fmt: skip
    proc = snakemake(wf, "--configfile", "config/demo.yaml", "hostile.yaml", "--", *targets, check=False)
    return wf, h, proc


def test_paths_holding_shell_code_run_as_names(hostile_run):
    wf, h, proc = hostile_run
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert not list(wf.rglob("PWNED*")), "a file name ran as a shell command"
    seg = wf / "results/segment"
    # the prompt file, the model folders and the ground truth were read where they are
    first = json.loads((seg / "clip/shape/instances.json").read_text())
    assert first["prompt_file"] == str(h / "prompt.json") and len(first["instances"]) == 1
    assert {p.name for p in (h / "models").iterdir()} >= {"random-tiny--clipseg", "random-tiny--sam2"}
    assert "J&F" in (seg / "clip/shape/eval/jf.md").read_text()
    for video, count in (("clip", 8), ("folder", 4), ("sheetclip", 8)):
        meta = json.loads((seg / video / "meta.json").read_text())
        assert meta["count"] == count and Path(meta["video"]).parent.name in (HOSTILE, ONE_LINE), meta["video"]
        tracks = json.loads((seg / video / "shape/tracks.json").read_text())
        assert len(tracks["frames"]) == count and (seg / video / "shape/overlay.mp4").stat().st_size > 0
    assert {p.name for p in (seg / "clip/shape/export").iterdir()} >= {"yolo", "cvat.xml", "label_studio.json"}
    assert (seg / "images/still/shape/overlay.png").is_file()
    assert "synth00" in (seg / "davis/results.md").read_text()
    with np.load(wf / "data/tiny/train.npz") as npz:
        assert len(npz["labels"]) == 6 and list(npz["classes"]) == ["cat", "dog"]
