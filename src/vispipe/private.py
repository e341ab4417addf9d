"""Folders for runtime files that only this user can touch: GPU slot locks, compiler caches.

A folder at a fixed name in a shared place (``/tmp/vispipe-gpu-slots-<uid>``) can be made first by
anyone on the machine. If it is someone else's, or a link, the files written into it go where that
someone chose: a lock file linked to ``~/.bashrc`` would be truncated and overwritten, a lock file
another user holds would make every job wait. So, as ssh-agent and systemd do, a runtime folder is
used only when ``lstat`` shows a real directory (not a link) owned by this user with no access for
group or others; it is created that way when missing, and anything else is refused with an error
that names it. Files in it are opened with ``O_NOFOLLOW``.

Standard library only: the GPU launcher imports it on every GPU step.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import UserError


class NotPrivate(UserError):
    """A runtime folder or file that is not this user's alone."""


def check_private(path: Path, st: os.stat_result | None = None) -> None:
    """Raise :class:`NotPrivate` unless ``path`` is a real directory owned by this user, mode 0700 or
    stricter (``st``: its ``lstat``, when already taken)."""
    st = st or os.lstat(path)
    why = None
    if stat.S_ISLNK(st.st_mode):
        why = f"a symbolic link to {os.readlink(path)}"
    elif not stat.S_ISDIR(st.st_mode):
        why = "not a folder"
    elif st.st_uid != os.geteuid():
        why = f"owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
    elif st.st_mode & 0o077:
        why = f"open to other users (mode {stat.S_IMODE(st.st_mode):o})"
    if why:
        raise NotPrivate(
            f"{path} is {why}: another user could take over the files written there. Remove it if it is "
            "yours, or point TMPDIR (or XDG_RUNTIME_DIR) at a folder only you can write"
        )


def private_dir(path: str | Path) -> Path:
    """``path``, created with mode 0700 when missing (its parent must exist), and checked with
    :func:`check_private` whether made now or found."""
    path = Path(path)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    check_private(path)
    return path


def runtime_dir(name: str) -> Path:
    """A private folder ``name`` for this user's runtime files on this machine: under
    ``$XDG_RUNTIME_DIR`` (the login's own 0700 folder) when it is set and private, else
    ``<TMPDIR>/<name>-<uid>``."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        try:
            check_private(Path(xdg))
        except (NotPrivate, OSError):
            pass  # not a usable runtime folder (unset by a login manager, or someone else's): TMPDIR's
        else:
            return private_dir(Path(xdg) / name)
    return private_dir(Path(tempfile.gettempdir()) / f"{name}-{os.geteuid()}")


def open_private_file(path: Path) -> int:
    """A read-write descriptor of the file ``path`` in a private folder, created 0600 when missing;
    never through a link (``O_NOFOLLOW``), and only when it is a regular file of this user's."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        if os.path.islink(path):
            raise NotPrivate(f"{path} is a symbolic link to {os.readlink(path)}; remove it") from e
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"owned by uid {st.st_uid}, not by you"
        raise NotPrivate(f"{path} is {what}: it was not made by this pipeline for you; remove it")
    return fd


def cache_dir(name: str) -> Path:
    """A private folder ``name`` for this user's caches that outlive a run:
    ``$XDG_CACHE_HOME/vispipe/<name>`` (``~/.cache/vispipe/<name>`` by default)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    base.mkdir(parents=True, exist_ok=True)
    return private_dir(private_dir(base / "vispipe") / name)


def point_compiler_caches() -> None:
    """torch.compile's inductor cache in :func:`cache_dir` unless ``TORCHINDUCTOR_CACHE_DIR`` is set:
    PyTorch's default, ``/tmp/torchinductor_<user>``, is a fixed name in a shared folder that another
    user can create first and fill with code that the compiler then loads."""
    if not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir("torchinductor"))
