# ml-project: `make run` trains the default experiment, `make test` runs every test.
# Both create .venv and install the locked environment first; a second call skips the
# install unless requirements.lock or pyproject.toml changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP_VERSION := 26.3

# Tests run notebooks in fast mode and keep their MLflow runs, models and processed data
# out of your own (under .test-runs/), so `make test` never mixes into real results.
# Two lanes run side by side (make -j2): the notebooks (nbdev-test, then nbval) followed by the search and services
# tests, and the rest of tests/; each pytest run has a folder of its own, so nothing they write is shared.
# One OpenMP thread per process in tests (TEST_THREADS): two lanes already fill two cores, and XGBoost's or torch's
# threads spinning for a core the other lane holds made one multiclass test 7x slower in CI.
TEST_DIR := .test-runs
TEST_THREADS ?= 1
test_env = ML_PROJECT_MODE=fast OMP_NUM_THREADS=$(TEST_THREADS) \
	ML_PROJECT_MLFLOW_TRACKING_URI=sqlite:///$(1)/mlflow.db \
	ML_PROJECT_MLFLOW_ARTIFACT_ROOT=$(1)/mlartifacts \
	ML_PROJECT_MODELS_DIR=$(1)/models \
	ML_PROJECT_PROCESSED_DIR=$(1)/processed \
	ML_PROJECT_RUNS_DIR=$(1)/runs

DEFAULT_CONFIGS := configs/experiment_001.yaml configs/ames_random_forest.yaml configs/hpc_xgboost.yaml

DOCS_PORT ?= 8000
NB ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help install browser prometheus postgres containers base-image image stack release stack-down services cluster services-stop run serve monitor demo-drift test test-notebooks test-unit test-lane-notebooks test-lane-package lint format export maps lab mlflow-ui docs docs-outputs docs-serve readme lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)  ## create .venv from the lock file (skipped when up to date)

browser:  ## Chromium and ChromeDriver (Debian packages) for the docs site's browser test
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver; }

postgres:  ## PostgreSQL (Debian package postgresql) for `make services` and its tests
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q postgresql; }

services: install postgres  ## a team's services: PostgreSQL (cluster in .services/, 127.0.0.1:5433) and MLflow on it (127.0.0.1:5000)
	$(BIN)/ml-project services start

WORKERS ?= 2

cluster: install  ## a Dask cluster here: a scheduler on 127.0.0.1:8786 and WORKERS one-thread workers (stop: make services-stop)
	$(BIN)/ml-project services start --dask $(WORKERS) --no-tracking

services-stop: install  ## stop the Dask cluster, the MLflow server and PostgreSQL (their data stays in .services/)
	$(BIN)/ml-project services stop

# Containers: podman with the settings in deploy/podman/containers.conf (runc, cgroupfs, no default ulimits: what works
# on hosts where crun or the default ulimits fail) and buildah's chroot isolation, unless you set your own; or
# ENGINE=docker. MODEL=name (its champion), name:version or a folder; empty: an image that fetches its model at start.
export CONTAINERS_CONF ?= $(CURDIR)/deploy/podman/containers.conf
export BUILDAH_ISOLATION ?= chroot
ENGINE ?=
MODEL ?= churn
BASE ?=

containers:  ## podman, runc, mmdebstrap and podman-compose (Debian packages): the image and the stack
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null && \
		command -v podman-compose >/dev/null || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q podman runc mmdebstrap podman-compose; }

base-image: install containers  ## the Debian base image (bookworm minbase + python3, mmdebstrap, ~30 s), unless built already
	$(BIN)/ml-project image base $(if $(ENGINE),--engine $(ENGINE))

image: install containers  ## the service's image with MODEL's verified files (MODEL=churn; BASE=python:3.11-slim to build on it)
	$(BIN)/ml-project image build $(if $(MODEL),--model $(MODEL)) $(if $(BASE),--base $(BASE)) $(if $(ENGINE),--engine $(ENGINE))

STACK_PORT ?= 8088

stack: install containers  ## MODEL's image x2 behind HAProxy on 127.0.0.1:8088, Prometheus on :9090 (deploy/compose.yaml)
	$(BIN)/ml-project stack up $(if $(MODEL),--model $(MODEL)) --port $(STACK_PORT) $(if $(BASE),--base $(BASE)) $(if $(ENGINE),--engine $(ENGINE))

release: install containers  ## MODEL's champion onto the running stack: gates, then blue/green (ROLLBACK=1: the slot before)
	$(BIN)/ml-project release --model $(MODEL) $(if $(ROLLBACK),--rollback)

stack-down: install  ## stop the stack (its prediction log and metrics stay in their volumes)
	$(BIN)/ml-project stack down $(if $(ENGINE),--engine $(ENGINE))

prometheus:  ## promtool (Debian package prometheus) to check and unit-test deploy/prometheus/
	@command -v promtool >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q prometheus; }

run: install  ## the main job: churn (seed RF baseline, XGBoost) and Ames, tracked and registered in MLflow
	$(BIN)/ml-project train -c configs/experiment_001.yaml -c configs/churn_xgboost.yaml -c configs/ames_random_forest.yaml

SERVE_PORT ?= 8080

serve: install  ## serve the churn champion on http://127.0.0.1:8080 (SERVE_PORT=...; docs at /docs)
	$(BIN)/ml-project serve --model churn --port $(SERVE_PORT)

