"""cocotb testbench of the gelu unit (run through ``sim.harness``, not collected by pytest); the
drivers and scoreboard are ``sim.unit_tb``."""

import cocotb

from sim.unit_tb import run_unit_jobs


@cocotb.test()
async def gelu_jobs(dut):
    """gelu jobs in sequence: bit-exact outputs, cycles as the cycle model."""
    await run_unit_jobs(dut, "gelu")
