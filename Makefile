# kafka-sse-gateway: `make run` for the demo, `make test` for the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test unit lint install proto bench kafka-start kafka-stop clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the project and its test tools into $(VENV) ..."
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# grpcurl: the one on PATH, else the project's build in .cache/bin (the demo prints its path).
run: $(STAMP)
	@scripts/install-grpcurl
	@GRPCURL="$$(command -v grpcurl || echo $(CURDIR)/.cache/bin/grpcurl)" scripts/run-demo

test: $(STAMP)
	@scripts/test-setup
	@$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -q --durations=25 $(PYTEST_ARGS)
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
	rm -rf $(VENV) .cache .pytest_cache *.egg-info
