"""Residual add unit: ``out = requantize(a * m_a + b * m_b, 1, shift)`` on whole vectors.

``sw.golden.kernels.residual_add_int`` is the arithmetic. The unit walks ``rows`` rows of
``words`` vectors of two scratchpad regions through two read ports, one vector per cycle, adds
the two scaled operands lane by lane and sends the sum through a :class:`Requantizer` (multiplier
1) into the write port. Timing (``sw.cycle_model.layer_engine``): read addresses on cycles
``0 .. n-1`` after ``start`` (``n = rows * words``), data a cycle later, one register stage for
the scaled sum, then the requantizer's three; the last vector is written on cycle
``n - 1 + RESIDUAL_LATENCY``.
"""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.gemm.requantizer import Requantizer
from hw.layer.scratchpad import ScratchClient
from sw.cycle_model.layer_engine import RESIDUAL_LATENCY
from sw.numerics import SHIFT_WIDTH

# read, scaled sum, requantizer: the latency the cycle model states
assert RESIDUAL_LATENCY == 1 + 1 + Requantizer.latency


def residual_constants_layout(multiplier_width: int) -> data.StructLayout:
    """Runtime constants of one residual add (``sw.golden.kernels.ResidualConstants``)."""
    return data.StructLayout({"multiplier_a": unsigned(multiplier_width),
                              "multiplier_b": unsigned(multiplier_width),
                              "shift": unsigned(SHIFT_WIDTH)})


class ResidualAdd(wiring.Component):
    """Adds two regions into a third, vector by vector.

    Parameters
    ----------
    vector_lanes : int
        Lanes of a scratchpad vector.
    in_width, out_width, multiplier_width : int
        Operand width (both operands are read as ``in_width``-bit signed), result width and
        multiplier width.
    max_rows, max_words, depth : int
        Largest row count, vectors per row, scratchpad vectors.
    """

    def __init__(self, *, vector_lanes: int, in_width: int, out_width: int,
                 multiplier_width: int, max_rows: int, max_words: int, depth: int):
        self._c, self._in_width, self._out_width = vector_lanes, in_width, out_width
        self._multiplier_width = multiplier_width
        self._max_rows, self._max_words, self._depth = max_rows, max_words, depth
        super().__init__({
            "start": In(1),
            "constants": In(residual_constants_layout(multiplier_width)),
            "a_base": In(range(depth)), "b_base": In(range(depth)), "out_base": In(range(depth)),
            "stride": In(range(max_words * 8 + 1)),
            "rows": In(range(max_rows + 1)), "words": In(range(max_words + 1)),
            "scratch": Out(ScratchClient(depth=depth, lanes=vector_lanes)),
            "finished": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._c
        sum_width = self._in_width + self._multiplier_width + 1
        m.submodules.requantizer = requantizer = Requantizer(
            lanes=c, acc_width=sum_width, multiplier_width=1, out_width=self._out_width,
            tag_width=Signal(range(self._depth)).shape().width)

        walking = Signal()
        rows = Signal.like(self.rows)
        words = Signal.like(self.words)
        stride = Signal.like(self.stride)
        row = Signal.like(self.rows)
        word = Signal.like(self.words)
        offset = Signal(range(self._depth + 1))       # of the current row's first vector
        a_base, b_base, out_base = (Signal.like(self.a_base), Signal.like(self.b_base),
                                    Signal.like(self.out_base))
        with m.If(self.start):
            m.d.sync += [walking.eq((self.rows != 0) & (self.words != 0)),
                         rows.eq(self.rows), words.eq(self.words), stride.eq(self.stride),
                         row.eq(0), word.eq(0), offset.eq(0), a_base.eq(self.a_base),
                         b_base.eq(self.b_base), out_base.eq(self.out_base)]
        with m.Elif(walking):
            with m.If(word == words - 1):
                m.d.sync += [word.eq(0), row.eq(row + 1), offset.eq(offset + stride)]
                with m.If(row == rows - 1):
                    m.d.sync += walking.eq(0)
            with m.Else():
                m.d.sync += word.eq(word + 1)
        position = offset + word
        m.d.comb += [self.scratch.read_a.addr.eq(a_base + position),
                     self.scratch.read_b.addr.eq(b_base + position)]

        # data of the address issued last cycle arrives now; register the scaled sum
        read_valid, read_tag = Signal(), Signal(range(self._depth))
        m.d.sync += [read_valid.eq(walking), read_tag.eq(out_base + position)]
        scaled = Signal(data.ArrayLayout(signed(sum_width), c))
        scaled_valid, scaled_tag = Signal(), Signal(range(self._depth))
        constants = self.constants
        for lane in range(c):
            a = self.scratch.read_a.data[lane][:self._in_width].as_signed()
            b = self.scratch.read_b.data[lane][:self._in_width].as_signed()
            m.d.sync += scaled[lane].eq(a * constants.multiplier_a + b * constants.multiplier_b)
        m.d.sync += [scaled_valid.eq(read_valid), scaled_tag.eq(read_tag)]
        m.d.comb += [requantizer.i.valid.eq(scaled_valid), requantizer.i.payload.acc.eq(scaled),
                     requantizer.i.payload.tag.eq(scaled_tag)]
        for lane in range(c):
            m.d.comb += [requantizer.i.payload.multiplier[lane].eq(1),
                         requantizer.i.payload.shift[lane].eq(constants.shift)]
        m.d.comb += [self.scratch.write.addr.eq(requantizer.o.payload.tag),
                     self.scratch.write.en.eq(requantizer.o.valid)]
        for lane in range(c):
            m.d.comb += self.scratch.write.data[lane].eq(requantizer.o.payload.data[lane])
        total = Signal(range(max(self._max_rows * self._max_words, 1) + 1))
        written = Signal.like(total)
        with m.If(self.start):
            m.d.sync += [total.eq(self.rows * self.words), written.eq(0)]
        with m.Elif(requantizer.o.valid):
            m.d.sync += written.eq(written + 1)
        m.d.comb += self.finished.eq(requantizer.o.valid & (written == total - 1))
        return m
