# Two commands for a fresh machine (see README.md):
#   make demo   - set up .venv once, then run the main job on the bundled synthetic pets
#   make test   - set up .venv once, then run every test (lint, nbdev-test, pytest); .ci/run adds the sync check
# and one to read the course:
#   make lab    - set up .venv (plus JupyterLab) once, then open the lessons in nbs/ in JupyterLab
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= demo-out

.PHONY: demo test lab install lint nbtest pytest quicktest export clean-nbs docs-proc bench bench-real

# The stamps hold a copy of the pyproject.toml they installed: nbdev-export rewrites that file unchanged, and
# an unchanged file must not cost a reinstall.
$(STAMP): pyproject.toml
	@if cmp -s pyproject.toml $(STAMP); then touch $(STAMP); else \
	  test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	  echo "Installing imgcls-course and its dev tools into $(VENV) (first run only; torch is large)..."; \
	  $(BIN)/python -m pip install -q -e ".[dev]" 2>&1 | { grep -v "is ignored: it is neither" || true; }; \
	  cp pyproject.toml $(STAMP); fi

install: $(STAMP)

LAB_STAMP := $(VENV)/.lab-installed
$(LAB_STAMP): $(STAMP)
	@if cmp -s pyproject.toml $(LAB_STAMP); then touch $(LAB_STAMP); else \
	  echo "Installing JupyterLab into $(VENV) (first run only)..."; \
	  $(BIN)/python -m pip install -q -e ".[dev,lab]" 2>&1 | { grep -v "is ignored: it is neither" || true; }; \
	  cp pyproject.toml $(LAB_STAMP); fi

# JupyterLab on the lessons; LAB_ARGS adds options, e.g. make lab LAB_ARGS="--no-browser --port 8890"
LAB_ARGS ?=
lab: $(LAB_STAMP)
	$(BIN)/jupyter lab --notebook-dir=nbs $(LAB_ARGS)

demo: $(STAMP)
	$(BIN)/imgcls-course demo --out $(OUT)

# nbdev-test runs 2 notebooks at once on 2 cores: one thread each, or they wait on each other.
test: $(STAMP)
	$(MAKE) --no-print-directory lint
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2 --timing
	$(BIN)/pytest -q tests

# pyflakes rules and lines of at most 120 characters (pyproject.toml, [tool.ruff]). In the library, nbdev writes
# `__all__` wrapped at 120 and then prefixed by `__all__ = `, so ruff allows it 130 there; tests/test_project.py
# holds every other library line to 120.
lint: $(STAMP)
	$(BIN)/ruff check tests bench
	$(BIN)/ruff check --line-length 130 imgcls_course

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

# the benchmarks that need no download (each prints a table); bench-real needs internet once
bench: $(STAMP)
	$(BIN)/python bench/presizing_bench.py
	$(BIN)/python bench/gradcam_bench.py
	$(BIN)/python bench/localisation.py   # trains five off-centre pets models on first use (30-45 min on 2 cores)
	$(BIN)/python bench/localisation.py --placement centre --train-size 128

# real photos: build the two public sets (git + internet, once), then the tool's default vs a linear probe
REAL ?= $(HOME)/.cache/imgcls_course/real_sets
bench-real: $(STAMP)
	if [ ! -d $(REAL)/bears ] || [ ! -d $(REAL)/cats_dogs ]; then $(BIN)/python bench/get_real_photos.py --dest $(REAL); fi
	for s in bears cats_dogs; do $(BIN)/python bench/real_photos.py $(REAL)/$$s --seeds 0,1,2; done