monitor: install  ## check the churn champion's logged predictions of the last 7 days: report, alerts (exit 4), MLflow run
	$(BIN)/ml-project monitor --model churn --window 7d

demo-drift: install  ## replay 8 weeks of churn customers with a growing drift through the service; monitor each week (~2 min)
	$(BIN)/python benchmarks/drift_replay.py --keep runs/drift-replay

test: install browser prometheus postgres containers lint  ## every test: lint, notebooks (nbdev-test, nbval), package tests, sync, docs site in Chromium, Prometheus rules, the image
	$(BIN)/ml-project data $(addprefix --config ,$(DEFAULT_CONFIGS))
	$(MAKE) --no-print-directory -j2 --output-sync=target test-lane-notebooks test-lane-package

# Style is recorded in pyproject.toml's [tool.ruff]; notebooks are the source, so they are linted and formatted too.
LINTED := ml_project nbs tests benchmarks docs deploy

lint: install  ## ruff: lint and format check of the package, notebooks, tests, benchmarks and docs (zero findings)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

format: install  ## apply ruff's fixes and format, then export the notebooks (make export)
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)
	$(MAKE) --no-print-directory export

export: install  ## notebooks -> package: nbdev-export, the phases' faces (docs/maps.py), nbdev-clean
	$(BIN)/nbdev-export
	$(BIN)/python docs/maps.py --write-faces
	$(BIN)/nbdev-clean

maps: install  ## regenerate the README folder map, the architecture page's stage table and the phases' faces, then README.md
	$(BIN)/python docs/maps.py --write
	$(BIN)/python docs/prepare.py --readme

test-notebooks: install  ## every notebook top to bottom: nbdev-test, then nbval over copies of them (fast mode)
	cd nbs && $(call test_env,$(TEST_DIR)/nbdev) ../$(BIN)/nbdev-test --n-workers 1 --timing
	rm -rf $(TEST_DIR)/nbval && $(BIN)/python tests/nbval_copies.py nbs $(TEST_DIR)/nbval
	ML_PROJECT_ROOT=$(CURDIR) $(call test_env,$(TEST_DIR)) $(BIN)/pytest $(TEST_DIR)/nbval --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider -q

test-unit: install  ## pytest tests/: the package, commands, services, docs site in Chromium, notebook/package sync (fast mode)
	ML_PROJECT_ROOT=$(CURDIR) $(call test_env,$(TEST_DIR)/unit) $(BIN)/pytest tests -p no:cacheprovider -q

# `make test`'s two lanes, of about equal length on two cores: the notebooks, then the search and services tests;
# and the rest of tests/. Each pytest run has a folder of its own.
SECOND_LANE_TESTS := tests/test_cluster.py tests/test_tuning.py tests/test_services.py tests/test_search.py tests/test_mlflow_ui.py tests/test_image.py tests/test_release.py

test-lane-notebooks: test-notebooks
	ML_PROJECT_ROOT=$(CURDIR) $(call test_env,$(TEST_DIR)/unit-search) $(BIN)/pytest $(SECOND_LANE_TESTS) -p no:cacheprovider -q --durations=10

test-lane-package: install
	ML_PROJECT_ROOT=$(CURDIR) $(call test_env,$(TEST_DIR)/unit) $(BIN)/pytest tests $(addprefix --ignore=,$(SECOND_LANE_TESTS)) \
		-p no:cacheprovider -q --durations=15

lab: install  ## JupyterLab on the notebooks
	$(BIN)/jupyter lab --notebook-dir=nbs $(if $(SUDO),,--allow-root)

docs: install  ## build the docs site from the notebooks and docs/ into _docs/ (offline)
	$(BIN)/python docs/prepare.py
	$(BIN)/sphinx-build -q -W --keep-going -c docs _proc _docs
	@echo "docs site in _docs/: make docs-serve, then open http://127.0.0.1:$(DOCS_PORT)"

docs-outputs: install  ## re-execute the notebooks in careful mode for the docs site (before a release; ~30 min; NB=34_search.tune for one)
	$(BIN)/python docs/outputs.py $(NB)

docs-serve: docs  ## serve the docs site on http://127.0.0.1:8000 (DOCS_PORT=...)
	$(BIN)/python -m http.server $(DOCS_PORT) --bind 127.0.0.1 --directory _docs

readme: install  ## regenerate README.md from nbs/index.ipynb (the home page)
	$(BIN)/python docs/prepare.py --readme

mlflow-ui: install  ## the MLflow UI on http://127.0.0.1:5000 (its model-training view: /#/?workflowType=machine_learning)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

lock:  ## re-resolve the environment from pyproject.toml into requirements.lock, and the serving locks from it
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet pip==$(PIP_VERSION)
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	( echo "# Pinned environment: regenerate with 'make lock'. torch is the CPU build's version (pip freeze says 2.13.0+cpu)."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -v '^pip==' | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/' ) > requirements.lock
	.lock-venv/bin/python deploy/serve_lock.py  # the serving locks: the same versions, without what only training needs
	rm -rf .lock-venv

clean:  ## remove the virtual environment, docs build, image contexts and test outputs (never data/raw, mlflow.db or models/)
	rm -rf $(VENV) $(TEST_DIR) .lock-venv _proc _docs build
