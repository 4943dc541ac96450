"""Transaction-level cocotb plumbing shared by every testbench top.

Every simulation top here has the same outer ports: ``clk`` / ``rst``, a ``load`` stream that
writes memories, a ``job`` stream that starts work, a ``done`` pulse and a registered
``read_addr`` / ``read_data`` port. :class:`TransactionTB` drives those; each testbench adds
its own payload packing and scoreboard on top. No Python runs per clock during a job.
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

__all__ = ["CLOCK_NS", "TransactionTB", "field_offsets"]

CLOCK_NS = 10


def field_offsets(layout) -> dict[str, int]:
    """Bit offset of each field of an Amaranth struct layout (payloads are packed as ints)."""
    return {name: field.offset for name, field in layout}


class TransactionTB:
    """Clock, reset, job hand-shake, read-back and an error count for one top."""

    def __init__(self, dut):
        self.dut = dut
        self.errors = 0
        self.log = dut._log

    async def reset(self, **inputs: int) -> None:
        """Start the clock and hold reset for two cycles, streams idle; ``inputs`` names other
        top-level inputs to set before reset is released."""
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        dut.rst.value = 1
        dut.load__valid.value = 0
        dut.job__valid.value = 0
        dut.read_addr.value = 0
        for name, value in inputs.items():
            getattr(dut, name).value = value
        for _ in range(2):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    async def send_job(self, payload: int) -> int:
        """Send one job and wait for ``done``; return clock cycles from acceptance to ``done``."""
        dut = self.dut
        dut.job__payload.value = payload
        dut.job__valid.value = 1
        while True:
            accepted = int(dut.job__ready.value) == 1
            await RisingEdge(dut.clk)
            if accepted:
                break
        started = get_sim_time("ns")
        dut.job__valid.value = 0
        await RisingEdge(dut.done)
        return round((get_sim_time("ns") - started) / CLOCK_NS)

    async def read_words(self, count: int, start: int = 0, *, addr: str = "read_addr",
                         data: str = "read_data") -> list[int]:
        """Read words ``start .. start+count-1`` of a registered read port (one cycle of
        latency), by default ``read_addr`` / ``read_data``."""
        dut, words = self.dut, []
        addr_port, data_port = getattr(dut, addr), getattr(dut, data)
        addr_port.value = start
        for index in range(count):
            await RisingEdge(dut.clk)
            addr_port.value = start + min(index + 1, count - 1)
            await ReadOnly()
            words.append(int(data_port.value))
        await RisingEdge(dut.clk)
        return words

    def fail(self, message: str) -> bool:
        """Count and log one scoreboard error; returns False."""
        self.errors += 1
        self.log.error("%s", message)
        return False

    def check(self, what: str, found, expected) -> bool:
        """Scoreboard comparison with ``==``."""
        return True if found == expected else self.fail(
            f"{what}: found {found}, expected {expected}")
