# kafka-sse-gateway: `make run` for the demo, `make test` for the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test unit install proto bench kafka-start kafka-stop clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the project and its test tools into $(VENV) ..."
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@scripts/run-demo

test: $(STAMP)
	@scripts/test-setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

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
