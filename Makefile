# Two commands for a newcomer: `make demo` and `make test`. Both create the
# virtual environment first (pinned by constraints.txt) when it is missing or stale.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= all
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: env demo test lint bench clean
env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,slurm]'
	touch $@

demo: $(STAMP)  ## the whole pipeline on the offline demo config (minutes on a laptop CPU)
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml

test: $(STAMP)  ## the test suite (what CI runs)
	$(BIN)/python -m pytest

lint: $(STAMP)  ## snakemake --lint, snakefmt --check, ruff
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/ruff check src scripts tests bench
	$(BIN)/ruff format --check src scripts tests bench

bench: $(STAMP)  ## benchmarks against peers (table + bench/out/*.json)
	$(BIN)/python bench/classify.py

clean:  ## remove pipeline outputs (keeps the environment)
	rm -rf results logs benchmarks data/digits .snakemake/metadata
