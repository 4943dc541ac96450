# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the units' pieces against the golden kernels, bit for bit: the
i-exp, the pipelined reciprocal and the pipelined square root (one operand per cycle)."""

import dataclasses

import numpy as np
import pytest

from hw.units.exp import IntegerExp
from hw.units.isqrt import IntegerSqrt
from hw.units.reciprocal import PowerOfTwoReciprocal
from sw.cycle_model.units import IEXP_LATENCY, isqrt_stages
from sw.golden.kernels import isqrt, softmax_constants, softmax_exp, softmax_reciprocal


def _stream(run_simulation, dut, operands: list[dict], latency: int, result: str,
            stalls: bool = False) -> list[int]:
    """Present one operand set per cycle (``valid``/``en`` high) and collect ``result`` the
    ``latency``-th cycle after; with ``stalls``, ``en`` drops every third cycle."""
    outputs = []

    async def testbench(ctx):
        pending = []          # operand index per advancing cycle
        index = cycle = 0
        while len(outputs) < len(operands):
            advance = not (stalls and cycle % 3 == 2)
            if hasattr(dut, "en"):
                ctx.set(dut.en, advance)
            if index < len(operands):
                for name, value in operands[index].items():
                    ctx.set(getattr(dut, name), value)
            if hasattr(dut, "valid"):
                ctx.set(dut.valid, index < len(operands))
            if advance:
                pending.append(index < len(operands))
                if len(pending) > latency and pending[-latency - 1]:
                    outputs.append(ctx.get(getattr(dut, result)))
                index += 1
            await ctx.tick()
            cycle += 1

    run_simulation(dut, testbench)
    return outputs


@pytest.mark.parametrize("scale", [0.05, 1 / 1500, 2.0 ** -12])
@pytest.mark.parametrize("stalls", [False, True])
def test_exp_matches_golden(run_simulation, scale, stalls):
    c = softmax_constants(scale)
    dut = IntegerExp(distance_width=33, frac_bits=c.frac_bits, multiplier_width=16)
    assert dut.latency == IEXP_LATENCY == 5
    g = np.random.default_rng(3)
    distances = np.concatenate([np.arange(0, 40), [2**32 - 1, 2**31, 1 << 20],
                                g.integers(0, 1 << 12, 60), g.integers(0, 2**32, 20)])
    constants = dict(multiplier=c.multiplier, shift=c.shift, poly_b=c.poly_b, poly_c=c.poly_c)
    found = _stream(run_simulation, dut, [dict(distance=int(d), **constants)
                                          for d in distances], dut.latency, "exp", stalls)
    assert found == softmax_exp(distances, c).tolist()


@pytest.mark.parametrize("recip_bits", [51, 58, 62, 8])
def test_reciprocal_matches_golden(run_simulation, recip_bits):
    c = dataclasses.replace(softmax_constants(0.05), recip_bits=recip_bits)
    dut = PowerOfTwoReciprocal(divisor_width=35, numerator_bits=63, tag_width=3)
    assert dut.latency == 63
    g = np.random.default_rng(recip_bits)
    divisors = np.concatenate([[1, 2, 3, 6090202, 2**35 - 1, 2**34, 2**34 + 1],
                               g.integers(1, 2**35, 40), g.integers(1, 1000, 10)])
    found = _stream(run_simulation, dut, [dict(divisor=int(d), k=recip_bits, tag=n % 8)
                                          for n, d in enumerate(divisors)], 63, "quotient")
    assert found == softmax_reciprocal(divisors, c).tolist()


def test_reciprocal_carries_tags(run_simulation):
    dut = PowerOfTwoReciprocal(divisor_width=8, numerator_bits=12, tag_width=4)
    tags = _stream(run_simulation, dut, [dict(divisor=n + 1, k=11, tag=n) for n in range(16)],
                   12, "o_tag")
    assert tags == list(range(16))


@pytest.mark.parametrize("width", [52, 36, 7])
def test_isqrt_matches_golden(run_simulation, width):
    dut = IntegerSqrt(width=width, tag_width=2)
    assert dut.latency == isqrt_stages(width) == (width + 1) // 2
    top = (1 << width) - 1
    g = np.random.default_rng(width)
    roots = g.integers(0, 1 << (width // 2), 20)
    operands = np.unique(np.clip(np.concatenate([
        [0, 1, 2, 3, 4, 5, top, top - 1], [1 << b for b in range(width)],
        roots * roots, roots * roots - 1, roots * roots + 1, g.integers(0, top, 30,
                                                                        endpoint=True)]),
        0, top))
    found = _stream(run_simulation, dut, [dict(operand=int(n), tag=0) for n in operands],
                    dut.latency, "root")
    assert found == isqrt(operands).tolist()


def test_pieces_reject_bad_parameters():
    with pytest.raises(ValueError, match="Distance width must be a positive integer, not 0"):
        IntegerExp(distance_width=0, frac_bits=10, multiplier_width=16)
    with pytest.raises(ValueError, match="Numerator bits must be a positive integer, not 0"):
        PowerOfTwoReciprocal(divisor_width=8, numerator_bits=0)
    with pytest.raises(TypeError, match="Operand width must be a positive integer, not 2.5"):
        IntegerSqrt(width=2.5)
