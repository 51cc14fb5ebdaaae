# kafka-sse-gateway: `make run` for the demo, `make test` for the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test unit lint install proto bench kafka-start kafka-stop clean

# A .venv of a Python older than 3.11 (made before a newer one was installed) is made again.
NEW_ENOUGH := import sys; sys.exit(sys.version_info < (3, 11))

$(STAMP): setup.cfg pyproject.toml
	@$(BIN)/python -c '$(NEW_ENOUGH)' 2>/dev/null || { \
	  $(PYTHON) -c '$(NEW_ENOUGH)' 2>/dev/null || { \
	    echo "kafka-sse-gateway needs Python 3.11 or later, and $(PYTHON) is" \
	      "$$($(PYTHON) -V 2>&1 || echo 'not found'): run make with PYTHON=python3.11 (or a" \
	      "later one), e.g. make run PYTHON=python3.12" >&2; exit 1; }; \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	@echo "installing the project and its test tools into $(VENV) ..."
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# grpcurl: the one on PATH, else the project's build in .cache/bin (the demo prints its path).
run: $(STAMP)
	@scripts/install-grpcurl
	@GRPCURL="$$(command -v grpcurl || echo $(CURDIR)/.cache/bin/grpcurl)" scripts/run-demo

# The suite runs in TEST_PROCESSES pytest processes (pytest-xdist), each file in one of them
# (0: in pytest's own process): the end-to-end tests mostly wait (Kafka, gunicorn, sockets),
# so two share two cores well.
TEST_PROCESSES ?= 2

test: $(STAMP)
	@scripts/test-setup
	@$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -q --durations=25 -n $(TEST_PROCESSES) --dist loadfile $(PYTEST_ARGS)
	@scripts/test-versions

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# ruff and mypy over the shipped code (generated protobuf modules excluded: pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check actors web rpc service gunicorn.conf.py
	$(BIN)/mypy

proto: $(STAMP)
	@scripts/gen-proto

bench: $(STAMP)
	@bench/run

kafka-start:
	@scripts/kafka-local start

kafka-stop:
	@scripts/kafka-local stop

clean:
	rm -rf $(VENV) .cache .pytest_cache *.egg-info build dist
