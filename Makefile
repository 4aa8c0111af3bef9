# Quickstart: `make run` (the daemon on its embedded defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint install install-test clean bench soak captures system-packages screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml setup.py $(wildcard proto/*/*/*/*.proto) | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml setup.py $(wildcard proto/*/*/*/*.proto) | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: $(VENV)/.installed
	$(BIN)/dunetrace-sidecar

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# System tools the suite uses (promtool), installed when missing, as CI does.
system-packages:
	bash .ci/system-packages.sh

test: $(VENV)/.installed-test system-packages lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

# The dashboard's screenshots in docs/screenshots/ (the README shows them), taken by its browser tests.
screenshots: $(VENV)/.installed-test system-packages
	DUNETRACE_SCREENSHOTS=1 $(BIN)/pytest -q tests/dashboard

# Benchmarks (ratios against baselines measured in the same run): `make bench`, or
# `make bench ARGS=--quick` for a one-minute pass. Results land in bench/results/.
bench: $(VENV)/.installed-test
	$(BIN)/python -m bench $(ARGS)

# Soak: mixed load on every transport for 10 minutes, the daemon SIGKILLed and restarted every
# minute, then every acknowledged span checked in the store (exit 1 if any is lost or duplicated):
# `make soak`, or `make soak ARGS="--minutes 2"`. Results in bench/results/soak.json.
soak: $(VENV)/.installed-test
	$(BIN)/python -m bench.soak $(ARGS)

# Regenerate the real-stack conformance corpus (tests/testdata/stacks/): each agent framework in
# its own venv under .stacks/ (needs PyPI), against the scripted fake LLM. `make captures
# ARGS=openai-v2-none` for one. Not part of `make test`, which replays the stored captures.
captures: $(VENV)/.installed-test
	$(BIN)/python tools/stacks/capture.py $(ARGS)
