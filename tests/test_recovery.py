"""The README's commands from a bare shell, and the whole run killed outright then run again.

- The rules run their scripts with the Python that runs Snakemake: ``.venv/bin/snakemake`` works
  from a shell whose PATH has no virtual environment (and no ``python`` that could import vispipe);
  under ``--sdm apptainer`` (or conda) they run the environment's own ``python``.
- A SIGKILL of every process of a run (what the OOM killer, a lost node or a closed laptop does),
  once during training and once during propagation, each followed by the same command again: no
  ``--unlock``, no ``--rerun-incomplete``, and the results equal an uninterrupted run's.
- The lock release never touches a live run's lock.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import copy_workflow, drop_timing

pytestmark = pytest.mark.slow

SNAKEMAKE = Path(sys.executable).parent / "snakemake"  # .venv/bin/snakemake, as README writes it
TEACHER = "results/classify/teacher"
TRACK = "results/segment/bigbuckbunny/rabbit"
SLICE = {
    "classify": {"device": "cpu", "data": {"limit_train": 600},
                 "teacher": {"train": {"epochs": 4, "batch_size": 32}}},
    "segment": {"device": "cpu", "frames": {"max_seconds": 1.2, "stride": 2}},
}  # fmt: skip
TARGETS = [f"{TEACHER}/model.pt", f"{TRACK}/tracks.json"]


def bare_env() -> dict:
    """A fresh shell's environment: no virtual environment on PATH, nothing activated."""
    env = {k: os.environ[k] for k in ("HOME", "LANG", "TMPDIR") if k in os.environ}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return env


def command(*targets: str) -> list[str]:
    """README's command (``.venv/bin/snakemake --cores N --configfile config/demo.yaml``) on a slice."""
    return [str(SNAKEMAKE), "--cores", "2", "--configfile", "config/demo.yaml", "slice.yaml", "--", *targets]


def workflow(where: Path) -> Path:
    wf = copy_workflow(where)
    (wf / "slice.yaml").write_text(json.dumps(SLICE))
    return wf


