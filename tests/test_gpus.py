"""The GPU slot allocator (vispipe/gpus.py) with a faked device count: each job its own GPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# a job: record when it ran and on which device, then hold its slot for a while
JOB = """
import json, os, sys, time
if os.environ.get("JOB_PID_FILE"):
    open(os.environ["JOB_PID_FILE"], "w").write(str(os.getpid()))
t0 = time.monotonic()
time.sleep(float(sys.argv[1]))
print(json.dumps({"device": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": t0, "end": time.monotonic()}))
"""


# the two ways a rule takes a slot: in front of any command, or in the warm launcher of a segmentation step
LAUNCHERS = {
    "gpus": lambda script, slots: ["-m", "vispipe.gpus", "--slots-per-device", str(slots), "--", sys.executable,
                                   script],
    "warm --gpu": lambda script, slots: ["-m", "vispipe.warm", "--gpu", script],
}  # fmt: skip


def start(
    tmp_path: Path, gpus: str | None, slots: int = 1, hold: float = 1.0, via: str = "gpus", **env_extra
) -> subprocess.Popen:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "VISPIPE_GPUS", "VISPIPE_WARM", "XDG_RUNTIME_DIR")
    }
    env.update(TMPDIR=str(tmp_path), VISPIPE_GPU_SLOTS_PER_DEVICE=str(slots), **env_extra)  # lock files: our own
    if gpus is not None:
        env["VISPIPE_GPUS"] = gpus
    script = tmp_path / "job.py"
    script.write_text(JOB)
    cmd = [sys.executable, *LAUNCHERS[via](str(script), slots), str(hold)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(jobs: list[subprocess.Popen]) -> list[dict]:
    runs = []
    for job in jobs:
        out, err = job.communicate(timeout=120)
        assert job.returncode == 0, err
        runs.append(json.loads(out))
    return runs


def most_at_once(runs: list[dict]) -> int:
    return max(sum(r["start"] < t <= r["end"] for r in runs) for t in (x["end"] for x in runs))


def overlapping_share_a_device(runs: list[dict]) -> bool:
    return any(
        a is not b and a["device"] == b["device"] and a["start"] < b["end"] and b["start"] < a["end"]
        for a in runs
        for b in runs
    )


@pytest.mark.parametrize("via", LAUNCHERS)
def test_four_jobs_on_two_gpus_run_two_at_a_time_on_distinct_devices(tmp_path, via):
    t0 = time.monotonic()
    runs = finish([start(tmp_path, "2", via=via) for _ in range(4)])
    assert {r["device"] for r in runs} == {"0", "1"}
    assert most_at_once(runs) == 2, runs
    assert not overlapping_share_a_device(runs), runs
    assert time.monotonic() - t0 >= 2.0  # two rounds of one second


def test_slots_per_device_let_jobs_share_a_gpu_only_when_asked(tmp_path):
    runs = finish([start(tmp_path, "1", slots=2) for _ in range(2)])
    assert [r["device"] for r in runs] == ["0", "0"]
    assert most_at_once(runs) == 2 and overlapping_share_a_device(runs), runs


def test_a_listed_subset_of_devices_is_used_as_given(tmp_path):
    runs = finish([start(tmp_path, "3,5") for _ in range(2)])
    assert sorted(r["device"] for r in runs) == ["3", "5"]


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.parametrize("via", LAUNCHERS)
def test_a_killed_job_frees_its_slot(tmp_path, via):
    """Killing the job (the process Snakemake started: the launcher) frees its slot and stops the
    work on the GPU: the command runs in the launcher's process (exec), or in the warm worker's child
    that dies with its launcher; a command left running, orphaned, on a GPU whose slot was freed
    would share it with the next job unasked."""
    pid_file = tmp_path / "holder.pid"
    holder = start(tmp_path, "1", hold=60, via=via, JOB_PID_FILE=str(pid_file))
    lock = tmp_path / f"vispipe-gpu-slots-{os.getuid()}" / "gpu0-slot0.lock"
    deadline = time.monotonic() + 30
    while not (lock.exists() and lock.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    waiter = start(tmp_path, "1", hold=0.1, via=via)
    time.sleep(1.0)
    assert waiter.poll() is None, "the second job ran while the only slot was held"
    job = int(pid_file.read_text())
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    (run,) = finish([waiter])
    assert run["device"] == "0"
    deadline = time.monotonic() + 10
    while running(job):
        assert time.monotonic() < deadline, "the killed job's command still runs"
        time.sleep(0.05)


@pytest.mark.parametrize("env", [{"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "7"}, {}])
def test_under_slurm_or_without_gpus_the_command_runs_as_it_is(tmp_path, env):
    """Under Slurm (SLURM_JOB_ID set) the node's two GPUs are Slurm's to give: no slot is taken and the
    job's CUDA_VISIBLE_DEVICES stays as Slurm set it; without GPUs nothing is allocated either."""
    gpus = "2" if env else "0"  # two devices the allocator would share out; none at all
    (run,) = finish([start(tmp_path, gpus, **env)])
    assert run["device"] == env.get("CUDA_VISIBLE_DEVICES"), run
    assert not list(tmp_path.glob("vispipe-gpu-slots-*/*.lock")), "a slot was taken"


def test_steps_inside_a_job_holding_a_slot_run_on_its_gpu(tmp_path):
    """A shard job (vispipe/segment/shards.py) holds a slot while its steps take theirs through the same
    launcher: they run on the job's GPU at once, instead of waiting for the slot the job holds."""
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "VISPIPE_GPU_HELD")}
    env.update(TMPDIR=str(tmp_path), VISPIPE_GPUS="2")
    script = tmp_path / "job.py"
    script.write_text(JOB)
    gpus = [sys.executable, "-m", "vispipe.gpus", "--"]
    cmd = [*gpus, *gpus, *gpus, sys.executable, str(script), "0.1"]  # a job, a step in it, a step in that
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["device"] == "0"
    assert "waiting" not in proc.stderr
