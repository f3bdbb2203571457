# Two commands: `make run` starts the whole bank, `make test` passes the tests.
# Both create .venv and install the project on first use; nothing is installed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint typecheck imports unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/sagabank up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy .

imports: install
	$(BIN)/lint-imports

# Static checks first (seconds), then the whole suite against real PostgreSQL and Temporal.
test: install lint typecheck imports
	$(BIN)/pytest

unit: install
	$(BIN)/pytest -m "not system"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
