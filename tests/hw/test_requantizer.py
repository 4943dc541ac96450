# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the requantizer against ``sw.numerics.requantize``, bit for bit."""

import numpy as np
import pytest

from hw.gemm.requantizer import Requantizer
from sw.numerics import SHIFT_WIDTH, requantize, signed_range

#: The largest shift the shift field holds.
TOP_SHIFT = (1 << SHIFT_WIDTH) - 1


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="Lanes must be a positive integer, not 0"):
        Requantizer(lanes=0)
    with pytest.raises(TypeError, match="Lanes must be a positive integer, not 2.0"):
        Requantizer(lanes=2.0)
    with pytest.raises(ValueError, match="Accumulator width must be a positive integer, not 0"):
        Requantizer(lanes=1, acc_width=0)
    with pytest.raises(ValueError, match="Multiplier width must be a positive integer, not -1"):
        Requantizer(lanes=1, multiplier_width=-1)
    with pytest.raises(TypeError, match="Output width must be a positive integer, not True"):
        Requantizer(lanes=1, out_width=True)
    with pytest.raises(ValueError, match="Tag width must be a positive integer, not 0"):
        Requantizer(lanes=1, tag_width=0)


def test_latency_is_three():
    assert Requantizer.latency == 3


def _extreme_vectors(lanes: int, acc_width: int, multiplier_width: int, out_width: int):
    """Rows of (acc, multiplier, shift) per lane that hit the corners of the arithmetic."""
    acc_low, acc_high = signed_range(acc_width)
    mult_high = (1 << multiplier_width) - 1
    out_low, out_high = signed_range(out_width)
    values = []
    for acc in (acc_low, acc_high, acc_low + 1, -1, 0, 1):
        for multiplier in (0, 1, mult_high):
            for shift in sorted({0, 1, 31, 47, TOP_SHIFT, acc_width - 1, acc_width,
                                 acc_width + multiplier_width - 1}):
                values.append((acc, multiplier, shift))
    # Exact halves: acc * multiplier = (2q + 1) * 2**(shift - 1), both signs, so the rounding
    # constant decides (round half up: +2.5 -> 3, -2.5 -> -2).
    for shift in range(1, acc_width):
        for odd in (1, 3, 5, -1, -3, -5):
            acc = odd << (shift - 1)
            if acc_low <= acc <= acc_high:
                values.append((acc, 1, shift))
    for shift in range(multiplier_width, acc_width + multiplier_width - 1):
        # multiplier 2**(w-1) moves the half point beyond the accumulator's own width
        acc = (-1 if shift % 2 else 1) << (shift - multiplier_width)
        values.append((acc, 1 << (multiplier_width - 1), shift))
    # Just inside, at and just outside the saturation limits, for shift 0 and 4.
    for target in (out_low - 1, out_low, out_low + 1, out_high - 1, out_high, out_high + 1,
                   out_low * 100, out_high * 100):
        values.append((target, 1, 0))
        values.append((target * 16, 1, 4))
        values.append((target * 16 + 8, 1, 4))      # half above the target: rounds up
        values.append((target * 16 - 8, 1, 4))      # half below the target: rounds to it
    values = [v for v in values if acc_low <= v[0] <= acc_high and v[1] <= mult_high]
    values += [values[-1]] * (-len(values) % lanes)
    return np.array(values, dtype=np.int64).reshape(-1, lanes, 3)


def _random_vectors(rng, count: int, lanes: int, acc_width: int, multiplier_width: int):
    acc_low, acc_high = signed_range(acc_width)
    # a mix of full-range and small accumulators, so that not everything saturates
    wide = rng.integers(acc_low, acc_high, (count, lanes), endpoint=True)
    narrow = rng.integers(-(1 << 12), 1 << 12, (count, lanes))
    acc = np.where(rng.random((count, lanes)) < 0.5, wide, narrow)
    multiplier = rng.integers(0, 1 << multiplier_width, (count, lanes))
    shift = rng.integers(0, 1 << SHIFT_WIDTH, (count, lanes))
    # shifts near the product's width give outputs in range rather than saturated
    near = rng.integers(max(0, multiplier_width - 2), acc_width + 2, (count, lanes))
    shift = np.where(rng.random((count, lanes)) < 0.6, near, shift)
    return np.stack([acc, multiplier, shift], axis=-1)


