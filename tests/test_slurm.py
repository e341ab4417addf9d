"""profiles/slurm on a real Slurm: a single-node cluster started here runs a slice of the demo.

The cluster is Debian's slurmctld + slurmd + munge (installed with apt-get when missing, as root),
started without systemd in a temporary directory with its own ports, munge socket and key. The node
declares one GPU (a fake one: ``File=/dev/null``) and the size of a GPU node, so the profile's own
requests (8 CPUs, 32 GB, one GPU) are granted as they would be on a cluster. There is no slurmdbd,
so ``sacct`` fails and the run uses ``--slurm-status-command squeue``. Every daemon the test starts
is stopped by its PID; jobs still queued are cancelled first. The test skips, saying why, where
Slurm cannot be installed or started (not root, no apt, daemons refusing to start).
"""

from __future__ import annotations

import csv
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, apt_install, copy_workflow, env_with_venv, stop_process
from vispipe.segment import shards

pytestmark = pytest.mark.slow

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = ["slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "sinfo", "munged"]
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"

# The slice, on the demo config: the whole classification chain (one epoch each), the still image,
# and three videos (the demo's and two tiny synthetic clips) in shards of two: two segment_shard jobs,
# not twelve step jobs. The downloads (fetch_cifar10, fetch_models) run on the submitting host as
# localrules; train_teacher, train_student, the evaluations, segment_image and segment_shard are GPU
# jobs; compare_models is a CPU job.
_DEMO = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["segment"]
VIDEO, TARGET_KEY = next((k, v["targets"][0]) for k, v in _DEMO["videos"].items())
IMAGE, IMAGE_TARGET = next((k, v["targets"][0]) for k, v in _DEMO["images"].items())
CLIPS = ["a0", "a1"]  # sort before the demo's video: shards [a0, a1] and [bigbuckbunny]
CLIPS_PER_JOB = 2
SHARD_STAMPS = [shards.stamp("0000"), shards.stamp("0001")]
TARGET = "results/classify/comparison.md"
TRACKS = f"results/segment/{VIDEO}/{TARGET_KEY}/tracks.json"
STILL = f"results/segment/images/{IMAGE}/{IMAGE_TARGET}/instances.json"
GPU_RULES = ("train_teacher", "train_student", "evaluate", "segment_shard", "segment_image")
CPU_RULES = ("compare_models",)
LOCAL_RULES = ("fetch_cifar10", "fetch_models")
# how Snakemake asks this cluster for job states: no slurmdbd here, so no sacct; squeue, soon and often
STATUS_OPTIONS = ("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
                  "--seconds-between-status-checks", "3")  # fmt: skip
TEACHER_EPOCHS = 4  # long enough to requeue the teacher's job after its second epoch
QUICK = {
    "classify": {
        "teacher": {"train": {"epochs": TEACHER_EPOCHS}},
        "student": {"train": {"epochs": 1, "clean_last_epochs": 0}},
    },
    "segment": {
        "frames": {"max_seconds": 1.0, "stride": 5},  # 5 frames of the demo's video, 2 of a clip's
        "videos": {k: {"path": f"clips/{k}.mp4", "targets": [TARGET_KEY]} for k in CLIPS},
    },
}


def _which(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).exists()), None)


def _ensure_slurm() -> None:
    """Install Debian's Slurm and munge when missing; skip with the reason when that fails."""
    if all(_which(b) for b in BINARIES):
        return
    why = apt_install(*PACKAGES)
    missing = [b for b in BINARIES if not _which(b)]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing) and could not be: {why}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _partitions() -> tuple[str, set[str]]:
    """The profile's partition for CPU jobs and every partition it names."""
    profile = yaml.safe_load(PROFILE.read_text())
    default = str(profile.get("default-resources", {}).get("slurm_partition", "cpu"))
    named = {str(r["slurm_partition"]) for r in profile.get("set-resources", {}).values() if "slurm_partition" in r}
    return default, named | {default}


