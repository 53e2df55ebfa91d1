# Quick start: `make run` (a local consortium of 4 validators on 127.0.0.1) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOME_DIR ?= .medledger/consortium
CHAIN_ID ?= medledger-local
VALIDATORS ?= 4
NATIVE := native/pyproject.toml native/Cargo.toml native/Cargo.lock $(wildcard native/src/*.rs)

.PHONY: run test bench soak clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/build-engine.sh scripts/fetch-fhir-examples.sh $(NATIVE)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet ./native
	scripts/build-engine.sh $(VENV)
	scripts/fetch-fhir-examples.sh
	touch $(STAMP)

run: $(STAMP)
	@test -f $(HOME_DIR)/consortium.json || $(BIN)/medledger init --home $(HOME_DIR) --chain-id $(CHAIN_ID) --validators $(VALIDATORS)
	$(BIN)/medledger net run --home $(HOME_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest -q

soak: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/medledger bench --validators 1

clean:
	rm -rf $(VENV) .tools .medledger .pytest_cache .hypothesis
