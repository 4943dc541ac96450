"""The devices ``make synth`` reports against, and how much of each resource they hold."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ecp5Device:
    """An ECP5 part that nextpnr-ecp5 places and routes for.

    Capacities are those nextpnr-ecp5 0.11 reports under ``utilization`` ("available") for the
    part; ``comb`` counts LUT4 slots (``TRELLIS_COMB``): a LUT4 takes one, a CCU2C carry cell and
    a TRELLIS_DPR16X4 distributed RAM two each.
    """

    name: str
    nextpnr_size: str
    speed: int
    package: str
    comb: int
    ff: int
    mult18: int
    dp16kd: int

    @property
    def label(self) -> str:
        return f"{self.name} speed {self.speed}"


@dataclass(frozen=True)
class XilinxReference:
    """An UltraScale+ part that synthesis-only estimates are compared against (no placement)."""

    name: str
    lut: int
    ff: int
    dsp48: int
    bram36: int
    uram: int


#: The largest ECP5, on common open boards (ULX3S 85F, OrangeCrab 85F).
LFE5U_85F = Ecp5Device(name="LFE5U-85F", nextpnr_size="--85k", speed=6, package="CABGA381",
                       comb=83640, ff=83640, mult18=156, dp16kd=208)

#: The ZCU102 board's part (Xilinx DS891 product table), for designs too large for any ECP5.
XCZU9EG = XilinxReference(name="XCZU9EG (ZCU102)", lut=274080, ff=548160, dsp48=2520,
                          bram36=912, uram=0)
