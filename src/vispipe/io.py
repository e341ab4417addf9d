"""Atomic file writing: every output appears whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left on the device, disk quota exceeded


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """A full disk while writing ``path`` raises an OSError that names ``path`` (a failed write()
    names no file), so the error says which output could not be written."""
    try:
        yield
    except OSError as e:
        if e.errno in FULL and e.filename != str(path):
            raise OSError(e.errno, os.strerror(e.errno), str(path)) from e
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with naming(path):
            yield tmp_path
        os.chmod(tmp_path, 0o666 & ~umask())  # mkstemp makes 0600 files; honour the umask
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save``, serialised in memory first and then written by Python, so that a full disk
    raises OSError(ENOSPC): torch's own writer reports it as "unexpected pos", with any file."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with open(path, "wb") as f:
        f.write(buffer.getbuffer())


def umask() -> int:
    """The process's umask, read without changing it: Linux shows it in /proc/self/status. Setting
    it to read it (``os.umask(0)``, then back) leaves a moment in which a file another thread
    creates gets mode 0666; that is the fallback only where /proc does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)  # the strictest value in the window, not 0
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_figure(fig, path: str | Path, **kwargs) -> None:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    plt.close(fig)
