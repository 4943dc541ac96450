"""An on-chip AXI4 read subordinate over one block-RAM memory: external memory for a board.

A layer engine reads its linears' weights through an AXI4 read manager (``WeightFetcher``). In
co-simulation its subordinate is cocotbext-axi's ``AxiRamRead``; on a board with no DRAM
controller (the ULX3S top) it is this: a memory of ``depth`` words one data bus wide, written
word by word through ``write_*`` (by the host bridge, before a job) and read by INCR bursts.

One burst is served at a time: AR is accepted once every beat of the previous burst has been
read from the memory, and a beat is read whenever the R register is empty or being taken, so
with ``rready`` held high the beats of a burst follow each other on consecutive cycles, the
first one two cycles after its AR handshake. ``rresp`` is always OKAY and ``rid`` 0; addresses
are bytes, of which the low ``log2(word bytes)`` bits are ignored (the manager aligns them), and
word addresses wrap at ``depth`` (a power of two).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from hw.memory.axi import AxiReadSignature

__all__ = ["AxiReadRam", "check_shape"]


def check_shape(*, data_width: int, depth: int) -> None:
    """Raise ``ValueError`` unless ``data_width`` is a power of two of bytes and ``depth`` a
    power of two of at least 2 (what :class:`AxiReadRam` needs)."""
    word_bytes = data_width // 8
    if data_width % 8 or word_bytes & (word_bytes - 1) or word_bytes == 0:
        raise ValueError(f"An AXI data bus of {data_width} bits is not a power of two of bytes")
    if depth < 2 or depth & (depth - 1):
        raise ValueError(f"An AXI RAM's depth is a power of two of at least 2, not {depth}")


class AxiReadRam(wiring.Component):
    """``depth`` words of ``data_width`` bits behind an AXI4 read port (see the module docstring).

    Parameters
    ----------
    data_width : int
        Bits of a word and of the data bus; a power of two of bytes.
    depth : int
        Words of the memory, a power of two.
    addr_width : int
        Bits of ``araddr``.

    Members
    -------
    axi : In(AxiReadSignature)
        The read subordinate.
    write_addr : In(range(depth))
    write_data : In(data_width)
    write_en : In(1)
        Writes ``write_data`` at word ``write_addr`` on the next clock edge.
    """

    def __init__(self, *, data_width: int, depth: int, addr_width: int = 32):
        check_shape(data_width=data_width, depth=depth)
        word_bytes = data_width // 8
        self._depth = depth
        self._offset_bits = word_bytes.bit_length() - 1
        super().__init__({
            "axi": In(AxiReadSignature(addr_width=addr_width, data_width=data_width)),
            "write_addr": In(range(depth)),
            "write_data": In(data_width),
            "write_en": In(1),
        })

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        m.submodules.storage = storage = memory.Memory(shape=len(axi.rdata), depth=self.depth,
                                                       init=[])
        write = storage.write_port()
        read = storage.read_port(transparent_for=())
        m.d.comb += [write.addr.eq(self.write_addr), write.data.eq(self.write_data),
                     write.en.eq(self.write_en)]

        word = Signal(range(self.depth))          # the next word to read
        remaining = Signal(9)                     # beats of the current burst not yet read
        beat_valid = Signal()                     # the R register holds a beat
        beat_last = Signal()
        advance = Signal()                        # read a beat into the R register
        m.d.comb += [
            advance.eq((remaining != 0) & (~beat_valid | axi.rready)),
            read.addr.eq(word), read.en.eq(advance),
            axi.arready.eq(remaining == 0),
            axi.rvalid.eq(beat_valid), axi.rlast.eq(beat_last), axi.rdata.eq(read.data),
            axi.rresp.eq(0), axi.rid.eq(0),
        ]
        with m.If(advance):
            m.d.sync += [word.eq(word + 1), remaining.eq(remaining - 1),
                         beat_valid.eq(1), beat_last.eq(remaining == 1)]
        with m.Elif(axi.rready):
            m.d.sync += beat_valid.eq(0)
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += [word.eq(axi.araddr[self._offset_bits:]), remaining.eq(axi.arlen + 1)]
        return m
