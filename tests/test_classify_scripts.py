"""Each classification script as a subprocess: help, happy path, bad input, kill and resume."""

import csv
import json
import subprocess
import sys
import time

import pytest
import torch

from conftest import DEMO_CONFIGS, ROOT, env_with_venv, run_script
from vispipe.config import load

SCRIPTS = ["fetch_cifar10", "train_teacher", "train_student", "evaluate", "compare_models", "ablation"]
DEMO = [str(ROOT / "config/config.yaml"), str(ROOT / "config/demo.yaml")]


def cfg_args(override: dict | None = None) -> list[str]:
    args = []
    for c in DEMO:
        args += ["--config", c]
    if override:
        args += ["--config", json.dumps(override)]
    return args


TINY = {
    "classify": {
        "device": "cpu",  # bit-for-bit resume checks need the CPU, also on a machine with a GPU
        "teacher": {"train": {"epochs": 1}},
        "student": {
            "model": {"dim": 32, "depth": 2, "heads": 2, "class_attn_blocks": 1},
            "train": {"epochs": 5, "clean_last_epochs": 2, "batch_size": 64},
        },
    }
}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "digits"
    run_script("fetch_cifar10", *cfg_args(), "--out-dir", out)
    return out


@pytest.fixture(scope="module")
def teacher(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    run_script("train_teacher", *cfg_args(TINY), "--data", digits, "--out-dir", out)
    return out / "model.pt"


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name):
    proc = run_script(name, "-h")
    assert "usage:" in proc.stdout and "--log" in proc.stdout


def test_fetch_writes_uint8_arrays(digits):
    with __import__("numpy").load(digits / "train.npz") as z:
        assert z["images"].dtype.name == "uint8" and z["images"].shape[1:] == (32, 32, 3)
        assert list(z["classes"]) == [str(i) for i in range(10)]


def test_teacher_outputs_and_checkpoint_contents(teacher):
    ckpt = torch.load(teacher, weights_only=True)
    assert ckpt["role"] == "teacher" and ckpt["arch"]["arch"] == "resnet"
    assert ckpt["classes"] == [str(i) for i in range(10)] and set(ckpt["metrics"]) >= {"test_acc", "test_top5"}
    demo_width = load(DEMO_CONFIGS)["classify"]["teacher"]["model"]["width"]
    assert json.loads(ckpt["config"])["model"]["width"] == demo_width  # the config it was trained with
    assert not (teacher.parent / "resume").exists()  # the resume state goes once outputs exist
    for f in ("history.csv", "metrics.json", "curves.png"):
        assert (teacher.parent / f).stat().st_size > 0


def student_cmd(digits, teacher, out, log, override: dict | None = None):
    from vispipe.config import deep_merge

    cfg = deep_merge(TINY, override or {})
    return [sys.executable, str(ROOT / "scripts/train_student.py"), *cfg_args(cfg), "--data", str(digits),
            "--teacher", str(teacher), "--out-dir", str(out), "--log", str(log)]  # fmt: skip


def kill_after(cmd: list[str], out, epochs: int = 2) -> int:
    """Start a training, SIGKILL it once ``epochs`` epochs are in its history; return the epochs its
    resume state holds."""
    proc = start(cmd)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        hist = out / "history.csv"
        if hist.exists() and len(hist.read_text().strip().splitlines()) >= epochs + 1:  # header + epochs
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.kill()
    proc.wait()
    return torch.load(out / "resume" / "state.pt", weights_only=False)["epoch"]


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env_with_venv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def history(path):
    with open(path) as f:
        timings = {"epoch_time_s", "train_time_s", "images_per_s"}
        return [{k: v for k, v in row.items() if k not in timings} for row in csv.DictReader(f)]


def test_killed_student_resumes_to_the_same_result(digits, teacher, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(
        student_cmd(digits, teacher, whole, tmp_path / "whole.log"),
        env=env_with_venv(),
        check=True,
        capture_output=True,
    )

    done_before = kill_after(student_cmd(digits, teacher, killed, tmp_path / "k1.log"), killed)
    assert not (killed / "last.pt").exists() and (killed / "resume" / "state.pt").exists()
    assert 2 <= done_before < 5 and len(history(killed / "history.csv")) <= done_before

    subprocess.run(
        student_cmd(digits, teacher, killed, tmp_path / "k2.log"), env=env_with_venv(), check=True, capture_output=True
    )
    assert (
        f"resuming from {killed / 'resume' / 'state.pt'} at epoch {done_before + 1}/5"
        in (tmp_path / "k2.log").read_text()
    )
    assert history(killed / "history.csv") == history(whole / "history.csv")
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (whole, killed))
    for key in ("best_test_acc", "best_epoch", "last_test_acc", "last_test_top5"):
        assert a[key] == b[key]
    wa, wb = (torch.load(d / "last.pt", weights_only=True)["model"] for d in (whole, killed))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)


