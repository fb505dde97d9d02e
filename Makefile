# Two commands a fresh machine needs (see README): `make demo` and `make test`.
# Both create .venv on first use; re-running is fast while pyproject.toml and constraints.txt are unchanged.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint

# The second install brings real logs shipped inside PyPI packages (MovieLens-100K in recbole,
# Open Bandit Dataset samples in obp): only their data files are read, so their code
# dependencies are skipped (--no-deps; obp declares Python < 3.11 but its data is plain CSV).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,examples]'
	$(BIN)/python -m pip install --quiet --no-deps --ignore-requires-python -c constraints.txt recbole obp
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/drpo-rl bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest
