# Two commands do all set-up on a machine with Python 3.11+ and make:
#   make run   render the default project into build/, migrate it, serve it on :8000
#   make test  install the test tools and the rendered project's dependencies, run the suite
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Extra pytest arguments, e.g. make test PYTEST_ARGS='-n 2 -k hooks'
PYTEST_ARGS ?= -n 2 --durations=8

# pip runs again only when one of a stamp's inputs is newer than the stamp.
TOOLS_STAMP := $(VENV)/.tools.stamp
DEPS_STAMP := $(VENV)/.deps.stamp
DEPS_INPUTS := cookiecutter.json tests/install_rendered_deps.py \
	{{cookiecutter.project_slug}}/pyproject.toml

BUILD := build
RUN_SLUG := my-service
RUN_DIR := $(BUILD)/$(RUN_SLUG)
RUN_VENV := $(BUILD)/.venv-run
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: test run lint clean

test: $(DEPS_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(DEPS_STAMP)
	$(BIN)/ruff check hooks tests bench
	$(BIN)/ruff format --check hooks tests bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(TOOLS_STAMP): requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

$(DEPS_STAMP): $(TOOLS_STAMP) $(DEPS_INPUTS)
	$(BIN)/python tests/install_rendered_deps.py
	touch $@

run: $(TOOLS_STAMP)
	rm -rf $(RUN_DIR)
	$(BIN)/cookiecutter --no-input --output-dir $(BUILD) . project_slug=$(RUN_SLUG)
	test -x $(RUN_VENV)/bin/python || $(PYTHON) -m venv $(RUN_VENV)
	$(RUN_VENV)/bin/python -m pip install --quiet -e '$(RUN_DIR)[dev]'
	cd $(RUN_DIR) && ../.venv-run/bin/alembic upgrade head
	@echo "Serving $(RUN_SLUG) at http://$(HOST):$(PORT) (API docs: http://$(HOST):$(PORT)/docs)"
	cd $(RUN_DIR) && exec ../.venv-run/bin/uvicorn app.main:app --host $(HOST) --port $(PORT)

clean:
	rm -rf $(BUILD) .pytest_cache .ruff_cache

# make bench: the bench package (python -m bench). It renders the SQLite and PostgreSQL
# variants into build/bench and serves each as its Dockerfile does, next to a bare FastAPI
# ceiling and a limit app for /users/me on the same stack; compares server stacks (uvloop
# versions, asyncio, granian); then the scale-out scenarios (PostgreSQL + Redis, 1 vs 2 workers,
# a wrong-password storm) and a storm from 200,000 distinct client addresses. wrk loads them
# over 127.0.0.1; prints one table and the targets, writes build/bench.json, and a full run
# writes bench/RESULTS.md. Not part of make test. Shorter (RESULTS.md is kept): make bench
# BENCH_SECONDS=3 SOAK_SECONDS=10; one group: make bench BENCH_SCENARIOS=stacks (every knob:
# python -m bench --help).
APT_SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: bench
bench: $(DEPS_STAMP)
	command -v wrk >/dev/null || { $(APT_SUDO) apt-get update && $(APT_SUDO) apt-get install -y wrk; }
	$(BIN)/python -m bench
