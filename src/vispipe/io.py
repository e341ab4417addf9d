"""Atomic file writing: every output appears whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
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


class Spool:
    """A list of JSON-ready items kept on disk, not in memory: :meth:`append` writes each as one line of
    a temporary file beside ``near`` (removed by :meth:`close`); iterating reads them back in order.
    What a step collects frame by frame for a file it can only write at the end."""

    def __init__(self, near: str | Path):
        near = Path(near)
        near.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{near.name}.", suffix=".spool", dir=near.parent)
        self.path, self.count = Path(name), 0
        self._file = os.fdopen(fd, "w")

    def append(self, item: Any) -> None:
        with naming(self.path):
            self._file.write(json.dumps(item) + "\n")
            self._file.flush()  # to the OS as it comes: nothing piles up in this process
        self.count += 1

    def __iter__(self) -> Iterator[Any]:
        self._file.flush()
        with open(self.path) as f:
            for line in f:
                yield json.loads(line)

    def close(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def dump_json(obj: Any, f, indent: int, level: int = 0) -> None:
    """Write ``obj`` to the text file ``f`` as ``json.dumps(obj, indent=indent)`` would, where any
    iterable that is not a dict or a string (a list, a generator, a :class:`Spool`) is a list written
    item by item: a document larger than memory, written as it is read."""
    pad, end = "\n" + " " * indent * (level + 1), "\n" + " " * indent * level
    if isinstance(obj, dict):
        for n, (key, value) in enumerate(obj.items()):
            f.write(("{" if n == 0 else ",") + pad + json.dumps(key) + ": ")
            dump_json(value, f, indent, level + 1)
        f.write(end + "}" if obj else "{}")
    elif isinstance(obj, Iterable) and not isinstance(obj, (str, bytes)):
        empty = True
        for item in obj:
            f.write(("[" if empty else ",") + pad)
            dump_json(item, f, indent, level + 1)
            empty = False
        f.write("[]" if empty else end + "]")
    else:
        f.write(json.dumps(obj))


def write_json_streamed(path: str | Path, doc: Any, indent: int = 2) -> None:
    """:func:`dump_json` of ``doc`` into ``path``, atomically: the bytes :func:`write_json` writes
    (``indent`` 2), without the document's lists in memory."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        dump_json(doc, f, indent)
        f.write("\n")


def save_figure(fig, path: str | Path, **kwargs) -> None:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    plt.close(fig)