def test_a_changed_config_does_not_resume_a_stale_state(digits, teacher, tmp_path):
    """Fault: a killed run left its state, then the learning rate changed. That state must not be
    resumed (training starts over); the control, rerun with the same config, does resume it."""
    import shutil

    first = tmp_path / "first"
    done = kill_after(student_cmd(digits, teacher, first, tmp_path / "first.log"), first)
    assert 2 <= done < 5
    same, changed = tmp_path / "same", tmp_path / "changed"
    shutil.copytree(first, same)
    shutil.copytree(first, changed)

    subprocess.run(student_cmd(digits, teacher, same, tmp_path / "same.log"), env=env_with_venv(), check=True,
                   capture_output=True)  # fmt: skip
    log = (tmp_path / "same.log").read_text()
    assert f"resuming from {same / 'resume' / 'state.pt'} at epoch {done + 1}/5" in log and "ignoring" not in log

    lr = {"classify": {"student": {"train": {"optimizer": {"lr": 1e-3}}}}}  # the demo's is 2e-3
    subprocess.run(student_cmd(digits, teacher, changed, tmp_path / "changed.log", lr), env=env_with_venv(),
                   check=True, capture_output=True)  # fmt: skip
    log = (tmp_path / "changed.log").read_text()
    assert "ignoring" in log and "resuming" not in log
    rows = history(changed / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert float(rows[0]["lr"]) != float(history(same / "history.csv")[0]["lr"])  # trained anew, with the new lr


def test_evaluate_and_compare(digits, teacher, tmp_path):
    run_script(
        "evaluate",
        *cfg_args(),
        "--checkpoint",
        teacher,
        "--test",
        digits / "test.npz",
        "--train-metrics",
        teacher.parent / "metrics.json",
        "--out-dir",
        tmp_path / "t",
    )
    m = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert m["role"] == "teacher" and 0 <= m["top1"] <= m["top5"] <= 1 and m["n_test"] == 360
    assert sum(map(sum, m["confusion"])) == 360 and "train_time_s" in m
    assert m["provenance"]["device"] == "cpu" and m["train_provenance"]["config_sha256"]
    student = dict(m, role="student", arch="vit", top1=m["top1"] + 0.01, params=1000)
    (tmp_path / "s.json").write_text(json.dumps(student))
    proc = run_script(
        "compare_models",
        "--teacher",
        tmp_path / "t" / "metrics.json",
        "--student",
        tmp_path / "s.json",
        "--md",
        tmp_path / "c.md",
        "--csv",
        tmp_path / "c.csv",
    )
    md = (tmp_path / "c.md").read_text()
    assert "KD gain: not measured" in md and "points" not in md and "student (vit)" in proc.stderr
    rows = list(csv.DictReader(open(tmp_path / "c.csv")))
    assert [r["model"] for r in rows] == ["student (vit)", "teacher (resnet)"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [
                "fetch_cifar10",
                "--config",
                '{"classify": {"data": {"source": "folder", "path": "/nonexistent/cifar"}}}',
                "--out-dir",
                "OUT",
            ],
            "/nonexistent/cifar does not exist",
        ),
        (
            [
                "train_teacher",
                "--config",
                '{"classify": {"teacher": {"train": {"epochs": -1}}}}',
                "--data",
                "OUT",
                "--out-dir",
                "OUT",
            ],
            "classify.teacher.train.epochs",
        ),
        (["train_teacher", "--data", "OUT/none", "--out-dir", "OUT"], "run the fetch_cifar10 rule"),
        pytest.param(
            ["train_teacher", "--config", '{"classify": {"device": "cuda"}}', "--data", "OUT", "--out-dir", "OUT"],
            "no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU"),
        ),
        (
            ["evaluate", "--checkpoint", "OUT/missing.pt", "--test", "OUT/test.npz", "--out-dir", "OUT"],
            "missing.pt does not exist",
        ),
        (
            ["evaluate", "--checkpoint", "OUT/bad.pt", "--test", "OUT/test.npz", "--out-dir", "OUT"],
            "not a readable checkpoint",
        ),
        (
            [
                "compare_models",
                "--teacher",
                "OUT/bad.pt",
                "--student",
                "OUT/x.json",
                "--md",
                "OUT/a.md",
                "--csv",
                "OUT/a.csv",
            ],
            "not valid JSON",
        ),
        (["train_student", "--data", "OUT"], "--teacher"),
    ],
)
def test_bad_input_exits_nonzero_with_a_message(args, message, tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    name, *rest = args
    rest = [a.replace("OUT", str(tmp_path)) for a in rest]
    if name != "compare_models":
        rest = cfg_args() + rest  # the demo config, then the test's override
    proc = run_script(name, *rest, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sigterm_stops_cleanly_and_keeps_the_state(digits, teacher, tmp_path):
    out = tmp_path / "term"
    proc = start(student_cmd(digits, teacher, out, tmp_path / "log"))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (out / "resume" / "state.pt").exists():
        time.sleep(0.02)
    proc.terminate()
    assert proc.wait(timeout=60) == 143
    assert "terminated; outputs were not written" in (tmp_path / "log").read_text()
    assert (out / "resume" / "state.pt").exists()
    assert not [p for p in out.rglob("*.tmp*")], "temporary files left behind"
    assert not (out / "best.pt").exists()


@pytest.mark.parametrize("delay", [0.0, 0.7, 1.5, 3.0])
def test_sigterm_to_the_process_group_with_workers_exits_cleanly(digits, teacher, tmp_path, delay):
    """Slurm and `timeout` signal the whole group: the DataLoader workers must not turn that into a crash."""
    import os
    import signal

    out, log = tmp_path / "w", tmp_path / "w.log"
    # 20 epochs (about 10 s on an idle machine): still training when the last delay is over; killed early
    longer = {"classify": {"num_workers": 2, "student": {"train": {"epochs": 20}}}}
    proc = subprocess.Popen(student_cmd(digits, teacher, out, log, longer), env=env_with_venv(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and "augmentation on the CPU in workers" in log.read_text():
            break
        time.sleep(0.05)
    time.sleep(delay)  # at start-up, in the first epoch, around the first epoch's end
    assert proc.poll() is None, "training ended before it could be signalled"
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "Traceback" not in log.read_text()
    assert "terminated; outputs were not written" in log.read_text()
    assert not [p for p in out.rglob("*.tmp*")], "temporary files left behind"
