"""Shared Amaranth-simulator harness for hardware unit tests (waves only when WAVES=1), and a
fake checkout for running the real Makefile's synthesis targets."""

import os
import shutil
from pathlib import Path

import pytest
from amaranth.sim import Simulator


def simulate(dut, *testbenches, name: str = "dut") -> None:
    """Run async ``testbenches`` against ``dut`` on a 1 MHz ``sync`` clock."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    if os.environ.get("WAVES") == "1":
        waves = Path("build/waves") / f"{name}.vcd"
        waves.parent.mkdir(parents=True, exist_ok=True)
        with sim.write_vcd(str(waves)):
            sim.run()
    else:
        sim.run()


@pytest.fixture
def run_simulation(request):
    """``run_simulation(dut, *testbenches)``, waves named after the test."""
    def run(dut, *testbenches):
        simulate(dut, *testbenches, name=request.node.name.replace("/", "_"))
    return run


REPO_ROOT = Path(__file__).resolve().parents[2]

#: A stand-in ``.venv/bin/python`` that records its arguments, NUL-separated, in ``arguments``.
RECORDER = """#!/bin/sh
for argument in "$@"; do printf '%s\\0' "$argument"; done > "$(dirname "$0")/../../arguments"
"""


@pytest.fixture
def checkout(tmp_path):
    """A copy of the real Makefile with the recording ``.venv/bin/python`` and install stamps
    newer than what they need, so a make target only runs that Python."""
    shutil.copy(REPO_ROOT / "Makefile", tmp_path / "Makefile")
    for name in ("pyproject.toml", "requirements-synth.txt"):
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (1, 1))
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(RECORDER)
    python.chmod(0o755)
    for stamp in (".installed", ".synth-installed"):
        (tmp_path / ".venv" / stamp).write_text("")
    return tmp_path
