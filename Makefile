# duia-spark — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# Re-installs only when the dependency set or the checkout location changes.
SETUP_KEY := $(shell cat setup.py setup.cfg pyproject.toml | sha1sum | cut -c1-12)-$(shell echo $(CURDIR) | sha1sum | cut -c1-8)
STAMP := $(VENV)/.duia-setup-$(SETUP_KEY)
JARS_READY := .duia/spark-submit.conf
# The checkout is the home of every target's state (.duia/), whatever the shell's DUIA_HOME.
export DUIA_HOME := $(CURDIR)
DEMO_ARGS ?=
MLFLOW_DB ?= $(CURDIR)/.duia/demo/mlflow.db
PYTEST_ARGS ?=
QUALITY_ARGS ?=
PIPELINE_ARGS ?=
INCREMENTAL_ARGS ?=
# The optional Airflow extra lives in its own venv: the scheduler does not need the Spark stack.
AIRFLOW_VENV ?= $(VENV)-airflow
AIRFLOW_PIN := $(shell sed -n 's/^ *\(apache-airflow==[^ ]*\) *$$/\1/p' setup.cfg)
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.duia-airflow-$(shell echo $(AIRFLOW_PIN) | sha1sum | cut -c1-12)
# The MLflow UI browser test drives Debian's headless Chromium; nothing is downloaded at run time.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help setup airflow-setup browser-setup test test-airflow test-browser test-fast lint format demo bench bench-setup bench-pipeline bench-model bench-train bench-score bench-quality bench-ranker bench-regimes bench-incremental bench-gpu submit mlflow-ui clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: $(STAMP) $(JARS_READY) ## create the venv (VENV=...), install the pinned stack, cache Delta's jars
	@echo "setup: ready (venv $(VENV), Delta jars in .duia/ivy/jars)"

$(STAMP): setup.py setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24" "setuptools>=68" wheel
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.duia-setup-*  # the venv points at one checkout at a time
	@touch $@

$(JARS_READY): $(STAMP)
	$(PY) -m duia_spark.jars

test: setup browser-setup airflow-setup ## run the whole test suite (MLflow UI in Chromium included) in two lanes: the Airflow tests then tests/pipeline, beside the rest
	@# Two lanes keep both cores busy: the Airflow night spends most of its time starting
	@# spark-submit JVMs one after another, so it runs, followed by the pipeline tests (the
	@# shared nightly world), beside the rest of the suite. Each lane has its own pytest
	@# folder; the lane's output follows the suite's.
	@mkdir -p .duia; \
	{ $(MAKE) --no-print-directory test-airflow PYTEST_ARGS="$(PYTEST_ARGS) --basetemp=$(CURDIR)/.duia/pytest-airflow"; af=$$?; \
	  $(PY) -m pytest tests/pipeline $(PYTEST_ARGS) --basetemp=$(CURDIR)/.duia/pytest-pipeline; pl=$$?; \
	  test $$af -eq 0 && test $$pl -eq 0; } > .duia/test-lane.log 2>&1 & lane=$$!; \
	$(PY) -m pytest --ignore=tests/pipeline $(PYTEST_ARGS); suite=$$?; \
	wait $$lane; other=$$?; \
	echo "---- Airflow tests (make test-airflow), then tests/pipeline ----"; cat .duia/test-lane.log; \
	test $$suite -eq 0 && test $$other -eq 0

airflow-setup: $(AIRFLOW_STAMP) ## create the Airflow venv (AIRFLOW_VENV=..., default $(VENV)-airflow)
	@echo "airflow-setup: ready (venv $(AIRFLOW_VENV), $(AIRFLOW_PIN))"

$(AIRFLOW_STAMP): setup.cfg
	@test -n "$(AIRFLOW_PIN)" || { echo "setup.cfg: no apache-airflow==... pin in extras_require" >&2; exit 1; }
	@test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet "$(AIRFLOW_PIN)" pytest==8.4.2
	@rm -f $(AIRFLOW_VENV)/.duia-airflow-*
	@touch $@

