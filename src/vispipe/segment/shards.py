"""Many clips per job: the videos of a dataset split into shards, each shard one Snakemake job.

Every segmentation step is its own Snakemake job (frames -> first frame -> propagation -> overlay,
four per clip), which a workstation runs well but a cluster does not: a dataset of 1,000 clips is
about 4,000 ``sbatch`` jobs, each paying Python, CUDA and model loading, and many clusters cap jobs
per user. A *sharded* run (``--set-resources segment_shard:clips=N``, which profiles/slurm sets)
asks instead for one ``segment_shard`` job per N videos. That job runs ``scripts/segment_shard.py``,
which runs the same per-clip rules for its videos with a local Snakemake on the node it landed on:

- the warm worker (vispipe.warm) imports the ML stack once for the whole shard;
- the inner Snakemake's own bookkeeping decides what runs, so a shard rerun redoes only the steps
  out of date: editing one video's entry reruns its shard's job, and in it that video's steps only;
- a failed clip is retried alone (the inner ``--retries``) while its neighbours go on
  (``--keep-going``); their outputs stay, and the shard job's own retry runs only what is missing.

The outer run's trigger is this module's :func:`digest`: the config a shard's steps read (the
segment block without the other videos, the segmentation threads) and the code of its steps.

Standard library only: the Snakefile imports this module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .layout import SEG

SHARDS = f"{SEG}/shards"  # results/segment/shards/<shard>.json, one per shard job
RULE = "segment_shard"
# the keys of the segment block that list samples; a shard's digest keeps its own videos only
SAMPLE_KEYS = ("videos", "images", "samples", "globs")
NO_RERUN = ("keep_frames",)  # how long the frames stay on disk: no step computes anything else


def clips_per_job(set_resources: Mapping | None) -> int:
    """N of ``--set-resources segment_shard:clips=N`` (a profile's ``set-resources``); 0 (one job per
    step) when unset."""
    res = (set_resources or {}).get(RULE)
    if res is None:
        return 0
    value = res.get("clips")
    if hasattr(value, "raw"):  # Snakemake's Resource: from a profile, an expression not yet evaluated
        value = value.raw
    value = value or 0
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = -1
    if n < 0:
        raise ValueError(
            f"set-resources {RULE}:clips must be a whole number of videos per job (0: no shards), not {value!r}"
        )
    return n


def split(videos: Iterable[str], per_job: int) -> dict[str, list[str]]:
    """The videos, sorted by key, in shards of ``per_job``: {"0000": [keys], "0001": [...], ...}.

    Sorted, so that a video added at the end of the order changes the last shard only.
    """
    keys = sorted(videos)
    return {f"{i // per_job:04d}": keys[i : i + per_job] for i in range(0, len(keys), per_job)}


def stamp(shard: str) -> str:
    """The file a shard job writes when all of its videos' outputs are done."""
    return f"{SHARDS}/{shard}.json"


def digest(seg: Mapping, videos: Iterable[str], *extra) -> str:
    """A short hash of what a shard's steps read: ``seg`` without its samples but with ``videos``'
    entries, and ``extra`` (code hashes, threads)."""
    shared = {k: v for k, v in seg.items() if k not in SAMPLE_KEYS and k not in NO_RERUN}
    blob = json.dumps([shared, {v: seg["videos"][v] for v in videos}, list(extra)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def in_load_order(loaded: Sequence[str | Path], given: Sequence[str | Path]) -> list[str | Path]:
    """Every config file a run read (``loaded``: the Snakefiles' ``configfile:`` lines, the workflow's
    defaults among them, and ``given``: ``--configfile``), in the order Snakemake applies them: the
    Snakefiles' first, the command line's last, so a shard's inner run merges them as the run did."""
    cli = {Path(p).absolute() for p in given}
    return [p for p in loaded if Path(p).absolute() not in cli] + list(given)


def relative(path: str | Path) -> str:
    """``path``, relative to the working directory when inside it: the shard jobs' commands do not
    change when the folder moves."""
    path, cwd = Path(path).absolute(), Path.cwd()
    return str(path.relative_to(cwd) if path.is_relative_to(cwd) else path)


def passed_on(configfiles: Sequence[str | Path], config_args: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """A run's config files (:func:`relative`) and ``--config`` entries, as a shard job passes them to
    its inner Snakemake (arguments: the rule quotes each with ``:q``)."""
    return [relative(p) for p in configfiles], list(config_args or ())
