#!/usr/bin/env python
"""Segment a shard of videos in one job: run the per-clip rules for --targets (their final outputs)
with a local Snakemake here, then write --out.

The inner Snakemake runs what is out of date and no more (its own bookkeeping, shared with a run
that is not sharded), on --cores, with the warm worker importing the ML stack once for the shard.
A failed step is retried --retries times, alone; the other videos go on (--keep-going), and their
outputs stay when one video fails. Then this job fails, naming the videos that are not done, and
writes no --out: rerunning it (the shard job's own retry, or the same command) runs only what is
missing. The inner Snakemake's messages go to <log>.snakemake.log beside --log (its warm worker's
to <log>.warm_worker.log); each step's own log is where an unsharded run puts it
(logs/segment/<video>/...).

The workflow runs this for each ``segment_shard`` job of a sharded run (vispipe.segment.shards);
run by hand from the workflow's folder it needs only the target files:

    python scripts/segment_shard.py --targets results/segment/demo/person/tracks.json \\
        --configfile config/demo.yaml --out shard.json
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from vispipe import cli
from vispipe.errors import UserError
from vispipe.io import write_json


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0], config=False)
    p.add_argument("--targets", nargs="+", required=True, help="the files to make (outputs of the per-clip rules)")
    p.add_argument("--snakefile", type=Path, help="the workflow's Snakefile (default: the working directory's)")
    p.add_argument("--configfile", nargs="*", default=[], help="the run's config files, in the order it read them")
    p.add_argument("--config-arg", nargs="*", default=[], metavar="KEY=VALUE", help="the run's --config entries")
    p.add_argument("--cores", type=int, default=1, help="cores of the inner Snakemake")
    p.add_argument("--retries", type=int, default=1, help="times a failed step is retried, alone, in this job")
    p.add_argument("--out", type=Path, required=True, help="output JSON: the targets made, and how long it took")
    return p


def inner_command(args) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", *args.targets, "--cores", str(args.cores)]
    if args.snakefile:
        cmd += ["--snakefile", str(args.snakefile)]
    cmd += ["--keep-going", "--retries", str(args.retries), "--nolock"]  # the outer run holds the lock
    if args.configfile:
        cmd += ["--configfile", *args.configfile]
    if args.config_arg:
        cmd += ["--config", *args.config_arg]
    return cmd


def main(args):
    t0 = time.monotonic()
    inner_log = args.log.with_suffix(".snakemake.log") if args.log else Path(os.devnull)
    env = dict(os.environ)
    if args.log:  # the inner run's warm worker logs beside this job's log, not over another shard's
        env["VISPIPE_WARM_LOG"] = str(args.log.with_suffix(".warm_worker.log"))
    cmd = inner_command(args)
    videos = videos_of(args.targets)
    cli.log.info("%d files of %d videos: %s", len(args.targets), len(videos), " ".join(cmd))
    cli.log.info("the inner Snakemake's messages: %s", inner_log)
    with open(inner_log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            code = proc.wait()
        except BaseException:  # SIGTERM (cli.Terminated), Ctrl-C: the inner run cancels its steps
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    missing = [t for t in args.targets if not Path(t).exists()]
    if code or missing:
        failed = videos_of(missing) or ["(see the log)"]
        raise UserError(
            f"the shard's inner Snakemake exited with {code}; not done: {', '.join(failed)}. The other "
            f"videos' outputs are kept; see {inner_log} and the failed steps' logs in logs/segment/<video>/. "
            "Fix the cause and rerun: only what is missing runs."
        )
    seconds = time.monotonic() - t0
    cli.log.info("done: %d videos in %.1f s", len(videos), seconds)
    write_json(args.out, {"videos": videos, "targets": args.targets, "seconds": round(seconds, 1)})


def videos_of(targets: list[str]) -> list[str]:
    """The video keys in results/segment/<video>/... paths, in order of first appearance."""
    return list(dict.fromkeys(Path(t).parts[2] for t in targets if len(Path(t).parts) > 2))


if __name__ == "__main__":
    cli.run(main, build_parser())
