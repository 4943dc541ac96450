"""``hw.units.fixed_point.round_shift_saturate`` against ``sw.numerics`` rounding, bit for bit:
every shift of the field, the edges of the value range and of each saturation limit."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module, Shape, Signal, signed, unsigned
from amaranth.sim import Simulator

from hw.units.fixed_point import round_shift_saturate, saturation_limits
from sw.numerics import SHIFT_WIDTH, requantize, rounding_offset


def _reference(values, shift: int, low: int, high: int) -> list[int]:
    values = np.asarray(values, dtype=np.int64)
    return np.clip((values + rounding_offset(shift)) >> shift, low, high).tolist()


def _values(shape: Shape, shift_width: int, low: int, high: int, seed: int) -> list[int]:
    """Range edges, random values, and each saturation limit with its neighbours."""
    if shape.signed:
        lo, hi = -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    else:
        lo, hi = 0, (1 << shape.width) - 1
    rng = random.Random(seed)
    values = {lo, hi, 0, min(1, hi), max(-1, lo)}
    values |= {rng.randint(lo, hi) for _ in range(40)}
    for limits in saturation_limits(shape, shift_width, low, high):
        values |= {v + d for v in limits for d in (-1, 0, 1)}
    return sorted(v for v in values if lo <= v <= hi)


@pytest.mark.parametrize("value_shape, shift_width, low, high", [
    (signed(49), SHIFT_WIDTH, -128, 127),      # the GEMM requantizer's product
    (signed(20), SHIFT_WIDTH, -128, 127),
    (unsigned(23), SHIFT_WIDTH, 0, (1 << 16) - 1),  # the i-exp's unsigned product
    (signed(14), 4, -3, 200),                 # asymmetric range, a narrow shift field
    (signed(5), 3, -128, 127),                # a range wider than the value
])
def test_round_shift_saturate_matches_numerics(value_shape, shift_width, low, high):
    m = Module()
    value, shift = Signal(value_shape), Signal(shift_width)
    result = Signal(range(low, high + 1))
    m.d.comb += result.eq(round_shift_saturate(value, shift, low, high))
    values = _values(value_shape, shift_width, low, high, seed=value_shape.width)
    mismatches = []

    async def testbench(ctx):
        for s in range(1 << shift_width):
            expected = _reference(values, s, low, high)
            for v, want in zip(values, expected):
                ctx.set(value, v)
                ctx.set(shift, s)
                if ctx.get(result) != want:
                    mismatches.append((v, s, ctx.get(result), want))

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    assert mismatches == []


def test_reference_is_the_requantizer_rounding():
    """The test's reference is ``sw.numerics.requantize`` (multiplier 1) on the int8 range."""
    values = np.arange(-5000, 5000, 7)
    for s in range(SHIFT_WIDTH + 10):
        assert _reference(values, s, -128, 127) == requantize(values, 1, s).tolist()


def test_saturation_limits_are_exact():
    """A value at a limit saturates and one below it does not (signed 16-bit value, int8
    result), except where a limit is clamped to the value range."""
    shape = signed(16)
    lows, highs = saturation_limits(shape, 4, -128, 127)
    for s, (low_limit, high_limit) in enumerate(zip(lows, highs)):
        if high_limit <= (1 << 15) - 1:
            assert _reference([high_limit - 1, high_limit], s, -10**9, 10**9) == [127, 128]
        if low_limit > -(1 << 15):
            assert _reference([low_limit - 1, low_limit], s, -10**9, 10**9) == [-129, -128]