def run(wf: Path, *targets: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(command(*targets), cwd=wf, env=bare_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


def test_rules_run_with_snakemakes_python_from_a_bare_shell(tmp_path):
    probe = subprocess.run(["python3", "-c", "import vispipe"], env=bare_env(), capture_output=True)
    if probe.returncode == 0:
        pytest.skip("the system's python3 imports vispipe: a bare shell cannot tell the interpreters apart")
    wf = workflow(tmp_path / "wf")
    run(wf, "data/digits/train.npz", "results/segment/bigbuckbunny/meta.json")
    assert json.loads((wf / "results/segment/bigbuckbunny/meta.json").read_text())["count"] > 0
    assert (wf / "data/digits/train.npz").stat().st_size > 0


# A stand-in for Apptainer: `apptainer exec [options] IMAGE CMD...` runs CMD on this machine with the
# "image's" python (a script that logs its call, then runs this interpreter) first on PATH.
FAKE_APPTAINER = """#!/bin/bash
if [ "$1" = "--version" ]; then echo "apptainer version 1.3.4"; exit 0; fi
shift
while [ $# -gt 0 ]; do case "$1" in --home|--bind|-B) shift 2;; -*) shift;; *) shift; break;; esac; done
PATH="{image}:$PATH" exec "$@"
"""
IMAGE_PYTHON = """#!/bin/sh
echo "image python $*" >> {calls}
exec {python} "$@"
"""


def test_under_apptainer_the_rules_run_the_images_python(tmp_path):
    wf = workflow(tmp_path / "wf")
    bin_dir, image, calls = tmp_path / "bin", tmp_path / "image", tmp_path / "calls.log"
    for folder, name, text in ((bin_dir, "apptainer", FAKE_APPTAINER.format(image=image)),
                               (image, "python", IMAGE_PYTHON.format(calls=calls, python=sys.executable))):  # fmt: skip
        folder.mkdir()
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    (tmp_path / "image.sif").touch()
    env = dict(bare_env(), PATH=f"{bin_dir}:{bare_env()['PATH']}")
    cmd = [str(SNAKEMAKE), "--cores", "1", "--sdm", "apptainer", "--configfile", "config/demo.yaml",
           "--config", f"container={tmp_path / 'image.sif'}", "--", "data/digits/train.npz"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=wf, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    # the image's python, on the workflow's own script (the working directory, which apptainer binds)
    assert calls.read_text().startswith(f"image python {wf / 'scripts/fetch_cifar10.py'} "), calls.read_text()


def kill_everything(proc: subprocess.Popen) -> int:
    """SIGKILL the run and every process under it at once (as an OOM kill or a lost node would)."""
    root = psutil.Process(proc.pid)
    family = [root, *root.children(recursive=True)]
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)
    psutil.wait_procs(family, timeout=30)
    return len(family)


def killed_during(wf: Path, states: dict, rng: random.Random) -> set[str]:
    """Start the command; as soon as any of ``states`` (name: predicate) holds, wait a random moment
    more, then kill the whole run. The names of the states that held at the kill."""
    proc = subprocess.Popen(command(*TARGETS), cwd=wf, env=bare_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline, held = time.monotonic() + 600, set()
    while not held:  # a state may end during the random wait: then wait for the next one
        while not any(ready(wf, proc) for ready in states.values()):
            assert proc.poll() is None, f"the run ended ({proc.returncode}) before any of {sorted(states)}"
            assert time.monotonic() < deadline, f"none of {sorted(states)} after 600 s"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        held = {name for name, ready in states.items() if ready(wf, proc)}
    n = kill_everything(proc)
    assert list((wf / ".snakemake" / "locks").glob("*.lock")), "the killed run left no lock: nothing was tested"
    print(f"killed {n} processes during {', '.join(sorted(held))}")
    return held


def running(proc: subprocess.Popen, script: str) -> bool:
    """Whether a step of the run is running ``script`` (its launcher's or its own command line)."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
        return any(script in " ".join(p.cmdline()) for p in family)
    except psutil.Error:
        return False


def training(wf: Path, proc: subprocess.Popen) -> bool:
    """Mid-training: the teacher has finished an epoch (its resume state exists) and goes on."""
    return any((wf / TEACHER / "resume").glob("*")) and running(proc, "scripts/train_teacher.py")


def propagating(wf: Path, proc: subprocess.Popen) -> bool:
    """Mid-propagation: the step runs, has loaded SAM2 and works through the frames."""
    log = wf / "logs/segment/bigbuckbunny/rabbit/propagate.log"
    return running(proc, "scripts/propagate.py") and log.is_file() and "sam2: RANDOM WEIGHTS" in log.read_text()


def outputs(wf: Path) -> dict:
    import torch

    masks = wf / TRACK / "masks"
    weights = torch.load(wf / TEACHER / "model.pt", weights_only=True)["model"]
    return {
        "teacher": {k: (v.dtype, v.shape, v.numpy().tobytes()) for k, v in weights.items()},
        "history": drop_timing(list(csv.DictReader((wf / TEACHER / "history.csv").open()))),
        "tracks": drop_timing(json.loads((wf / TRACK / "tracks.json").read_text())),
        "track_frames": (wf / TRACK / "tracks.jsonl").read_text(),
        "rle": drop_timing(json.loads((wf / TRACK / "masks.rle.json").read_text())),
        "masks": {p.name: p.read_bytes() for p in sorted(masks.iterdir())},
    }


def test_killed_run_recovers_by_running_the_same_command(tmp_path):
    rng = random.Random(os.environ.get("VISPIPE_TEST_SEED", "0"))
    reference = workflow(tmp_path / "reference")
    run(reference, *TARGETS)

    wf = workflow(tmp_path / "wf")
    # Both chains run at once (--cores 2), and which reaches its state first varies with the machine's
    # load: kill at the first of the two, then the same command again at the other, which cannot have
    # finished yet (it would have been seen first). Each state is killed at least once.
    pending = {"training": training, "propagation": propagating}
    teacher_log, logs_after_training_kill = wf / "logs/classify/train_teacher.log", []
    for _ in range(2):
        if pending:
            held = killed_during(wf, pending, rng)
            if "training" not in pending:  # this run came after the kill during training
                logs_after_training_kill.append(teacher_log.read_text())
            for name in held:
                pending.pop(name)
    assert not pending, f"never killed during {sorted(pending)}"
    proc = run(wf, *TARGETS)
    out = proc.stdout + proc.stderr
    assert "released .snakemake/locks/" in out, out[-4000:]
    # The teacher's training went on from its last finished epoch, not from the start, in the first
    # run after the kill that reached it. Each run rewrites the log, so read each one: a later run may
    # train the teacher again from scratch, as Snakemake reruns a job that finished but was killed
    # before Snakemake recorded it (its resume state already removed with its outputs written).
    logs_after_training_kill.append(teacher_log.read_text())
    assert any("resuming from" in text for text in logs_after_training_kill), logs_after_training_kill

    got, want = outputs(wf), outputs(reference)
    for key in want:
        assert got[key] == want[key], f"{key} differs from the uninterrupted run's"


def test_a_live_runs_lock_is_never_released(tmp_path):
    from vispipe.locks import record_owner, release_stale

    locks = tmp_path / "locks"
    locks.mkdir()
    live, dead, foreign, bare = (locks / f"{i}.input.lock" for i in range(4))
    for lock in (live, dead, foreign, bare):
        lock.write_text("results/x\n")
    record_owner([live])  # this very process: alive
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record_owner([dead], pid=gone.pid)
    record_owner([foreign])
    rec = json.loads(Path(f"{foreign}.owner.json").read_text())
    Path(f"{foreign}.owner.json").write_text(json.dumps(dict(rec, host="another-node")))
    # the same id as this process, but a start time it never had: the id was reused
    reused = locks / "4.output.lock"
    reused.write_text("results/y\n")
    Path(f"{reused}.owner.json").write_text(json.dumps(dict(rec, started=rec["started"] - 3600)))

    assert release_stale(locks) == sorted([dead, reused])
    assert live.exists() and foreign.exists() and bare.exists()
    assert not dead.exists() and not reused.exists()
