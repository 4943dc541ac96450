"""cocotb testbench of the layernorm unit (run through ``sim.harness``, not collected by
pytest); the drivers and scoreboard are ``sim.unit_tb``."""

import cocotb

from sim.unit_tb import run_unit_jobs


@cocotb.test()
async def layernorm_jobs(dut):
    """layernorm jobs in sequence: bit-exact outputs, cycles as the cycle model."""
    await run_unit_jobs(dut, "layernorm")
