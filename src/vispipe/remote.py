"""Inputs in object storage: a path of the config written as a URL (``s3://bucket/key``) names a file
or folder in storage, which Snakemake's storage plugin for its scheme downloads before the step that
reads it (``snakemake-storage-plugin-s3`` for ``s3://``); any other path is a file on this machine.

The rule files turn each such path into an input of a step with :func:`source`: a URL through
Snakemake's ``storage()``, a local path flagged ``local()`` (so that ``--default-storage-provider``,
which sends the results to storage, does not look for it there). A sample sheet is read while the run
is planned, before any job: :func:`fetch` downloads it then. The checks that a file exists, which the
workflow runs on local paths before planning, leave URLs to the plugin (:func:`is_url`).

This module runs in the workflow layer (dry runs on a login node): the standard library, and
Snakemake itself inside the functions the rule files call.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# a scheme as RFC 3986 spells it, then "://": s3://, gs://, https://, ... (never a Windows drive, C:\)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: Any) -> bool:
    """Whether ``path`` is a storage URL (``s3://bucket/key``) rather than a local path."""
    return isinstance(path, str) and _URL.match(path) is not None


def source(storage, path: str | list) -> Any:
    """``path`` (a file or folder the config names) as an input of a step: a storage URL through
    ``storage`` (the workflow's ``storage`` object: the plugin downloads it before the step, with the
    credentials and endpoint it reads from environment variables or ``--storage-s3-*`` options); any
    other path as a file on this machine, ``local()``. ``[]`` (no prompt file) stays no input."""
    from snakemake.io import local

    if not path:
        return path
    return storage(path) if is_url(path) else local(path)


def fetch(storage, url: str) -> Path | None:
    """The local copy of the file at storage URL ``url``, downloaded now by the plugin (into
    ``.snakemake/storage/``, as it lays out its downloads); None when storage has no such file."""
    from snakemake.common import async_run

    obj = storage(url).flags["storage_object"]
    if not async_run(obj.managed_exists()):
        return None
    async_run(obj.managed_retrieve())
    return obj.local_path()


def from_storage_option(path: str) -> list[str]:
    """extract_frames' ``--from-storage`` for a video or frame folder at a storage URL (Snakemake
    deletes its download after the run: a folder's frames are hard-linked, not linked to it), else
    nothing (as arguments: the rule quotes each)."""
    return ["--from-storage"] if is_url(path) else []
