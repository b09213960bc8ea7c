# visionflow: `make demo` trains, evaluates and registers a model on data that needs no download,
# then scores a drop of held-back images with it; `make test` runs the suite.
# Both create the virtual environment in .venv on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint bench-ingest bench-score bench-presets bench-frontier clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/visionflow train --data demo --preset default
	$(BIN)/visionflow score $${VISIONFLOW_HOME:-visionflow-home}/sources/demo-drop

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not e2e"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check visionflow flows tasks data_contracts deployments tests benchmarks
	$(BIN)/ruff format --check visionflow flows tasks data_contracts deployments tests benchmarks

bench-ingest: $(VENV)/.installed
	$(BIN)/python benchmarks/ingest_benchmark.py --data ../shared/datasets/cifar10 --repeats 3

bench-score: $(VENV)/.installed
	$(BIN)/python benchmarks/score_benchmark.py --models-home $${VISIONFLOW_HOME:-visionflow-home} --drop ../shared/datasets/cifar10/test

# Ingests CIFAR-10 (a no-op when it already is), then trains `seed` and `default` side by side.
bench-presets: $(VENV)/.installed
	$(BIN)/python benchmarks/preset_benchmark.py --dataset-dir "$$($(BIN)/visionflow ingest --data ../shared/datasets/cifar10 --json | $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["dataset_dir"])')"

# Every preset through `visionflow train` with two seeds, beside `seed`: the table, and the
# accuracy-against-minutes plot in docs/frontier.png (about two and a half hours on 2 cores).
bench-frontier: $(VENV)/.installed
	$(BIN)/python benchmarks/frontier_benchmark.py --data ../shared/datasets/cifar10 --seeds 0 1 --plot docs/frontier.png

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
