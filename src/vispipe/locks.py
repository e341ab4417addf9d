"""Snakemake's directory lock after a hard kill: released when, and only when, its owner is dead.

Snakemake locks the working directory while it runs (``.snakemake/locks/N.{input,output}.lock``)
and removes the lock when it ends. A run killed outright (SIGKILL, the OOM killer, a lost node, a
closed laptop) cannot remove it, and every later run stops with ``LockException`` until someone
runs ``--unlock`` by hand, which is also how a live run's lock gets removed by mistake.

So the workflow records who holds each lock file (:func:`record_owner`, from ``onstart``: host,
process id and the process's start time) and, before the next run takes its own lock, removes the
lock files whose owner is provably gone (:func:`release_stale`): same host, and no process with that
id and start time. A lock without a record (another tool's, or taken in the moment before the
record was written) or held from another host (a shared filesystem) is never touched: Snakemake
then refuses as before, and ``--unlock`` stays the manual answer.

Standard library and psutil (a dependency of Snakemake) only: the Snakefile imports this module.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path

import psutil

LOCKDIR = Path(".snakemake/locks")
OWNER = ".owner.json"  # beside each lock file: <lock>.owner.json


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:  # exists, but we may not look at it: count it as alive
        return -1.0


def record_owner(lockfiles: Iterable[str | Path], pid: int | None = None) -> None:
    """Write ``<lock>.owner.json`` beside each of this process's (``pid``'s) lock files."""
    pid = pid or os.getpid()
    record = json.dumps({"host": socket.gethostname(), "pid": pid, "started": _started(pid)})
    for lock in lockfiles:
        Path(f"{lock}{OWNER}").write_text(record)


def owner_alive(record: dict) -> bool:
    """Whether the process a record names may still be running (``True`` when it cannot be told)."""
    if record.get("host") != socket.gethostname():
        return True  # another machine's run: nothing here can tell whether it is alive
    started = _started(int(record["pid"]))
    if started is None:
        return False
    # the same id, started at another time: the id was reused by a new process
    return started == -1.0 or record.get("started") is None or abs(started - record["started"]) < 1.0


def release_stale(lockdir: Path = LOCKDIR) -> list[Path]:
    """Remove the lock files of ``lockdir`` whose recorded owner is dead; return them."""
    released = []
    for owner in sorted(lockdir.glob(f"*.lock{OWNER}")):
        try:
            record = json.loads(owner.read_text())
        except (OSError, ValueError):
            continue  # being written right now, or not ours: leave it
        if owner_alive(record):
            continue
        lock = owner.with_name(owner.name.removesuffix(OWNER))
        lock.unlink(missing_ok=True)
        owner.unlink(missing_ok=True)
        released.append(lock)
    return released
