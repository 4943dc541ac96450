"""The AXI4 read channels (AR and R) as an Amaranth signature, with the standard signal names.

A component with an ``axi: Out(AxiReadSignature(...))`` member is an AXI4 read *manager*; in
Verilog its ports are ``axi__araddr``, ``axi__arvalid``, ... (cocotbext-axi's
``AxiReadBus.from_prefix(dut, "axi_")`` finds them). Only what a read manager of INCR bursts
needs is present: ``arid`` / ``rid`` (one bit, always 0), ``araddr``, ``arlen``, ``arsize``,
``arburst``, the handshakes, ``rdata``, ``rresp`` and ``rlast``.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BURST_INCR", "AxiReadSignature"]

#: ``arburst`` of an incrementing burst.
BURST_INCR = 0b01


class AxiReadSignature(wiring.Signature):
    """AR and R channels of an AXI4 read manager with ``addr_width``-bit addresses and a
    ``data_width``-bit data bus.

    Members
    -------
    arid, araddr, arlen, arsize, arburst, arvalid : Out
    arready : In(1)
    rid, rdata, rresp, rlast, rvalid : In
    rready : Out(1)
    """

    def __init__(self, *, addr_width: int, data_width: int):
        self._addr_width, self._data_width = addr_width, data_width
        super().__init__({
            "arid": Out(1), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
            "arburst": Out(2), "arvalid": Out(1), "arready": In(1),
            "rid": In(1), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })

    @property
    def addr_width(self) -> int:
        return self._addr_width

    @property
    def data_width(self) -> int:
        return self._data_width

    def __eq__(self, other):
        return (type(other) is type(self)
                and (other.addr_width, other.data_width) == (self.addr_width, self.data_width))

    def __repr__(self):
        return f"AxiReadSignature(addr_width={self.addr_width}, data_width={self.data_width})"
