# Two commands on a fresh machine (Python 3.11+ with venv, make):
#   make run    install, provision the embedded buffalo_sc model, serve on :8000
#   make test   install the dev tools, lint, type-check, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip --disable-pip-version-check
# bash with pipefail: a failing pip fails the step even when its output is filtered.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
QUIET_SATISFIED := { grep -v "^Requirement already satisfied" || true; }

.PHONY: run test test-fast install install-dev models lint format typecheck pytest bench docs fuzz soak mutate clean

# Stamps make both commands cheap once set up: pip runs again only when the
# dependency lists change. pip shows each package as it goes (no -q): the
# first run downloads for a minute or more.
PIP_INSTALL := $(PIP) install --progress-bar on
$(VENV)/.runtime: pyproject.toml constraints.txt
	@test -x $(PY) || { echo "==> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> installing the service's dependencies into $(VENV) (first time: about a minute)"
	$(PIP_INSTALL) -c constraints.txt -e '.[lambda]' | $(QUIET_SATISFIED)
	@$(PY) -c "import face_recognition_service" || { echo "install failed"; exit 1; }
	@touch $@

# insightface (for parity tests and the peer benchmark) goes in with --no-deps:
# it asks for opencv-python, which would replace our opencv-python-headless cv2.
$(VENV)/.dev: $(VENV)/.runtime
	@echo "==> installing the test and lint tools (first time: a minute or two)"
	$(PIP_INSTALL) -c constraints.txt -e '.[dev]' | $(QUIET_SATISFIED)
	$(PIP_INSTALL) -c constraints.txt --no-deps insightface | $(QUIET_SATISFIED)
	@$(PY) -c "import pytest, schemathesis, insightface" || { echo "install failed"; exit 1; }
	@if $(PIP) show -q opencv-python >/dev/null 2>&1; then \
		echo "opencv-python is installed beside opencv-python-headless; remove it"; exit 1; fi
	@touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

# MODEL_SOURCE: a pack's zip or folder (e.g. ~/Downloads/buffalo_l.zip) for a
# pack that cannot be downloaded here:  MODEL_SOURCE=... MODEL_NAME=buffalo_l make run
models: $(VENV)/.runtime
	@echo "==> model pack $${MODEL_NAME:-buffalo_sc}"
	$(PY) -m face_recognition_service.provision $(if $(MODEL_SOURCE),--source "$(MODEL_SOURCE)",)

run: models
	@echo "==> serving on http://localhost:$${PORT:-8000} (docs: /docs)"
	$(PY) -m face_recognition_service.server

lint: $(VENV)/.dev
	$(BIN)/ruff check function tests bench infra
	$(BIN)/ruff format --check function tests bench infra

format: $(VENV)/.dev
	$(BIN)/ruff check --fix function tests bench infra
	$(BIN)/ruff format function tests bench infra

typecheck: $(VENV)/.dev
	$(BIN)/mypy

# The whole suite, with branch coverage of function/ and its floor
# (pyproject.toml [tool.coverage]: fail_under).
pytest: $(VENV)/.dev
	$(PY) -m pytest --cov --cov-report=term

# The tests not marked slow (no servers, children or browsers): under a minute.
test-fast: $(VENV)/.dev
	$(PY) -m pytest -q -m "not slow"

test: lint typecheck pytest

bench: $(VENV)/.dev
	$(PY) -m bench.run_all

# schemathesis with many more examples than the suite's fixed-seed run.
# The docs site at http://localhost:8001 (the reference pages: infra/make_docs.py).
docs: $(VENV)/.dev
	$(PY) infra/make_docs.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a localhost:8001

fuzz: $(VENV)/.dev
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-1000} $(PY) -m pytest -q -p no:cacheprovider tests/contract/test_schemathesis.py

# Mixed traffic at concurrency 1, 4, 16 and 64 against a real server (bench/soak.py).
soak: $(VENV)/.dev
	$(PY) -m bench.soak

# Mutation testing of the core modules (pyproject.toml [tool.mutmut]) with the
# fast tests; not part of `make test` (tens of minutes). Run before a release;
# the score and the surviving mutants are kept in tests/MUTATION.md.
# mutmut 3.8 (3.7 breaks on pytest 9) asks for click>=8.4, aws-sam-cli pins 8.1.8:
# mutmut goes in without its dependencies, which run on either click.
mutate: $(VENV)/.dev
	$(PIP_INSTALL) -c constraints.txt libcst textual setproctitle | $(QUIET_SATISFIED)
	$(PIP_INSTALL) --no-deps mutmut==3.8.1 | $(QUIET_SATISFIED)
	$(PY) -m infra.mutate core imaging --jobs $${MUTATE_JOBS:-2}

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache mutants .coverage
