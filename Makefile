# Missing-modality remote-sensing fusion: every target installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?= data
DATASET ?= quad
DATA_ROOT ?=
BUDGET ?= 10
ARGS ?=
export WANDB_MODE ?= offline
# the docs build: Material's notice about MkDocs 2.0 is no warning about these docs
MKDOCS := NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs

# DATASET=quad|dfc2023 -> experiment config and folder of the embedded default data
CONFIG_quad := experiments/pretrain_quad.yaml
CONFIG_dfc2023 := experiments/pretrain_dfc2023.yaml
EMBEDDED_quad := $(DATA_DIR)/quadruplets
EMBEDDED_dfc2023 := $(DATA_DIR)/dfc2023
CONFIG := $(CONFIG_$(DATASET))

.PHONY: help setup data test test-slow lint format docs docs-serve bench bench-gpu pretrain reproduce publish-results check-dataset clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv and install the project (idempotent)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,docs]'
	touch $@

data: $(STAMP) ## Write the embedded synthetic datasets to data/ (skips what is up to date)
	$(PY) -m datamodules.synthetic --root $(DATA_DIR)

test: $(STAMP) ## Lint, build the docs with --strict, run the default test suite
	$(PY) -m ruff check .
	$(MKDOCS) build --strict
	$(PY) -m pytest -q

test-slow: $(STAMP) ## Run only the slow tests
	$(PY) -m pytest -q -m slow

lint: $(STAMP) ## ruff check and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP) ## Apply ruff fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

docs: $(STAMP) ## Build the documentation site into site/ (--strict: a broken link or API reference fails)
	$(MKDOCS) build --strict

docs-serve: $(STAMP) ## Serve the documentation with live reload on http://127.0.0.1:8000
	$(MKDOCS) serve

bench: data ## Benchmarks: data pipeline and backbone speed, printed side by side
	$(PY) -m benchmarks

bench-gpu: $(STAMP) ## The paper's configs on CUDA: samples/s, peak memory, MFU (skipped without a GPU)
	$(PY) -m benchmarks.gpu

check-dataset:
	@test -n "$(CONFIG)" || { echo "DATASET must be quad or dfc2023, not '$(DATASET)'"; exit 2; }

pretrain: $(STAMP) check-dataset ## Pretrain (DATASET=quad|dfc2023): embedded data within BUDGET minutes (default 10), or DATA_ROOT=dir with the paper's settings
ifeq ($(strip $(DATA_ROOT)),)
	$(PY) -m datamodules.synthetic --root $(DATA_DIR) --dataset $(if $(filter quad,$(DATASET)),quadruplets,dfc2023)
	$(PY) -m fusion fit --config $(CONFIG) --config experiments/cpu.yaml --data.root $(EMBEDDED_$(DATASET)) --time_budget $(BUDGET) $(ARGS)
else
	$(PY) -m fusion fit --config $(CONFIG) --data.root $(DATA_ROOT) $(ARGS)
endif

# make reproduce: BUDGET given on the command line applies to the whole protocol, else 90 min
REPRODUCE_BUDGET := $(if $(filter command line,$(origin BUDGET)),$(BUDGET),90)
DATASETS ?= quad dfc2023 sen1floods11 sen1floods11_chips
SEEDS ?= 3

reproduce: data ## The paper's tables in miniature, fresh in runs/reproduce (BUDGET minutes, default 90; DATASETS=quad dfc2023 sen1floods11 sen1floods11_chips; SEEDS=3); rerun to resume
	$(PY) -m fusion.reproduce --budget $(REPRODUCE_BUDGET) --datasets $(DATASETS) --seeds $(SEEDS) $(ARGS)

publish-results: $(STAMP) ## Copy the complete run in runs/reproduce to experiments/results/reproduce (clean tree only)
	$(PY) -m fusion.reproduce --publish $(ARGS)

clean: ## Remove generated data, runs and the built docs (keeps .venv)
	rm -rf $(DATA_DIR) runs lightning_logs wandb site
