# `make test` and `make demo` bootstrap .venv on first use (idempotent: reinstalled only when
# pyproject.toml or constraints.txt change), then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint format demo install bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: lint
	$(BIN)/python -m pytest -q

# ruff: lint rules and formatting configured in pyproject.toml; `make format` applies both.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: $(STAMP)
	$(BIN)/vdiag demo

bench: $(STAMP)
	$(BIN)/python benchmarks/synth_generation.py
	$(BIN)/python benchmarks/decoding.py
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/extraction.py
	$(BIN)/python benchmarks/bilevel.py
	$(BIN)/python benchmarks/memory.py

clean:
	rm -rf $(VENV) vdiag-demo .pytest_cache