test-airflow: setup airflow-setup ## load the Airflow DAG through DagBag, then run it for a night (airflow dags test)
	DUIA_VENV=$(abspath $(VENV)) $(AIRFLOW_VENV)/bin/python -m pytest tests/airflow $(PYTEST_ARGS)

browser-setup: ## install Debian's chromium + chromium-driver if either is missing (browser test)
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then \
		echo "browser-setup: ready ($(CHROMIUM), $(CHROMEDRIVER))"; \
	else \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

test-browser: setup browser-setup ## check the MLflow UI of a tiny nightly run in headless Chromium
	$(PY) -m pytest tests/pipeline/test_pipeline_mlflow_ui.py $(PYTEST_ARGS)

test-fast: setup ## run the tests that need no Spark job or training run
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup ## ruff lint + format check
	$(VENV)/bin/ruff check duia_spark jobs tests bench
	$(VENV)/bin/ruff format --check duia_spark jobs tests bench

format: setup ## ruff format + autofix
	$(VENV)/bin/ruff format duia_spark jobs tests bench
	$(VENV)/bin/ruff check --fix duia_spark jobs tests bench

demo: setup ## generate logs, run the nightly pipeline over the last nights, print the report
	$(PY) -m duia_spark.demo $(DEMO_ARGS)

bench: bench-model bench-pipeline bench-train bench-score bench-quality ## run every benchmark (tables in bench/results/)

bench-model: setup ## model step time / retrieval benchmark
	$(PY) bench/model.py

bench-pipeline: setup ## the nightly feature jobs at 1x and 4x (PIPELINE_ARGS="--scales 1,16,64" for 10M/40M events)
	$(PY) bench/pipeline.py $(PIPELINE_ARGS)

bench-night: setup ## a whole night at 16x, every stage, full then incremental (NIGHT_ARGS, e.g. --scale 1 for a quick run)
	$(PY) bench/night.py $(NIGHT_ARGS)

bench-train: bench-setup ## training samples/s: Petastorm path vs in-memory, 1 vs 2 processes, vs torch-rechub's PLE
	$(PY) bench/train.py

bench-score: setup ## Spark batch scoring vs in-process rows/s
	$(PY) bench/score.py

bench-setup: setup ## install the bench extra (torch-rechub and its tqdm) into the venv
	$(PY) -m pip install --quiet -e '.[bench]'

bench-quality: bench-setup ## PLE vs DUIA variants vs torch-rechub per segment, MovieLens + synthetic, 3 seeds
	$(PY) bench/quality.py $(QUALITY_ARGS)

bench-ranker: bench-setup ## our ple vs torch-rechub's PLE per dataset x task x segment (RANKER_ARGS, e.g. --datasets ... --kuairand-path DIR)
	$(PY) bench/ranker_vs_textbook.py $(RANKER_ARGS)

bench-regimes: bench-setup ## ple vs ple+duia across synthetic worlds built to DUIA's premise (REGIMES_ARGS, e.g. --cells central,groups8 --seeds 0,1,2)
	$(PY) bench/duia_regimes.py $(REGIMES_ARGS)

bench-incremental: bench-setup ## incremental vs full retrain over 4 consecutive nights, synthetic (+ KuaiRand with --kuairand-path), 3 seeds (INCREMENTAL_ARGS)
	$(PY) bench/incremental.py $(INCREMENTAL_ARGS)

bench-gpu: setup ## the GPU check on a CUDA machine (< 8 min): model bench, TorchDistributor training, scoring
	PY=$(PY) bash bench/gpu_check.sh

submit: setup ## spark-submit a stage: make submit STAGE=ingest ARGS="--path DIR"
	PYSPARK_PYTHON=$(PY) $(VENV)/bin/spark-submit --properties-file .duia/spark-submit.conf jobs/$(subst -,_,$(STAGE)).py $(ARGS)

mlflow-ui: setup ## open the MLflow UI (MLFLOW_DB=.duia/mlflow.db for the default store)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(MLFLOW_DB) --port 5000

clean: ## remove local state (lakehouse, MLflow store, caches); keeps the venv and jars
	rm -rf .duia/lakehouse .duia/mlflow.db .duia/mlartifacts .duia/checkpoints .duia/petastorm .duia/demo
