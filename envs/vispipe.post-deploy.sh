#!/usr/bin/env bash
# Snakemake runs this once, in the new conda environment: the scripts import the vispipe package,
# so install it there, editable (later edits to src/ apply without rebuilding the environment) and
# without dependencies (pinned in vispipe.yaml). It comes from the workflow's folder, whose scripts
# the steps run (rules/common.smk exports VISPIPE_SCRIPTS=<folder>/scripts): a checkout, or the
# commit Snakedeploy deployed (workflow/rules/source.smk); run by hand, the working directory.
set -euo pipefail
root="${VISPIPE_SCRIPTS:+$(dirname "$VISPIPE_SCRIPTS")}"
root="${root:-$PWD}"
if ! grep -qs '^name = "vispipe"' "$root/pyproject.toml"; then
    echo "vispipe.post-deploy.sh: no vispipe pyproject.toml in $root (run Snakemake on the vispipe workflow)" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation --editable "$root"
# TrackEval (HOTA in evaluate_segmentation) asks for opencv-python, a second cv2 beside
# vispipe.yaml's opencv-python-headless: installed without its dependencies (all pinned there).
python -m pip install --no-deps trackeval==1.3.0
