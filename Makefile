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
	$(PY) -m flow.demo

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

# Synthesis, and place and route where the design fits LFE5U-85F: build/<name>/synth/<top>.json
# (PLACE=0: synthesis only). Installs its own tools once (a stamp): Debian's yosys and the
# pinned requirements-synth.txt.
TOP          ?= layer_engine
PLACE        ?= 1
SYNTH_STAMP  := $(VENV)/.synth-installed
unexport TOP

.PHONY: synth

$(SYNTH_STAMP): requirements-synth.txt $(STAMP)
	command -v yosys >/dev/null || { apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y yosys; }
	$(PY) -m pip install --quiet -r requirements-synth.txt
	touch $(SYNTH_STAMP)

# `make bench` measures synthesis too (bench/synth.py), so it needs the same tools.
bench: $(SYNTH_STAMP)

synth: setup $(SYNTH_STAMP)
	$(PY) -m hw.synth --config $(call shell_quote,$(value CONFIG)) \
	  --top $(call shell_quote,$(value TOP)) $(if $(filter 0,$(PLACE)),--no-place)

# A bitstream for the ULX3S 85F board: the layer engine behind the UART host bridge
# (hw/board), built with amaranth-boards' platform files and the synth tools:
# build/<name>/bitstream/<name>.bit and bitstream.json. No board is needed to build it.
.PHONY: bitstream

bitstream: setup $(SYNTH_STAMP)
	$(PY) -m hw.board.build --config $(call shell_quote,$(value CONFIG))
