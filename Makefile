# Two commands on a fresh machine (Python 3.11+ with venv, make):
#   make run    install, provision the embedded buffalo_sc model, serve on :8000
#   make test   install the dev tools, lint, type-check, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: run test install install-dev models lint format typecheck pytest bench fuzz soak clean

# Stamps make both commands cheap once set up: pip runs again only when the
# dependency lists change.
$(VENV)/.runtime: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e '.[lambda]'
	touch $@

# insightface (for parity tests and the peer benchmark) goes in with --no-deps:
# it asks for opencv-python, which would replace our opencv-python-headless cv2.
$(VENV)/.dev: $(VENV)/.runtime
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	$(PIP) install -q -c constraints.txt --no-deps insightface
	@if $(PIP) show -q opencv-python >/dev/null 2>&1; then \
		echo "opencv-python is installed beside opencv-python-headless; remove it"; exit 1; fi
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

models: $(VENV)/.runtime
	$(PY) -m face_recognition_service.provision

run: models
	$(PY) -m face_recognition_service.server

lint: $(VENV)/.dev
	$(BIN)/ruff check function tests bench infra
	$(BIN)/ruff format --check function tests bench infra

format: $(VENV)/.dev
	$(BIN)/ruff check --fix function tests bench infra
	$(BIN)/ruff format function tests bench infra

typecheck: $(VENV)/.dev
	$(BIN)/mypy

pytest: $(VENV)/.dev
	$(PY) -m pytest

test: lint typecheck pytest

bench: $(VENV)/.dev
	$(PY) -m bench.run_all

# schemathesis with many more examples than the suite's fixed-seed run.
fuzz: $(VENV)/.dev
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-1000} $(PY) -m pytest -q -p no:cacheprovider tests/test_schemathesis.py

# Mixed traffic at concurrency 1, 4, 16 and 64 against a real server (bench/soak.py).
soak: $(VENV)/.dev
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