class SlurmCluster:
    """slurmctld + slurmd + munged in ``root``, each a child process stopped by its PID."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.host = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def _spawn(self, name: str, cmd: list[str], **kw) -> subprocess.Popen:
        log = open(self.root / "log" / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, **kw)
        log.close()
        self.procs.append((name, proc))
        return proc

    def _wait(self, what: str, ok, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}")
            if ok():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}")

    def logs(self) -> str:
        out = []
        for f in sorted((self.root / "log").glob("*")):
            out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-2000:]}")
        return "\n".join(out)

    def start(self, default_partition: str, partitions: set[str]) -> None:
        (self.root / "log").mkdir()
        for d in ("state", "spool"):
            (self.root / d).mkdir()
        # munge: own key and socket; munged runs as the munge user and insists on its dir's modes
        munge = pwd.getpwnam("munge")
        mdir = self.root / "munge"
        mdir.mkdir(mode=0o755)
        key = mdir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        for p in (mdir, key):
            os.chown(p, munge.pw_uid, munge.pw_gid)
        mdir.chmod(0o755)
        self.socket = mdir / "munge.socket"
        self._spawn(
            "munged",
            [
                _which("munged"),
                "--foreground",
                f"--socket={self.socket}",
                f"--key-file={key}",
                f"--pid-file={mdir / 'munged.pid'}",
                f"--seed-file={mdir / 'munged.seed'}",
                f"--log-file={mdir / 'munged.log'}",
            ],
            user=munge.pw_uid,
            group=munge.pw_gid,
            extra_groups=[],
        )
        self._wait("the munge socket", self.socket.exists, 30)

        r = self.root
        lines = [
            "ClusterName=vispipetest",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.socket}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            # no cgroups, no systemd: plain process tracking
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            # cores and memory are consumable, so jobs share the node instead of taking it whole
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=500",
            # the node is declared as a GPU node (16 CPUs, 64 GB, one GPU) whatever this machine has,
            # so the profile's requests are granted unchanged; nothing enforces them (no cgroups)
            "SlurmdParameters=config_overrides",
            "ReturnToService=2",
            "MinJobAge=3600",  # finished jobs stay visible to squeue/scontrol for the checks
            "KillWait=10",
            "GresTypes=gpu",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs=16 RealMemory=64000 Gres=gpu:1 State=UNKNOWN",
        ]
        for p in sorted(partitions):
            default = "YES" if p == default_partition else "NO"
            lines.append(f"PartitionName={p} Nodes={self.host} Default={default} MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")
        (r / "gres.conf").write_text(f"NodeName={self.host} Name=gpu Count=1 File=/dev/null\n")

        # The job-step plugin strips SLURM_* (SLURM_CONF included) from the environment of the srun
        # it starts inside each job, so that srun would look for /etc/slurm/slurm.conf; a cluster
        # keeps its config there, this one cannot. A wrapper first on PATH puts SLURM_CONF back.
        self.bin = r / "bin"
        self.bin.mkdir()
        srun = self.bin / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {_which("srun")} "$@"\n')
        srun.chmod(0o755)

        self._spawn("slurmctld", [_which("slurmctld"), "-D"])
        self._wait("slurmctld", lambda: self.run("scontrol", "ping").returncode == 0)
        self._spawn("slurmd", [_which("slurmd"), "-D"])
        self._wait("an idle node", lambda: "idle" in self.run("sinfo", "-h", "-o", "%T").stdout)

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        """Cancel what is left of the jobs, then stop slurmd, slurmctld and munged by PID."""
        if any(n == "slurmctld" and p.poll() is None for n, p in self.procs):
            self.run("scancel", "--full", f"--partition={','.join(_partitions()[1])}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.run("squeue", "-h", "-t", "PD,R,CG").stdout.strip():
                time.sleep(1)
        for _name, proc in reversed(self.procs):
            stop_process(proc, grace=20)


@pytest.fixture(scope="module")
def slurm_cluster():
    _ensure_slurm()
    if os.geteuid() != 0:
        pytest.skip("starting slurmd (which launches jobs as their users) needs root")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        pytest.skip("the munge package did not create its munge user")
    root = Path(tempfile.mkdtemp(prefix="vispipe-slurm-"))
    root.chmod(0o755)  # munged (as the munge user) must reach its socket directory
    cluster = SlurmCluster(root)
    try:
        try:
            cluster.start(*_partitions())
        except (RuntimeError, OSError, subprocess.SubprocessError) as err:
            pytest.skip(f"the Slurm daemons did not start here: {err}\n{cluster.logs()}")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _sbatch_calls(output: str) -> dict[str, list[str]]:
    """{rule: [sbatch command line, ...]} from Snakemake's --verbose output."""
    calls: dict[str, list[str]] = {}
    for m in re.finditer(
        r"sbatch call: (sbatch .*?--comment '?rule_([A-Za-z0-9_]+?)(?:_wildcards_\S*?)?'? .*)", output
    ):
        calls.setdefault(m.group(2), []).append(m.group(1))
    return calls


