"""One GPU per job on a multi-GPU machine: a lock-file slot allocator in front of a step's command.

Snakemake counts GPUs as a resource (the local profile's ``resources: gpu=N``) but never says which
one a job gets, so every job used to land on ``cuda:0``. The GPU rules therefore start as

    python -m vispipe.gpus COMMAND ...

which takes a free slot (device ``d``, slot ``s``), holds an exclusive ``flock`` on its lock file
for as long as COMMAND runs, and runs COMMAND with ``CUDA_VISIBLE_DEVICES=d`` (by ``exec``: the
lock file descriptor stays open in COMMAND's process, so the slot is held exactly as long as the
job lives; a killed job's slot is freed by the kernel). With every slot taken it waits.

- The devices: ``$VISPIPE_GPUS`` (a count, or a list of ids; for tests and for reserving a subset),
  else ``$CUDA_VISIBLE_DEVICES`` as Snakemake was started with it, else ``nvidia-smi -L``. None
  found (a CPU machine): COMMAND runs as it is.
- Under Slurm (``$SLURM_JOB_ID``) the scheduler has already given the job its GPUs: COMMAND runs as
  it is.
- Inside a job that holds a slot already (``$VISPIPE_GPU_HELD``, which this sets: a shard job's
  inner steps, vispipe.segment.shards): COMMAND runs as it is, on the job's GPU.
- ``--slots-per-device``, default ``$VISPIPE_GPU_SLOTS_PER_DEVICE`` (which the workflow sets from
  the config key ``gpu_slots_per_device``) or 1: jobs that may share one GPU.
- The lock files live in ``$XDG_RUNTIME_DIR/vispipe-gpu-slots/`` (else ``$TMPDIR/vispipe-gpu-slots-<uid>/``),
  per user and machine, so two Snakemake runs on one machine share the slots too. The folder must be
  this user's alone, and lock files are never followed through a link (vispipe/private.py): one
  another user made is refused with an error naming it, never written to nor waited on.

Standard library only: the launcher starts in milliseconds, and it never initialises CUDA.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .errors import UserError
from .private import open_private_file, runtime_dir

POLL_S = 0.2
HELD = "VISPIPE_GPU_HELD"  # set in a job holding a slot; the steps it starts share it


def devices() -> list[str]:
    """The GPU ids jobs may use on this machine (strings, as CUDA_VISIBLE_DEVICES takes them)."""
    given = os.environ.get("VISPIPE_GPUS")
    if given is None:
        given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        given = given.strip()
        if given.isdigit() and "VISPIPE_GPUS" in os.environ:  # a count
            return [str(i) for i in range(int(given))]
        return [d for d in given.split(",") if d.strip() and d.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def lock_dir() -> Path:
    """This user's private folder of slot lock files (refused when someone else made it)."""
    return runtime_dir("vispipe-gpu-slots")


def claim(ids: list[str], slots_per_device: int, folder: Path | None = None) -> tuple[str, int]:
    """Take a free slot, waiting while every slot is taken: (device id, lock file descriptor).

    The descriptor is inheritable, so the slot stays taken across ``exec`` until the process ends.
    Slots are tried device by device, first slots first, so that jobs spread over the devices.
    """
    folder = folder or lock_dir()
    order = [(d, s) for s in range(slots_per_device) for d in ids]
    waited = False
    while True:
        for device, slot in order:
            fd = open_private_file(folder / f"gpu{device}-slot{slot}.lock")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.set_inheritable(fd, True)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return device, fd
        if not waited:
            print(f"vispipe.gpus: all {len(order)} GPU slots are taken; waiting for one", file=sys.stderr, flush=True)
            waited = True
        time.sleep(POLL_S)


def take_slot(slots_per_device: int | None = None) -> str | None:
    """Take a GPU slot for this process (and what it execs or hands the job to) and point
    ``CUDA_VISIBLE_DEVICES`` at its GPU; None where there is nothing to allocate."""
    if slots_per_device is None:
        slots_per_device = int(os.environ.get("VISPIPE_GPU_SLOTS_PER_DEVICE", "1"))
    if os.environ.get(HELD):
        return os.environ[HELD]
    ids = [] if os.environ.get("SLURM_JOB_ID") else devices()
    if not ids:
        return None
    device, _ = claim(ids, slots_per_device)
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    os.environ[HELD] = device
    return device


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m vispipe.gpus", description=__doc__.split("\n\n")[0])
    default = int(os.environ.get("VISPIPE_GPU_SLOTS_PER_DEVICE", "1"))
    p.add_argument("--slots-per-device", type=int, default=default, help="jobs that may share one GPU")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given")
    if args.slots_per_device < 1:
        p.error("--slots-per-device must be at least 1")
    try:
        take_slot(args.slots_per_device)
    except UserError as e:
        print(f"vispipe.gpus: {e}", file=sys.stderr)
        sys.exit(2)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
