# One command surface for people, hooks and CI. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KAFKA := deploy/kafka/kafka-local.sh

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit test-kafka lint typecheck check bench kafka-fetch agency-java clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,fast,bench]'
	touch $@

install: $(VENV)/.installed ## create .venv with the project and its dev tools

kafka-fetch: ## resolve the pinned Kafka broker's jars from Maven Central (cached in ~/.cache/rctc)
	$(KAFKA) fetch

agency-java: ## build the agencies' Java reader example with Maven (cached in ~/.cache/rctc; docs/agencies.md)
	deploy/agency-examples/java/build.sh >/dev/null

run: install kafka-fetch ## the whole system locally: broker, topics, demo registry, services, receivers, feed
	$(VENV)/bin/rctc dev up

test: install kafka-fetch agency-java ## the whole suite: unit tests and real-broker integration tests
	$(PY) -m pytest

test-unit: install ## only the fast tests (no broker)
	$(PY) -m pytest -m "not kafka"

test-kafka: install kafka-fetch agency-java ## only the tests against the real broker
	$(PY) -m pytest -m kafka

lint: install ## ruff
	$(VENV)/bin/ruff check services tests bench
	$(VENV)/bin/ruff format --check services tests bench

typecheck: install ## mypy --strict on the source
	$(VENV)/bin/mypy

check: lint typecheck test ## everything CI runs

bench: install kafka-fetch ## the pipeline benchmark, as ratios to raw Kafka, raw HTTP and a plaintext broker (bench/results/)
	$(PY) -m bench --burst

clean: ## remove the local broker's data and the virtualenv
	rm -rf .run $(VENV) .pytest_cache .mypy_cache .ruff_cache
