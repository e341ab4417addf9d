#!/usr/bin/env bash
# Snakemake runs this once, in the new conda environment, from its working directory (the
# checkout): the scripts import the vispipe package, so install it there, editable (later
# edits to src/ apply without rebuilding the environment) and without dependencies (pinned
# in vispipe.yaml).
set -euo pipefail
if ! grep -qs '^name = "vispipe"' pyproject.toml; then
    echo "vispipe.post-deploy.sh: run Snakemake from the vispipe checkout (no vispipe pyproject.toml in $PWD)" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation --editable .
# TrackEval (HOTA in evaluate_segmentation) asks for opencv-python, a second cv2 beside
# vispipe.yaml's opencv-python-headless: installed without its dependencies (all pinned there).
python -m pip install --no-deps trackeval==1.3.0
