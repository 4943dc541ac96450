"""Pipelined reciprocal ``2**k // divisor``: one restoring-division step per register stage."""

from amaranth.hdl import Const, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_positive


class PowerOfTwoReciprocal(wiring.Component):
    """``floor(2**k / divisor)`` for ``k < numerator_bits``, a new operand every cycle.

    Long division of the numerator ``2**k`` from bit ``numerator_bits - 1`` down to bit 0, one
    bit per register stage: ``t = 2 * rem + (k == j)``; if ``t >= divisor`` then
    ``rem = t - divisor`` and quotient bit ``j`` is 1. The result (and the ``tag``) leaves
    ``latency = numerator_bits`` cycles after its operands were presented with ``valid``.
    A divisor of 0 gives all ones.

    Parameters
    ----------
    divisor_width, numerator_bits, tag_width : int

    Members
    -------
    valid : In(1)
    divisor : In(unsigned(divisor_width))
    k : In(range(numerator_bits))
    tag : In(unsigned(tag_width))
    o_valid : Out(1)
    quotient : Out(unsigned(numerator_bits))
    o_tag : Out(unsigned(tag_width))
    """

    def __init__(self, *, divisor_width: int, numerator_bits: int, tag_width: int = 1):
        self._divisor_width = check_positive(divisor_width, "Divisor width")
        self._numerator_bits = check_positive(numerator_bits, "Numerator bits")
        check_positive(tag_width, "Tag width")
        super().__init__({
            "valid": In(1),
            "divisor": In(unsigned(divisor_width)),
            "k": In(range(numerator_bits)),
            "tag": In(unsigned(tag_width)),
            "o_valid": Out(1),
            "quotient": Out(unsigned(numerator_bits)),
            "o_tag": Out(unsigned(tag_width)),
        })

    @property
    def latency(self) -> int:
        return self._numerator_bits

    def elaborate(self, platform):
        m = Module()
        n = self._numerator_bits
        valid, divisor, k, tag = self.valid, self.divisor, self.k, self.tag
        remainder, quotient = Const(0, self._divisor_width), Const(0, n)
        for stage, bit in enumerate(range(n - 1, -1, -1)):
            trial = Signal(self._divisor_width + 1, name=f"trial_{bit}")
            m.d.comb += trial.eq((remainder << 1) | (k == bit))
            next_remainder = Signal(self._divisor_width, name=f"remainder_{bit}")
            next_quotient = Signal(n, name=f"quotient_{bit}")
            next_valid = Signal(name=f"valid_{bit}")
            next_divisor = Signal(self._divisor_width, name=f"divisor_{bit}")
            next_k = Signal.like(k, name=f"k_{bit}")
            next_tag = Signal.like(tag, name=f"tag_{bit}")
            fits = trial >= divisor
            m.d.sync += [next_valid.eq(valid), next_divisor.eq(divisor), next_k.eq(k),
                         next_tag.eq(tag)]
            with m.If(fits):
                m.d.sync += [next_remainder.eq(trial - divisor),
                             next_quotient.eq(quotient | (1 << bit))]
            with m.Else():
                m.d.sync += [next_remainder.eq(trial), next_quotient.eq(quotient)]
            remainder, quotient, valid = next_remainder, next_quotient, next_valid
            divisor, k, tag = next_divisor, next_k, next_tag
        m.d.comb += [self.o_valid.eq(valid), self.quotient.eq(quotient), self.o_tag.eq(tag)]
        return m