def _check_against_golden(run_simulation, vectors, *, lanes, acc_width, multiplier_width,
                          out_width, tag_width, seed):
    """Drive ``vectors`` (``(n, lanes, 3)`` of acc, multiplier, shift) one per cycle with random
    valid=0 bubbles; check every output lane against ``sw.numerics.requantize``, the tag, and that
    ``o.valid`` is ``i.valid`` delayed by exactly ``Requantizer.latency`` cycles."""
    dut = Requantizer(lanes=lanes, acc_width=acc_width, multiplier_width=multiplier_width,
                      out_width=out_width, tag_width=tag_width)
    rng = np.random.default_rng(seed)
    expected = requantize(vectors[..., 0], vectors[..., 1], vectors[..., 2], out_width=out_width)
    # Cycle schedule: valid inputs in order, with 0..2 cycle bubbles before some of them.
    schedule = []
    for index in range(len(vectors)):
        schedule += [None] * int(rng.choice([0, 0, 0, 1, 2]))
        schedule.append(index)
    tags = rng.integers(0, 1 << tag_width, len(vectors))
    latency = Requantizer.latency

    async def testbench(ctx):
        checked = 0
        for cycle in range(len(schedule) + latency):
            index = schedule[cycle] if cycle < len(schedule) else None
            if index is None:
                # bubble: a garbage payload that must not come out as valid
                ctx.set(dut.i.valid, 0)
                ctx.set(dut.i.payload.acc, [-1] * lanes)
                ctx.set(dut.i.payload.shift, [0] * lanes)
            else:
                acc, multiplier, shift = (vectors[index, :, k].tolist() for k in range(3))
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload.acc, acc)
                ctx.set(dut.i.payload.multiplier, multiplier)
                ctx.set(dut.i.payload.shift, shift)
                ctx.set(dut.i.payload.tag, int(tags[index]))
            await ctx.tick()
            # now in cycle `cycle + 1`: the input of cycle `cycle + 1 - latency` is on `o`
            source = cycle + 1 - latency
            out_index = schedule[source] if 0 <= source < len(schedule) else None
            assert ctx.get(dut.o.valid) == (out_index is not None), f"cycle {cycle + 1}"
            if out_index is not None:
                found = [int(v) for v in ctx.get(dut.o.payload.data)]
                assert found == expected[out_index].tolist(), \
                    f"input {out_index}: (acc, multiplier, shift) = {vectors[out_index].tolist()}"
                assert ctx.get(dut.o.payload.tag) == tags[out_index], f"input {out_index}"
                checked += 1
        assert checked == len(vectors)

    run_simulation(dut, testbench)
    return expected


WIDTHS = {
    "default": dict(lanes=4, acc_width=32, multiplier_width=16, out_width=8, tag_width=5),
    "narrow": dict(lanes=3, acc_width=16, multiplier_width=8, out_width=4, tag_width=1),
}


@pytest.mark.parametrize("widths", WIDTHS.values(), ids=WIDTHS.keys())
def test_matches_golden_requantize(run_simulation, widths):
    """Corner cases and a few thousand random values."""
    extremes = _extreme_vectors(widths["lanes"], widths["acc_width"],
                                widths["multiplier_width"], widths["out_width"])
    rng = np.random.default_rng(widths["acc_width"])
    vectors = np.concatenate([
        extremes,
        _random_vectors(rng, 3000 // widths["lanes"], widths["lanes"], widths["acc_width"],
                        widths["multiplier_width"]),
    ])
    expected = _check_against_golden(run_simulation, vectors, seed=1, **widths)
    low, high = signed_range(widths["out_width"])
    assert np.any(expected == low) and np.any(expected == high) and np.any(expected == 0)


@pytest.mark.parametrize("widths", WIDTHS.values(), ids=WIDTHS.keys())
def test_top_shift_matches_golden_requantize(run_simulation, widths):
    """The largest shift, ``2**SHIFT_WIDTH - 1`` = 63, with extreme accumulators."""
    extremes = _extreme_vectors(widths["lanes"], widths["acc_width"],
                                widths["multiplier_width"], widths["out_width"])
    values = extremes.reshape(-1, 3)
    values = values[values[:, 2] == TOP_SHIFT]
    values = np.concatenate([values, values[:-len(values) % widths["lanes"]]])
    vectors = values.reshape(-1, widths["lanes"], 3)
    _check_against_golden(run_simulation, vectors, seed=2, **widths)
