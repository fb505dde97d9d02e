# Two commands a fresh machine needs (see README): `make demo` and `make test`.
# Both create .venv on first use; re-running is fast while pyproject.toml and constraints.txt are unchanged.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,examples,plots,data]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/drpo-rl --help

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest
