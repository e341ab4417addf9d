#!/usr/bin/env python
"""Slurm job arrays (``--slurm-array-jobs``) against one ``sbatch`` per job, on a real Slurm.

Starts the single-node cluster of ``tests/test_slurm.py`` (slurmctld + slurmd + munged, as root,
one fake GPU, 16 CPUs declared) and runs the same DAG through ``profiles/slurm`` once per mode:

- **per job**: the profile as it is (one ``sbatch`` per job);
- **arrays**: the profile plus ``slurm-array-jobs: all`` (the jobs of one rule that the scheduler
  hands over together go in one array).

The DAG, on the demo config: the classification chain over ``--seeds`` seeds with the demo's no-KD
variant (per seed: the teacher, the student, the variant, their three evaluations; then the
comparison and the ablation table), one epoch each, and ``--clips`` tiny synthetic videos unsharded
(``segment_shard: clips: 0``: four step jobs per video). ``sbatch`` is wrapped (first on PATH) to log
each call's start, end, rule and ``--array`` range, so the table counts submissions and the time
spent in them, beside the run's wall time.

``--limit-check`` adds two runs of ``--limit-clips`` videos alone with ``--jobs 2``, per job and with
arrays, each stopped after ``--limit-timeout`` seconds if it has not finished. With arrays, the
plugin (2.8.0) holds back the jobs of a rule it is handed while more of that rule's jobs are ready
than it was handed (or, handed one, while two or more wait), never submits them, and the scheduler
counts them as running: with 5 videos and 2 job slots, no job is ever submitted.

``--direct N`` times N plain ``sbatch --hold --wrap true`` calls against one ``--array=1-N`` call
(cancelled at once): what a submission costs this slurmctld, without Snakemake. ``--from-json``
prints the tables of a JSON this script wrote.

    python bench/slurm_arrays.py [--seeds 3] [--clips 4] [--modes per-job arrays] [--repeats 1]
                                 [--limit-check] [--direct 100] [--keep] [--out bench/out/slurm_arrays.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the cluster and the workflow copy of the Slurm test

import pytest  # noqa: E402
from test_slurm import PROFILE, STATUS_OPTIONS, TARGET_KEY, SlurmCluster, _ensure_slurm, _partitions  # noqa: E402

from conftest import copy_workflow, env_with_venv  # noqa: E402

MODES = {"per-job": {}, "arrays": {"slurm-array-jobs": "all"}}
CLASSIFY_TARGETS = ["results/classify/comparison.md", "results/classify/ablation.md"]

SBATCH_WRAPPER = """#!/bin/sh
# sbatch, logging one line per call: start end exit-status comment array-range
t0=$(date +%s.%N)
out=$({sbatch} "$@")
rc=$?
t1=$(date +%s.%N)
comment=-; array=-; prev=
for a in "$@"; do
    [ "$prev" = "--comment" ] && comment=$a
    case $a in --array=*) array=${{a#--array=}} ;; esac
    prev=$a
done
printf '%s %s %s %s %s\\n' "$t0" "$t1" "$rc" "$comment" "$array" >> {log}
[ -n "$out" ] && printf '%s\\n' "$out"
exit $rc
"""


def bench_config(clips: list[str], seeds: int) -> dict:
    return {
        "classify": {
            "seeds": list(range(seeds)),
            "teacher": {"train": {"epochs": 1}},
            "student": {"train": {"epochs": 1, "clean_last_epochs": 0}},
        },
        "segment": {
            "frames": {"max_seconds": 1.0, "stride": 5},
            "videos": {k: {"path": f"clips/{k}.mp4", "targets": [TARGET_KEY]} for k in clips},
        },
    }


def make_clips(folder: Path, n: int) -> list[str]:
    from vispipe.segment.evaluation.synthetic import make_clip, save_clip

    keys = [f"c{i}" for i in range(n)]
    for i, key in enumerate(keys):
        save_clip(make_clip(6, (96, 128), seed=i), folder / f"{key}.mp4", folder / "gt" / key)
    return keys


def rule_of(comment: str) -> str:
    m = re.match(r"'?rule_([A-Za-z0-9_]+?)(?:_wildcards_.*)?'?$", comment)
    return m.group(1) if m else comment


def run_mode(
    cluster: SlurmCluster,
    work: Path,
    mode: str,
    *,
    seeds: int,
    clips: int,
    classify: bool = True,
    jobs: int | None = None,
    timeout: float = 3600,
) -> dict:
    """One Snakemake run through the profile in a fresh copy of the workflow; its sbatch calls."""
    wf = copy_workflow(work / "wf")
    keys = make_clips(wf / "clips", clips)
    (wf / "config" / "bench.yaml").write_text(yaml.safe_dump(bench_config(keys, seeds)))
    profile = yaml.safe_load(PROFILE.read_text())
    profile["set-resources"]["segment_shard"]["clips"] = 0  # unsharded: a job per step
    profile.update(MODES[mode])
    (wf / "profiles" / "slurm" / "config.yaml").write_text(yaml.safe_dump(profile))

    wrap_dir = work / "bin"
    wrap_dir.mkdir()
    log = work / "sbatch.log"
    log.touch()
    real = shutil.which("sbatch", path=os.environ["PATH"])
    (wrap_dir / "sbatch").write_text(SBATCH_WRAPPER.format(sbatch=real, log=log))
    (wrap_dir / "sbatch").chmod(0o755)

    env = env_with_venv()
    env["SLURM_CONF"] = str(cluster.conf)
    env["PATH"] = os.pathsep.join([str(wrap_dir), str(cluster.bin), env["PATH"]])
    targets = (CLASSIFY_TARGETS if classify else []) + [f"results/segment/{k}/{TARGET_KEY}/overlay.mp4" for k in keys]
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        *targets,
        "--profile",
        "profiles/slurm",
        "--configfile",
        "config/demo.yaml",
        "config/bench.yaml",
        *STATUS_OPTIONS,
        *(["--jobs", str(jobs)] if jobs else []),
        "--verbose",
    ]
    out_file = work / "snakemake.out"
    t0 = time.time()
    with open(out_file, "w") as sink:
        proc = subprocess.Popen(cmd, cwd=wf, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # Snakemake cancels what it submitted; the cluster's stop, anything left
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        rc = None
    wall = time.time() - t0
    out = out_file.read_text()
    # jobs with no input from another compute job: each seed's teacher and no-KD variant, each video's frames
    ready_at_start = (2 * seeds if classify else 0) + clips
    if rc not in (0, None):
        print(out[-6000:], file=sys.stderr)

    calls = []
    for line in log.read_text().splitlines():
        start, end, status, comment, array = line.split(" ", 4)
        lo, _, hi = array.partition("-")
        tasks = int(hi) - int(lo) + 1 if array != "-" else 1
        calls.append(
            {
                "rule": rule_of(comment),
                "start": float(start) - t0,
                "end": float(end) - t0,
                "rc": int(status),
                "tasks": tasks,
            }
        )
    calls.sort(key=lambda c: c["start"])
    m = re.search(r"^total\s+(\d+)", out, flags=re.M)
    return {
        "mode": mode,
        "jobs_limit": jobs,
        "finished": rc == 0,
        "returncode": rc,
        "wall_s": round(wall, 1),
        "dag_jobs": int(m.group(1)) if m else None,
        "ready_at_start": ready_at_start,
        "array_warnings": len(re.findall(r"Array job submission does not allow", out)),
        "held_back": len(re.findall(r"Array job collection incomplete", out)),
        "calls": [{k: round(v, 3) if isinstance(v, float) else v for k, v in c.items()} for c in calls],
    }


def summarize(run: dict) -> dict:
    """Counts and times from a run's sbatch calls (seconds since Snakemake started)."""
    calls = run["calls"]
    per_rule: dict[str, dict[str, int]] = {}
    for c in calls:
        r = per_rule.setdefault(c["rule"], {"sbatch": 0, "jobs": 0})
        r["sbatch"] += 1
        r["jobs"] += c["tasks"]
    # the jobs ready when the run starts (no inputs from other compute jobs): all submitted when?
    ready_submitted, n = None, 0
    for c in calls:
        n += c["tasks"]
        if n >= run["ready_at_start"]:
            ready_submitted = c["end"]
            break
    return {
        "sbatch_calls": len(calls),
        "jobs_submitted": sum(c["tasks"] for c in calls),
        "sbatch_seconds": round(sum(c["end"] - c["start"] for c in calls), 3),
        "first_sbatch_s": calls[0]["start"] if calls else None,
        "ready_submitted_s": ready_submitted,
        "all_submitted_s": max(c["end"] for c in calls) if calls else None,
        "per_rule": per_rule,
        "failed_submissions": sum(c["rc"] != 0 for c in calls),
    }


def direct(cluster: SlurmCluster, n: int) -> dict:
    """``n`` sbatch calls of a held one-line job against one array of ``n`` tasks, then scancel."""
    sbatch = ["sbatch", "--parsable", "--hold", "-p", _partitions()[0], "--mem", "100", "-o", "/dev/null"]
    procs = []
    t = time.monotonic()
    procs += [cluster.run(*sbatch, "--wrap", "true") for _ in range(n)]
    single = time.monotonic() - t
    t = time.monotonic()
    procs.append(cluster.run(*sbatch, f"--array=1-{n}", "--wrap", "true"))
    array = time.monotonic() - t
    failed = [p.stderr for p in procs if p.returncode != 0]
    cluster.run("scancel", *(p.stdout.strip() for p in procs if p.returncode == 0))
    if failed:
        raise RuntimeError(f"{len(failed)} sbatch calls failed: {failed[0]}")
    return {"n": n, "individual_s": round(single, 3), "array_s": round(array, 3)}


def start_cluster() -> tuple[SlurmCluster, Path]:
    if os.geteuid() != 0:
        sys.exit("starting slurmd needs root")
    try:
        _ensure_slurm()  # Debian's packages, installed when missing
    except pytest.skip.Exception as why:
        sys.exit(str(why))
    pwd.getpwnam("munge")
    root = Path(tempfile.mkdtemp(prefix="vispipe-slurm-bench-"))
    root.chmod(0o755)
    cluster = SlurmCluster(root)
    try:
        cluster.start(*_partitions())
    except BaseException:
        print(cluster.logs(), file=sys.stderr)
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster, root


def table(runs: list[dict]) -> str:
    rows = [
        "| run | mode | finished | jobs submitted | sbatch calls | time in sbatch "
        "| jobs with no compute-job input, all submitted | last submission | wall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s = summarize(r)
        limit = f", `--jobs {r['jobs_limit']}`" if r["jobs_limit"] else ""
        ready = f"{r['ready_at_start']} at {s['ready_submitted_s']:.1f} s" if s["ready_submitted_s"] else "never"
        last = f"{s['all_submitted_s']:.1f} s" if s["all_submitted_s"] else "-"
        rows.append(
            f"| {r['name']} | {r['mode']}{limit} | {'yes' if r['finished'] else 'no (stopped)'} | {s['jobs_submitted']} "
            f"| {s['sbatch_calls']} | {s['sbatch_seconds']:.2f} s | {ready} | {last} | {r['wall_s']:.0f} s |"
        )
    per_rule = sorted({rule for r in runs for rule in summarize(r)["per_rule"]})
    rows += ["", "sbatch calls (jobs) per rule:", ""]
    rows += ["| run | mode | " + " | ".join(per_rule) + " |", "|---|---|" + "---|" * len(per_rule)]
    for r in runs:
        pr = summarize(r)["per_rule"]
        cells = [f"{pr[rule]['sbatch']} ({pr[rule]['jobs']})" if rule in pr else "" for rule in per_rule]
        rows.append(f"| {r['name']} | {r['mode']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    ap.add_argument("--repeats", type=int, default=1, help="runs per mode, taking turns")
    ap.add_argument("--limit-check", action="store_true", help="also the videos alone with --jobs 2")
    ap.add_argument("--limit-clips", type=int, default=5)
    ap.add_argument("--limit-timeout", type=float, default=420)
    ap.add_argument("--direct", type=int, default=0, metavar="N", help="also N plain sbatch calls vs one array")
    ap.add_argument("--keep", action="store_true", help="keep the runs' folders (printed)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "slurm_arrays.json")
    ap.add_argument("--from-json", type=Path, help="print the tables of an earlier run's JSON; run nothing")
    args = ap.parse_args()
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        print(table(result["runs"]))
        return

    cluster, root = start_cluster()
    runs: list[dict] = []
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "args": vars(args) | {"out": str(args.out)},
    }
    try:
        slurm_version = cluster.run("sinfo", "--version").stdout.strip()
        result["slurm"] = slurm_version
        work = Path(tempfile.mkdtemp(prefix="vispipe-arrays-"))
        try:
            n = 0
            for rep in range(args.repeats):
                for mode in args.modes:
                    n += 1
                    print(f"run {n}: {mode} (repeat {rep + 1})", flush=True)
                    r = run_mode(cluster, work / f"run{n}", mode, seeds=args.seeds, clips=args.clips)
                    runs.append({"name": f"{args.seeds} seeds + {args.clips} videos", **r})
                    print(json.dumps(summarize(r) | {"wall_s": r["wall_s"], "finished": r["finished"]}), flush=True)
            if args.limit_check:
                for mode in args.modes:
                    n += 1
                    print(f"run {n}: {mode}, videos alone, --jobs 2", flush=True)
                    r = run_mode(cluster, work / f"run{n}", mode, seeds=1, clips=args.limit_clips, classify=False,
                                 jobs=2, timeout=args.limit_timeout)  # fmt: skip
                    runs.append({"name": f"{args.limit_clips} videos", **r})
                    print(json.dumps(summarize(r) | {"wall_s": r["wall_s"], "finished": r["finished"]}), flush=True)
            if args.direct:
                result["direct"] = direct(cluster, args.direct)
        finally:
            if args.keep:
                print(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    result["runs"] = runs
    print()
    print(table(runs))
    if "direct" in result:
        d = result["direct"]
        print(
            f"\n{d['n']} plain sbatch calls: {d['individual_s']:.2f} s; one {d['n']}-task array: {d['array_s']:.2f} s"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