def _job_ids(output: str) -> dict[str, list[str]]:
    """{rule: [Slurm job id, ...]} from the plugin's 'submitted' messages."""
    ids: dict[str, list[str]] = {}
    for m in re.finditer(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", output):
        rule = re.search(r"rule_([A-Za-z0-9_]+)", m.group(2)).group(1)
        ids.setdefault(rule, []).append(m.group(1))
    return ids


def test_demo_slice_through_slurm_profile(slurm_cluster, tmp_path):
    """The slice through the profile, with the teacher's job requeued mid-training: every rule's jobs
    are the submitted ones, with the profile's resources; the requeued job resumes from its state."""
    wf = copy_workflow(tmp_path / "wf")
    (wf / "config" / "slurm_test.yaml").write_text(yaml.safe_dump(QUICK))
    _make_clips(wf / "clips")
    profile = yaml.safe_load(PROFILE.read_text())
    profile["set-resources"]["segment_shard"]["clips"] = CLIPS_PER_JOB  # the profile's knob, made small
    (wf / "profiles" / "slurm" / "config.yaml").write_text(yaml.safe_dump(profile))
    env = env_with_venv()
    env["SLURM_CONF"] = str(slurm_cluster.conf)
    env["PATH"] = f"{slurm_cluster.bin}{os.pathsep}{env['PATH']}"
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        TARGET,
        STILL,
        *SHARD_STAMPS,
        "--profile",
        "profiles/slurm",
        "--configfile",
        "config/demo.yaml",
        "config/slurm_test.yaml",
        *STATUS_OPTIONS,
        "--verbose",
    ]
    t0 = time.monotonic()
    out_file = tmp_path / "snakemake.out"
    with open(out_file, "w") as sink:
        proc = subprocess.Popen(cmd, cwd=wf, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        requeued = _requeue_after_epoch_2(slurm_cluster, proc, wf / "results/classify/teacher", out_file)
        proc.wait(timeout=1500)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = out_file.read_text()
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((wf / "logs").rglob("*.log")))
        pytest.fail(f"snakemake via Slurm failed ({proc.returncode}):\n{out[-8000:]}\n{logs}\n{slurm_cluster.logs()}")
    print(f"slice through Slurm: {time.monotonic() - t0:.0f} s")

    # the outputs
    for rel in [
        TARGET,
        TRACKS,
        STILL,
        *SHARD_STAMPS,
        *(f"results/segment/{k}/{TARGET_KEY}/overlay.mp4" for k in CLIPS),
        f"results/segment/{VIDEO}/{TARGET_KEY}/instances.json",
        f"results/segment/{VIDEO}/{TARGET_KEY}/masks.rle.json",
        "results/classify/comparison.csv",
        "results/classify/teacher/model.pt",
        "results/classify/student/best.pt",
        "results/classify/teacher/eval/metrics.json",
        "results/classify/student/eval/metrics.json",
    ]:
        assert (wf / rel).stat().st_size > 0, rel
    assert "teacher" in (wf / TARGET).read_text().lower()

    # the download stayed on the submitting host; the compute steps went through sbatch
    calls = _sbatch_calls(out)
    assert not calls.keys() & set(LOCAL_RULES), calls.keys()
    assert set(GPU_RULES + CPU_RULES) <= calls.keys(), calls.keys()
    # the demo's no-KD variant is its own train_student job and evaluate job
    assert len(calls["evaluate"]) == 3 and len(calls["train_student"]) == 2
    # three videos, two per job: two sbatch submissions for every step of them
    assert len(calls["segment_shard"]) == 2, calls["segment_shard"]
    assert not calls.keys() & {"extract_frames", "segment_first", "propagate", "render_overlay"}, calls.keys()

    # the GPU rules asked for a GPU, with the profile's partition, CPUs, memory, time and --requeue
    for rule in GPU_RULES:
        res = profile["set-resources"][rule]
        for call in calls[rule]:
            assert "--gpus=1" in call, call
            assert f"-p {res['slurm_partition']}" in call, call
            assert f"--cpus-per-task={res['cpus_per_task']}" in call, call
            assert f"--mem {res['mem_mb']}" in call, call
            assert f"-t {res['runtime']}" in call, call
            assert "--requeue" in call, call
    # the CPU rules did not, and went to the default partition with the default resources
    default = profile["default-resources"]
    for rule in CPU_RULES:
        (call,) = calls[rule]
        assert "--gpu" not in call, call
        assert f"-p {default['slurm_partition']}" in call and f"--mem {default['mem_mb']}" in call, call

    # and Slurm granted it: the GPU jobs hold gres/gpu, the CPU job does not
    ids = _job_ids(out)
    assert {rule: len(jobs) for rule, jobs in ids.items()} == {rule: len(c) for rule, c in calls.items()}, (ids, calls)
    for rule, jobs in ids.items():
        for job in jobs:
            info = slurm_cluster.run("scontrol", "show", "job", job).stdout
            assert "JobState=COMPLETED" in info, info
            wants_gpu = re.search(r"TresPerJob=\S*gpu:1", info) is not None
            assert wants_gpu == (rule in GPU_RULES), (rule, info)

    # every Slurm job's log is kept, per rule
    slurm_logs = wf / "logs" / "slurm"
    for rule in GPU_RULES + CPU_RULES:
        kept = list((slurm_logs / f"rule_{rule}").rglob("*.log"))
        assert kept and all(p.stat().st_size > 0 for p in kept), rule
    assert not any((slurm_logs / f"rule_{rule}").exists() for rule in LOCAL_RULES)

    # the teacher's job, requeued after its second epoch (what preemption does), ran twice and resumed
    info = slurm_cluster.run("scontrol", "show", "job", requeued).stdout
    assert requeued in ids["train_teacher"] and "Restarts=1" in info, info
    text = (wf / "logs/classify/train_teacher.log").read_text()  # the second run's log
    resumed = re.search(rf"resuming from \S+ at epoch (\d+)/{TEACHER_EPOCHS}", text)
    assert resumed and int(resumed.group(1)) >= 3, text[-3000:]  # epoch 2 had finished: not redone
    assert f"epoch 1/{TEACHER_EPOCHS} " not in text
    history = csv.DictReader(open(wf / "results/classify/teacher/history.csv"))
    assert [int(row["epoch"]) for row in history] == list(range(1, TEACHER_EPOCHS + 1))
    assert not (wf / "results/classify/teacher/resume").exists()  # removed once the outputs were written


