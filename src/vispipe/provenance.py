"""Which run made this file: the code, the software, the device and the config behind a result.

Every result document (training and evaluation ``metrics.json``, ``instances.json``, ``tracks.json``,
the comparison) carries :func:`provenance` under a ``"provenance"`` key. Light on purpose: versions
come from the installed packages' metadata, so nothing heavy is imported just to name it, and torch
is imported only to name a device.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .config import params_json

PACKAGES = ("torch", "torchvision", "transformers")
GIT_TIMEOUT_S = 5
SOURCE_DIR = Path(__file__).resolve().parent


def package_version(name: str) -> str | None:
    """The installed version of ``name``, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(folder: Path, *args: str) -> str | None:
    """``git args`` in ``folder``: its output, or None when git is missing, fails or hangs."""
    # GIT_OPTIONAL_LOCKS=0: `git status` must not take the index lock of a checkout someone is committing in.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        proc = subprocess.run(
            ["git", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=GIT_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(folder: Path = SOURCE_DIR) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout holding ``folder``; ``(None, None)`` when there is none.

    Dirty: a tracked file of the checkout differs from the commit (untracked files, such as results,
    do not count). The folder's own files must be tracked: a package installed into a virtual
    environment inside some checkout is not that checkout's code.
    """
    if not _git(folder, "ls-files", "--", "."):
        return None, None
    commit = _git(folder, "rev-parse", "HEAD")
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    if commit is None or status is None:
        return None, None
    return commit.strip(), bool(status.strip())


def config_sha256(cfg: dict, blocks: Iterable[str]) -> str:
    """First 16 hex digits of the SHA-256 of the config blocks at the dotted paths ``blocks``, as
    canonical JSON (sorted keys): the very text a rule passes its script, so the hash changes
    exactly when Snakemake would rerun the step for a config edit."""
    return hashlib.sha256(params_json(cfg, *blocks).encode()).hexdigest()[:16]


def provenance(device: Any = None, cfg: dict | None = None, blocks: Iterable[str] = ()) -> dict:
    """The record of this run: vispipe's version, the git commit and dirty flag (None outside a
    checkout), the Python, torch, torchvision and transformers versions (None when not installed), the
    device (a GPU's model name or ``cpu``; None for steps that use none) and the hash of the config
    blocks the step read (None for steps that read none)."""
    commit, dirty = git_state()
    if device is not None:
        from .runtime import device_name  # torch, only for steps that ran on a device

        device = device_name(device)
    return {
        "vispipe": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        **{name: package_version(name) for name in PACKAGES},
        "device": device,
        "config_sha256": config_sha256(cfg, blocks) if cfg is not None else None,
    }
