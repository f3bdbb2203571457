# Two commands: `make run` starts the whole bank, `make test` passes the tests.
# Both create .venv and install the project on first use; nothing is installed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lock lint typecheck imports unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Every dependency from the locks, exact and hash-checked: pip and the build backend, then
# the project's dependencies with its dev and local extras (requirements/dev.txt). The
# project itself comes last and brings nothing else; it builds with the locked setuptools.
$(STAMP): pyproject.toml requirements/build.txt requirements/dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes --only-binary=:all: -r requirements/build.txt
	$(BIN)/python -m pip install --quiet --require-hashes --only-binary=:all: -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# Resolves the locks anew from pyproject.toml, for Python 3.11+ on any platform, with the
# hashes of every file of each version: dev.txt (what `make install` installs), runtime.txt
# (the image: the dependencies alone, at dev.txt's versions), build.txt (pip and the build
# backend) and audit.txt (CI's pip-audit and SBOM tools, the `audit` extra, kept apart).
# Versions already locked are kept; `make lock LOCK_FLAGS=--upgrade` moves each to the
# newest its range allows.
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(LOCK_FLAGS)
BUILD_REQUIRES = import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")
AUDIT_REQUIRES = import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["audit"], sep="\n")

lock: install
	$(UV_COMPILE) pyproject.toml --extra dev --extra local -o requirements/dev.txt
	$(UV_COMPILE) pyproject.toml -c requirements/dev.txt -o requirements/runtime.txt
	{ $(BIN)/python -c '$(BUILD_REQUIRES)'; echo pip; } | $(UV_COMPILE) - -o requirements/build.txt
	$(BIN)/python -c '$(AUDIT_REQUIRES)' | $(UV_COMPILE) - -o requirements/audit.txt

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
