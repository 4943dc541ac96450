"""Pipelined integer square root ``floor(sqrt(n))``: one result bit per register stage."""

from amaranth.hdl import Const, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_positive
from sw.cycle_model.units import isqrt_stages


class IntegerSqrt(wiring.Component):
    """``floor(sqrt(n))`` of an unsigned ``width``-bit ``n``, a new operand every cycle.

    The digit-by-digit method: with ``bit`` running over ``4**(s-1), 4**(s-2), ..., 1``
    (``s = ceil(width / 2)`` stages), ``if rest >= root + bit: rest -= root + bit;
    root = root / 2 + bit, else root = root / 2``. It yields the exact floor square root, the
    value ``sw.golden.kernels.isqrt`` reaches by its Newton steps. The result (and ``tag``)
    leaves ``latency = s`` cycles after its operand was presented with ``valid``.

    Parameters
    ----------
    width, tag_width : int

    Members
    -------
    valid : In(1)
    operand : In(unsigned(width))
    tag : In(unsigned(tag_width))
    o_valid : Out(1)
    root : Out(unsigned(ceil(width / 2)))
    o_tag : Out(unsigned(tag_width))
    """

    def __init__(self, *, width: int, tag_width: int = 1):
        self._width = check_positive(width, "Operand width")
        check_positive(tag_width, "Tag width")
        super().__init__({
            "valid": In(1),
            "operand": In(unsigned(width)),
            "tag": In(unsigned(tag_width)),
            "o_valid": Out(1),
            "root": Out(unsigned(isqrt_stages(width))),
            "o_tag": Out(unsigned(tag_width)),
        })

    @property
    def latency(self) -> int:
        return isqrt_stages(self._width)

    def elaborate(self, platform):
        m = Module()
        stages = isqrt_stages(self._width)
        wide = 2 * stages + 1
        rest, root, valid, tag = self.operand, Const(0, wide), self.valid, self.tag
        for stage in range(stages):
            bit = 1 << (2 * (stages - 1 - stage))
            trial = Signal(wide + 1, name=f"trial_{stage}")
            m.d.comb += trial.eq(root + bit)
            next_rest = Signal(2 * stages, name=f"rest_{stage}")
            next_root = Signal(wide, name=f"root_{stage}")
            next_valid = Signal(name=f"valid_{stage}")
            next_tag = Signal.like(self.tag, name=f"tag_{stage}")
            m.d.sync += [next_valid.eq(valid), next_tag.eq(tag)]
            with m.If(rest >= trial):
                m.d.sync += [next_rest.eq(rest - trial), next_root.eq((root >> 1) + bit)]
            with m.Else():
                m.d.sync += [next_rest.eq(rest), next_root.eq(root >> 1)]
            rest, root, valid, tag = next_rest, next_root, next_valid, next_tag
        m.d.comb += [self.o_valid.eq(valid), self.root.eq(root), self.o_tag.eq(tag)]
        return m