@pytest.mark.parametrize("profile", ["slurm", "local"])
def test_profile_dry_run(profile, tmp_path):
    """Both profiles parse, and every GPU step of the demo asks for one GPU (no cluster needed)."""
    wf = copy_workflow(tmp_path / "wf")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "--profile",
        f"profiles/{profile}",
        "--configfile",
        "config/demo.yaml",
    ]
    proc = subprocess.run(cmd, cwd=wf, env=env_with_venv(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    rules = re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\S|\Z)", out, flags=re.M | re.S)
    assert rules, out[-3000:]
    gpu_rules = {"train_teacher", "train_student", "evaluate", "segment_first", "propagate", "segment_image"}
    gpu_rules |= {"segment_shard"}  # the Slurm profile's videos, in shards
    for rule, block in rules:
        res = re.search(r"resources: (.*)", block)
        asks_gpu = res is not None and re.search(r"\bgpu=1\b", res.group(1)) is not None
        assert asks_gpu == (rule in gpu_rules), (rule, block)


def test_profile_submits_no_job_arrays():
    """One sbatch job per step, no job arrays: with the pinned Slurm plugin (2.8.0), a rule with more
    ready jobs than free `jobs` slots is held back and never submitted, and arrays saved milliseconds
    (bench/slurm_arrays.py; docs/clusters-and-containers.md#job-arrays-measured-left-off)."""
    profile = yaml.safe_load(PROFILE.read_text())
    arrays = {k: v for k, v in profile.items() if k.startswith("slurm-array")}
    assert not arrays, f"{arrays}: rerun bench/slurm_arrays.py --limit-check with this plugin before turning arrays on"


def _make_clips(folder: Path) -> None:
    from vispipe.segment.evaluation.synthetic import make_clip, save_clip

    for i, key in enumerate(CLIPS):
        save_clip(make_clip(6, (96, 128), seed=i), folder / f"{key}.mp4", folder / "gt" / key)


def _requeue_after_epoch_2(cluster: SlurmCluster, proc: subprocess.Popen, out_dir: Path, out_file: Path) -> str:
    """Once the job training into ``out_dir`` has saved epoch 2's state, ``scontrol requeue`` it, as
    preemption does: Slurm kills it and queues it again (the profile submits with --requeue). Start
    it at once rather than after the two-minute begin time Slurm gives a requeued job. Its job id."""
    deadline = time.monotonic() + 900
    while _saved_epoch(out_dir / "resume/state.pt") < 2:
        assert proc.poll() is None, out_file.read_text()[-5000:]
        assert time.monotonic() < deadline, "the training never finished epoch 2"
        time.sleep(0.3)
    running = cluster.run("squeue", "-h", "-t", "R", "-o", "%i %k").stdout.splitlines()
    (job,) = [line.split()[0] for line in running if "rule_train_teacher" in line]
    requeue = cluster.run("scontrol", "requeue", job)
    assert requeue.returncode == 0, requeue.stderr
    while cluster.run("squeue", "-h", "-j", job, "-o", "%T").stdout.strip() != "PENDING":
        assert time.monotonic() < deadline, "the requeued job never went back to the queue"
        time.sleep(0.5)
    cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now")
    return job


def _saved_epoch(state: Path) -> int:
    """The last finished epoch in a resume state (0 while there is none); it is written atomically."""
    import torch

    try:
        return int(torch.load(state, weights_only=True)["epoch"]) if state.exists() else 0
    except (OSError, RuntimeError, EOFError):  # replaced between exists() and the read
        return 0
