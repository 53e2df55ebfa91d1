# Quick start: `make run` (a local chain with its API on 127.0.0.1) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOME_DIR ?= .medledger/node
CHAIN_ID ?= medledger-local

.PHONY: run test bench clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	@test -f $(HOME_DIR)/config.json || $(BIN)/medledger init --home $(HOME_DIR) --chain-id $(CHAIN_ID) --demo
	$(BIN)/medledger up --home $(HOME_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/medledger bench --validators 1

clean:
	rm -rf $(VENV) .medledger .pytest_cache .hypothesis
