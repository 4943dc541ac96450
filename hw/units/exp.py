"""Pipelined integer exponential of the softmax (I-BERT's i-exp), one lane."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_positive
from hw.units.fixed_point import round_shift_saturate
from sw.cycle_model.units import IEXP_LATENCY
from sw.numerics import SHIFT_WIDTH


class IntegerExp(wiring.Component):
    """``e = ((poly_b - r)**2 + poly_c) >> z`` of a score's distance ``d = max - x`` to its row
    maximum, exactly as ``sw.golden.kernels.softmax_exp``.

    ``u = min((d * multiplier + 2**(shift-1)) >> shift, 2**(F+6) - 1)`` is the base-2 exponent
    in ``Q6.F``; ``z = u >> F`` and ``r = u & (2**F - 1)``. Five register stages (the
    distance, so that the subtraction forming it and the product are in different cycles;
    product; round, shift, saturate; square; add and shift), all advancing when ``en`` is high,
    so a stalled pipeline holds its values. The constants are read when each stage needs them and
    must be stable while values are in flight.

    Parameters
    ----------
    distance_width : int
        Bits of the unsigned distance ``d`` (score width + 1).
    frac_bits : int
        ``F``, fraction bits of ``u``.
    multiplier_width : int
        Bits of the unsigned multiplier.

    Members
    -------
    en : In(1)
        Advance the pipeline.
    distance : In(unsigned(distance_width))
    multiplier : In(unsigned(multiplier_width))
    shift : In(unsigned(SHIFT_WIDTH))
    poly_b : In(unsigned(F + 1))
    poly_c : In(unsigned(2F + 2))
    exp : Out(unsigned(2F + 3))
        The result for the distance presented ``latency`` advancing cycles earlier.
    """

    latency = IEXP_LATENCY

    def __init__(self, *, distance_width: int, frac_bits: int, multiplier_width: int):
        self._distance_width = check_positive(distance_width, "Distance width")
        self._frac_bits = check_positive(frac_bits, "Fraction bits")
        self._multiplier_width = check_positive(multiplier_width, "Multiplier width")
        f = frac_bits
        super().__init__({
            "en": In(1),
            "distance": In(unsigned(distance_width)),
            "multiplier": In(unsigned(multiplier_width)),
            "shift": In(unsigned(SHIFT_WIDTH)),
            "poly_b": In(unsigned(f + 1)),
            "poly_c": In(unsigned(2 * f + 2)),
            "exp": Out(unsigned(2 * f + 3)),
        })

    def elaborate(self, platform):
        m = Module()
        f = self._frac_bits
        distance = Signal(self._distance_width)
        product = Signal(self._distance_width + self._multiplier_width)
        exponent = Signal(f + 6)
        square = Signal(2 * f + 2)
        whole = Signal(6)
        top = (1 << (f + 6)) - 1
        difference = Signal(signed(f + 3))
        m.d.comb += difference.eq(self.poly_b - exponent[:f])
        with m.If(self.en):
            m.d.sync += distance.eq(self.distance)
            m.d.sync += product.eq(distance * self.multiplier)
            m.d.sync += exponent.eq(round_shift_saturate(product, self.shift, 0, top))
            m.d.sync += [square.eq(difference * difference), whole.eq(exponent[f:])]
            m.d.sync += self.exp.eq((square + self.poly_c) >> whole)
        return m
