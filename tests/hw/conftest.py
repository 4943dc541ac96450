"""Shared Amaranth-simulator harness for hardware unit tests (waves only when WAVES=1)."""

import os
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
