"""Pipelined requantizer: int accumulators to saturated narrow integers, several lanes at once."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_positive
from hw.units.fixed_point import round_shift_saturate
from sw.numerics import SHIFT_WIDTH


class Requantizer(wiring.Component):
    """Computes ``saturate((acc * multiplier + rounding) >> shift)`` per lane.

    Exactly ``sw.numerics.requantize``: the rounding constant is ``2**(shift-1)`` (0 for shift
    0), the shift is arithmetic (it floors), the result saturates to ``out_width`` bits. Three
    register stages (accumulator, product, result); no back-pressure, so both streams are
    ``always_ready`` and an input at cycle ``t`` leaves at cycle ``t + latency``. A ``tag``
    (e.g. the output address) travels alongside.

    Parameters
    ----------
    lanes : int
        Values per transfer.
    acc_width, multiplier_width, out_width, tag_width : int
        Widths of the accumulator (signed), multiplier (unsigned), result (signed) and tag.

    Members
    -------
    i : In(stream.Signature(StructLayout({"acc", "multiplier", "shift", "tag"}), always_ready=True))
        Accumulators and their per-lane constants.
    o : Out(stream.Signature(StructLayout({"data", "tag"}), always_ready=True))
        Requantized values.
    """

    latency = 3

    def __init__(self, *, lanes: int, acc_width: int = 32, multiplier_width: int = 16,
                 out_width: int = 8, tag_width: int = 1):
        self._lanes = check_positive(lanes, "Lanes")
        self._acc_width = check_positive(acc_width, "Accumulator width")
        self._multiplier_width = check_positive(multiplier_width, "Multiplier width")
        self._out_width = check_positive(out_width, "Output width")
        check_positive(tag_width, "Tag width")
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "acc": data.ArrayLayout(signed(acc_width), lanes),
                "multiplier": data.ArrayLayout(unsigned(multiplier_width), lanes),
                "shift": data.ArrayLayout(unsigned(SHIFT_WIDTH), lanes),
                "tag": unsigned(tag_width),
            }), always_ready=True)),
            "o": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(out_width), lanes),
                "tag": unsigned(tag_width),
            }), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        staged = [Signal.like(self.i.payload, name=f"stage{n}_in") for n in (1, 2)]
        valid = [Signal(name=f"stage{n}_valid") for n in (1, 2)]
        product_width = self._acc_width + self._multiplier_width + 1
        products = [Signal(signed(product_width), name=f"product_{lane}")
                    for lane in range(self._lanes)]

        # Stage 1: register the inputs. Stage 2: multiply. Stage 3: round, shift, saturate.
        m.d.sync += [staged[0].eq(self.i.payload), valid[0].eq(self.i.valid),
                     staged[1].eq(staged[0]), valid[1].eq(valid[0])]
        low, high = -(1 << (self._out_width - 1)), (1 << (self._out_width - 1)) - 1
        for lane in range(self._lanes):
            # signed x unsigned: Amaranth zero-extends the multiplier, the product is signed.
            m.d.sync += products[lane].eq(staged[0].acc[lane] * staged[0].multiplier[lane])
            m.d.sync += self.o.payload.data[lane].eq(
                round_shift_saturate(products[lane], staged[1].shift[lane], low, high))
        m.d.sync += [self.o.payload.tag.eq(staged[1].tag), self.o.valid.eq(valid[1])]
        return m
