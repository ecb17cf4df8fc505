# Two commands do all the set-up on a fresh machine:
#   make quickstart   # install into .venv, then a small real run on this CPU
#   make test         # install into .venv, then the test suite
# TORCH pins the torch and torchvision builds that this machine holds on disk (a CUDA
# build that also runs on the CPU; torchvision is what `--model torchvision:NAME` and its
# tests need, and PyPI's torchvision does not import beside the CPU-only torch 2.13.0
# file here). With a GPU, install the torch/torchvision you want first (any torch>=2.1)
# and run `pip install -e ".[dev]"`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

.PHONY: install quickstart test test-fast lint
install: $(VENV)/.installed

quickstart: $(VENV)/.installed
	$(VENV)/bin/aows quickstart

test: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed  # the inner loop: everything but the end-to-end runs
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks examples
