# Entry points. Every target installs what it needs first (`make setup`, idempotent).
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
CONFIG      ?= tiny
PYTEST_ARGS ?=

# $(call shell_quote,TEXT): TEXT as one single-quoted shell word, whatever it holds (a space, a
# ';', a '$(...)', a quote), so a variable's value reaches a command as data, never as code.
# Pass it $(value VAR), not $(VAR), so that make does not run a '$(shell ...)' in the value,
# and unexport VAR: make expands what it exports into the commands' environment.
shell_quote = '$(subst ','\'',$(1))'
unexport CONFIG

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
	$(PY) -m hw.generate --config $(call shell_quote,$(value CONFIG))

clean:
	rm -rf build
