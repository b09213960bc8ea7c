# visionflow: `make demo` trains, evaluates and registers a model on data that needs no download,
# then scores a drop of held-back images with it; `make test` runs the suite.
# Both create the virtual environment in .venv on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint docs team-up team-down bench-ingest bench-score bench-presets bench-ablation bench-frontier bench-team-load clean

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
	$(BIN)/python -m pytest -m "not e2e and not label_studio and not team_ha and not dask_hosts"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check visionflow flows tasks data_contracts deployments tests benchmarks
	$(BIN)/ruff format --check visionflow flows tasks data_contracts deployments tests benchmarks

# Prefect in high availability on this machine, all on 127.0.0.1 (docs/SCALING.md#high-availability):
# PostgreSQL, Redis, two API servers behind HAProxy on port 4200, the services, the deployments, a
# worker and the inbox watcher; state under VISIONFLOW_HOME/team. `team-up` again restarts a lost piece;
# WORKERS=2 starts two process workers (and lets two score-drops runs go at once).
team-up: $(VENV)/.installed-dev
	$(BIN)/python -m visionflow.deployments.team_stack up $(if $(WORKERS),--workers $(WORKERS))

team-down: $(VENV)/.installed-dev
	$(BIN)/python -m visionflow.deployments.team_stack down

# The documentation site (mkdocs.yml, docs/) into site/. --strict makes a broken link, an anchor
# that is not there or a page missing from the nav an error; the variable silences the theme's
# notice about its successor, which is no warning about the docs.
docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench-ingest: $(VENV)/.installed
	$(BIN)/python benchmarks/ingest_benchmark.py --data ../shared/datasets/cifar10 --repeats 3

bench-score: $(VENV)/.installed
	$(BIN)/python benchmarks/score_benchmark.py --models-home $${VISIONFLOW_HOME:-visionflow-home} --drop ../shared/datasets/cifar10/test

# Ingests CIFAR-10 (a no-op when it already is), then trains `seed` and `default` side by side.
bench-presets: $(VENV)/.installed
	$(BIN)/python benchmarks/preset_benchmark.py --dataset-dir "$$($(BIN)/visionflow ingest --data ../shared/datasets/cifar10 --json | $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["dataset_dir"])')"

# `default` with each of its tricks turned off alone, beside `default` as shipped, for seeds 0 and 1 (sides
# alternating epoch by epoch in one process per seed; about an hour per seed on 2 cores).
ABLATION_SIDES = \
	--variant default_s$$seed default '{"train":{"seed":'$$seed'}}' \
	--variant no_whiten_s$$seed default '{"model":{"whiten":false},"train":{"seed":'$$seed'}}' \
	--variant no_identity_s$$seed default '{"model":{"identity_init":false},"train":{"seed":'$$seed'}}' \
	--variant zero_pad_s$$seed default '{"model":{"crop_fill":"constant"},"train":{"seed":'$$seed'}}' \
	--variant no_smoothing_s$$seed default '{"train":{"label_smoothing":0.0,"seed":'$$seed'}}' \
	--variant float32_s$$seed default '{"model":{"precision":"float32"},"train":{"seed":'$$seed'}}'
bench-ablation: $(VENV)/.installed
	dataset_dir="$$($(BIN)/visionflow ingest --data ../shared/datasets/cifar10 --json | $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["dataset_dir"])')"; \
	for seed in 0 1; do $(BIN)/python benchmarks/preset_benchmark.py --dataset-dir "$$dataset_dir" --presets $(ABLATION_SIDES); done

# Every preset through `visionflow train` with two seeds, beside `seed`: the table, and the
# accuracy-against-minutes plot in docs/frontier-<kind>-<cpu>.png (about two and a half hours on 2 cores;
# prefix ONEDNN_MAX_CPU_ISA=AVX2 to train as an AVX2-only CPU would).
bench-frontier: $(VENV)/.installed
	$(BIN)/python benchmarks/frontier_benchmark.py --data ../shared/datasets/cifar10 --seeds 0 1 --plot-dir docs

# 300 drops of 10 images through the team stack with two workers, beside `visionflow serve` on the
# same drops and model (docs/SCALING.md#load-on-the-team-set-up; about 13 minutes on 2 cores).
bench-team-load: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/team_load_benchmark.py --drops 300 --images 10

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
