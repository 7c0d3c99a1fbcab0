# Two commands for a fresh machine (see README.md):
#   make demo   - set up .venv once, then run the main job on the bundled synthetic pets
#   make test   - set up .venv once, then run every test (sync/clean checks, nbdev-test, pytest)
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= demo-out

.PHONY: demo test install lint nbtest pytest quicktest export clean-nbs docs-proc bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing imgcls-course and its dev tools into $(VENV) (first run only; torch is large)..."
	$(BIN)/python -m pip install -q -e ".[dev]" 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/imgcls-course demo --out $(OUT)

# nbdev-test runs 2 notebooks at once on 2 cores: one thread each, or they wait on each other.
test: $(STAMP)
	$(BIN)/ruff check --select F imgcls_course tests bench
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2 --timing
	$(BIN)/pytest -q tests

# pyflakes rules only (undefined names, unused imports and variables, redefinitions)
lint: $(STAMP)
	$(BIN)/ruff check --select F imgcls_course tests bench

nbtest: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2 --timing

pytest: $(STAMP)
	$(BIN)/pytest -q tests

# the quick part of pytest: leaves out the tests marked slow (training, docs build, processes)
quicktest: $(STAMP)
	$(BIN)/pytest -q -m "not slow" tests

export: $(STAMP)
	$(BIN)/nbdev-clean && $(BIN)/nbdev-export

docs-proc: $(STAMP)
	$(BIN)/nbdev-proc-nbs

bench: $(STAMP)
	for f in bench/*.py; do $(BIN)/python $$f; done
