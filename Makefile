# Entry points. Every target installs what it needs first (`make setup`, idempotent).
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
CONFIG      ?= tiny
PYTEST_ARGS ?=

.PHONY: setup demo test test-slow bench verilog clean

setup: $(STAMP)

# Re-install only when the dependency list changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

demo: setup
	$(PY) -m sim.demo

test: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench

verilog: setup
	$(PY) -m hw.generate --config $(CONFIG)

clean:
	rm -rf build
