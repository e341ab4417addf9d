"""Damaged inputs: each script exits 2 with a message that names the file and the fix, never a traceback."""

import pytest
import torch

from conftest import ROOT, run_script
from vispipe.classify.data import from_digits, save_split
from vispipe.classify.models import build_model
from vispipe.config import load

DEMO = [ROOT / "config" / "config.yaml", ROOT / "config" / "demo.yaml"]
CFG_ARGS = [a for c in DEMO for a in ("--config", str(c))]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The demo's train.npz and test.npz, written in-process (no script run)."""
    out = tmp_path_factory.mktemp("data")
    for name, split in from_digits(seed=0).items():
        save_split(split, out / f"{name}.npz")
    return out


@pytest.fixture(scope="module")
def checkpoint(digits, tmp_path_factory):
    """An untrained demo teacher in the format that training writes and load_checkpoint reads."""
    arch = load(DEMO)["classify"]["teacher"]["model"]
    classes = [str(i) for i in range(10)]
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(
        {
            "role": "teacher",
            "arch": arch,
            "classes": classes,
            "model": build_model(arch, len(classes)).state_dict(),
            "normalize": {"mean": [0.5] * 3, "std": [0.25] * 3},
            "epoch": 0,
        },
        path,
    )
    return path


def truncate(src, dest):
    """Copy ``src`` to ``dest`` cut to half its bytes, as an interrupted copy or download leaves it."""
    blob = src.read_bytes()
    dest.write_bytes(blob[: len(blob) // 2])
    return dest


def assert_clean_failure(proc, path):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert str(path) in proc.stderr and "fetch_cifar10 rule" in proc.stderr, proc.stderr


def test_evaluate_on_a_truncated_test_split_exits_2_naming_the_file(digits, checkpoint, tmp_path):
    test = truncate(digits / "test.npz", tmp_path / "test.npz")
    proc = run_script(
        "evaluate", *CFG_ARGS, "--checkpoint", checkpoint, "--test", test, "--out-dir", tmp_path / "out", check=False
    )
    assert_clean_failure(proc, test)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_training_on_a_truncated_train_split_exits_2_naming_the_file(digits, tmp_path):
    data = tmp_path / "digits"
    data.mkdir()
    train = truncate(digits / "train.npz", data / "train.npz")
    (data / "test.npz").write_bytes((digits / "test.npz").read_bytes())
    proc = run_script("train_teacher", *CFG_ARGS, "--data", data, "--out-dir", tmp_path / "out", check=False)
    assert_clean_failure(proc, train)
    assert not (tmp_path / "out" / "model.pt").exists()
