# Missing-modality remote-sensing fusion: every target installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?= data
DATASET ?= quad
export WANDB_MODE ?= offline

.PHONY: help setup data test test-slow lint format bench pretrain clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv and install the project (idempotent)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

data: $(STAMP) ## Write the embedded synthetic datasets to data/ (skips what is up to date)
	$(PY) -m datamodules.synthetic --root $(DATA_DIR)

test: $(STAMP) ## Lint and run the default test suite
	$(PY) -m ruff check .
	$(PY) -m pytest -q

test-slow: $(STAMP) ## Run only the slow tests
	$(PY) -m pytest -q -m slow

lint: $(STAMP) ## ruff check and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP) ## Apply ruff fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: data ## Benchmarks: data pipeline and backbone speed, printed side by side
	$(PY) -m benchmarks

clean: ## Remove generated data and runs (keeps .venv)
	rm -rf $(DATA_DIR) runs lightning_logs wandb
