# streamrec — every target bootstraps what it needs (venv, Python packages, JVM jars), idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JARS := .cache/jvm
MVN_COPY := mvn -q -B dependency:copy-dependencies -DincludeScope=runtime
export PYTHON

.PHONY: help setup jars blas test test-fast demo lint format bench clean stop

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

prereqs:
	@scripts/check-prereqs.sh

$(VENV)/.installed: pyproject.toml | prereqs
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test]'
	@touch $@

$(JARS)/kafka/.fetched: jvm/kafka/pom.xml | prereqs
	@echo "fetching Kafka broker jars (once)..."
	@rm -rf $(JARS)/kafka && cd jvm/kafka && $(MVN_COPY) -DoutputDirectory=$(CURDIR)/$(JARS)/kafka
	@touch $@

$(JARS)/spark-kafka/.fetched: jvm/spark-kafka/pom.xml | prereqs
	@echo "fetching Spark Kafka connector jars (once)..."
	@rm -rf $(JARS)/spark-kafka && cd jvm/spark-kafka && $(MVN_COPY) -DoutputDirectory=$(CURDIR)/$(JARS)/spark-kafka
	@touch $@

setup: $(VENV)/.installed jars blas ## create the venv, install packages, fetch jars, native BLAS

blas: ## native BLAS/LAPACK for Spark ML (Debian's OpenBLAS, once, when root)
	@scripts/blas.sh

jars: $(JARS)/kafka/.fetched $(JARS)/spark-kafka/.fetched ## fetch the JVM jars (Kafka broker, Spark connector)

test: setup ## run the whole test suite (unit + integration against real Kafka and Spark)
	@scripts/test.sh

test-fast: setup ## unit tests only (no broker, no Spark)
	@$(PY) -m pytest -q -m "not integration"

demo: setup ## the main job: broker, replay, train, stream, recommendations
	@scripts/demo.sh

lint: setup ## ruff lint + format check; docker compose config when available
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@if docker compose version >/dev/null 2>&1; then docker compose config -q && echo "docker-compose.yml ok"; \
	 else $(PY) -c "import yaml; yaml.safe_load(open('docker-compose.yml'))" && \
	   echo "docker compose not available here: docker-compose.yml checked as YAML only"; fi

format: setup ## apply ruff formatting and safe fixes
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .

bench: setup ## run the benchmarks and rewrite docs/benchmarks.md
	@$(PY) -m bench.run_all

stop: ## stop the local Kafka broker
	@test -x $(VENV)/bin/streamrec && $(VENV)/bin/streamrec kafka stop || true

clean: stop ## remove state (var/), venv and jar cache
	rm -rf var $(VENV) .cache
