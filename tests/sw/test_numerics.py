"""Tests of the integer arithmetic primitives: ranges, saturation, wrap, requantization."""

import math
import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sw.numerics import (
    SHIFT_WIDTH,
    check_requant_widths,
    exact_matmul,
    quantize_multiplier,
    requantize,
    rounding_offset,
    saturate,
    signed_range,
    wrap,
)

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def reference_requantize(acc: int, multiplier: int, shift: int, out_width: int = 8) -> int:
    """Requantization in Python ints, which never overflow; Python's >> floors."""
    offset = (1 << shift) >> 1
    value = (acc * multiplier + offset) >> shift
    low, high = -(1 << (out_width - 1)), (1 << (out_width - 1)) - 1
    return min(max(value, low), high)


# signed_range -----------------------------------------------------------------------------------

@pytest.mark.parametrize("width, expected", [
    (1, (-1, 0)),
    (2, (-2, 1)),
    (8, (-128, 127)),
    (16, (-32768, 32767)),
    (32, (INT32_MIN, INT32_MAX)),
    (64, (INT64_MIN, INT64_MAX)),
])
def test_signed_range(width, expected):
    assert signed_range(width) == expected


@pytest.mark.parametrize("width", [0, -1, 2.0, "8", None])
def test_signed_range_rejects_non_positive_widths(width):
    message = rf"^Width must be a positive integer, not {re.escape(repr(width))}$"
    with pytest.raises(ValueError, match=message):
        signed_range(width)


# saturate ---------------------------------------------------------------------------------------

def test_saturate_clamps_to_the_signed_range():
    result = saturate([-1000, -129, -128, -1, 0, 127, 128, 1000], 8)
    assert result.dtype == np.int64
    assert np.array_equal(result, [-128, -128, -128, -1, 0, 127, 127, 127])


def test_saturate_other_widths():
    assert np.array_equal(saturate([-9, -8, 7, 8], 4), [-8, -8, 7, 7])
    assert np.array_equal(saturate([[-2, 5]], 2), [[-2, 1]])
    assert np.array_equal(saturate([INT64_MIN, INT64_MAX], 32), [INT32_MIN, INT32_MAX])


# wrap -------------------------------------------------------------------------------------------

def test_wrap_examples():
    assert np.array_equal(wrap([127, 128, 200, 255, 256, -129, -128], 8),
                          [127, -128, -56, -1, 0, 127, -128])
    assert int(wrap(1 << 31, 32)) == INT32_MIN


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 63),
       values=st.lists(st.integers(INT64_MIN, INT64_MAX), min_size=1, max_size=8))
def test_wrap_equals_python_modular_arithmetic(width, values):
    modulus, half = 1 << width, 1 << (width - 1)
    expected = [(value + half) % modulus - half for value in values]
    assert wrap(np.array(values, dtype=np.int64), width).tolist() == expected


def test_wrap_at_64_bits_is_the_identity():
    values = np.array([INT64_MIN, -1, 0, 1, INT64_MAX], dtype=np.int64)
    assert np.array_equal(wrap(values, 64), values)


# rounding_offset --------------------------------------------------------------------------------

def test_rounding_offset_examples():
    assert np.array_equal(rounding_offset([0, 1, 2, 3, 8, 31]), [0, 1, 2, 4, 128, 1 << 30])


@pytest.mark.parametrize("shift", range(64))
def test_rounding_offset_is_half_of_two_to_the_shift(shift):
    # shift 63: 2**62, where (1 << 63) >> 1 in int64 would overflow to -2**62
    assert int(rounding_offset(shift)) == (1 << shift) // 2


# requantize: hand-worked examples ---------------------------------------------------------------

@pytest.mark.parametrize("acc, multiplier, shift, expected", [
    # exact halves round up, towards +inf: -1.25 -> -1 (truncation would give 0 here)
    (-5, 1, 2, -1),      # (-5 + 2) >> 2 == -3 >> 2 == -1
    (5, 1, 2, 1),        # (5 + 2) >> 2 == 1            1.25 -> 1
    (6, 1, 2, 2),        # (6 + 2) >> 2 == 2            1.5  -> 2
    (-6, 1, 2, -1),      # (-6 + 2) >> 2 == -1          -1.5 -> -1 (half up, not away from 0)
    (2, 1, 2, 1),        # (2 + 2) >> 2 == 1            0.5  -> 1
    (-2, 1, 2, 0),       # (-2 + 2) >> 2 == 0           -0.5 -> 0
    (-7, 1, 2, -2),      # (-7 + 2) >> 2 == -5 >> 2 == -2 (-1.75; truncation would give -1)
    (-3, 1, 1, -1),      # (-3 + 1) >> 1 == -1          -1.5 -> -1
    (100, 3, 4, 19),     # (300 + 8) >> 4 == 19         18.75 -> 19
    (-100, 3, 4, -19),   # (-300 + 8) >> 4 == -292 >> 4 == -19 (-18.25 floors to -19)
    (1000, 16384, 15, 127),      # 500 saturates
    (-1000, 16384, 15, -128),    # -500 saturates
    (255, 16384, 15, 127),       # (255*16384 + 16384) >> 15 == 128 -> 127
    (-257, 16384, 15, -128),     # (-257*16384 + 16384) >> 15 == -128
    (-259, 16384, 15, -128),     # -129 -> -128
    (12345, 0, 7, 0),            # multiplier 0: (0 + 64) >> 7 == 0
])
def test_requantize_examples(acc, multiplier, shift, expected):
    assert int(requantize(acc, multiplier, shift)) == expected


def test_requantize_shift_zero_is_a_saturated_multiply():
    result = requantize([-3, 0, 7, 42, -43], 3, 0)
    assert result.dtype == np.int64
    assert np.array_equal(result, [-9, 0, 21, 126, -128])
    assert np.array_equal(requantize([127, 128, -128, -129], 1, 0), [127, 127, -128, -128])


def test_requantize_saturates_at_the_out_width():
    assert np.array_equal(requantize([-9, -8, 7, 8], 1, 0, out_width=4), [-8, -8, 7, 7])
    assert np.array_equal(requantize([INT32_MIN, INT32_MAX], (1 << 16) - 1, 0, out_width=16),
                          [-32768, 32767])


def test_requantize_broadcasts_per_output_channel():
    acc = np.array([[10, 10, 10], [-10, -10, -10]])
    multiplier = np.array([1, 3, 5])
    shift = np.array([0, 1, 2])
    # channel 0: acc; channel 1: (3*acc + 1) >> 1; channel 2: (5*acc + 2) >> 2
    expected = [[10, 15, 13], [-10, -15, -12]]
    assert np.array_equal(requantize(acc, multiplier, shift), expected)


def test_requantize_rejects_negative_multipliers():
    with pytest.raises(ValueError, match=r"^Requantization multipliers must be non-negative$"):
        requantize([1, 2], [1, -1], [0, 0])


@pytest.mark.parametrize("shift, found", [([0, 64], "0..64"), ([-1, 3], "-1..3"), (99, "99..99")])
def test_requantize_rejects_shifts_outside_the_field(shift, found):
    with pytest.raises(ValueError, match=rf"^Requantization shifts must lie in \[0, 64\), "
                                         rf"found {re.escape(found)}$"):
        requantize([1, 2], 1, shift)


def test_shift_field_width():
    assert SHIFT_WIDTH == 6


# requantize against the pure-Python reference ---------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(acc=st.integers(INT32_MIN, INT32_MAX), multiplier=st.integers(0, (1 << 16) - 1),
       shift=st.integers(0, 63), out_width=st.sampled_from([8, 4, 16]))
@example(acc=-5, multiplier=1, shift=2, out_width=8)
@example(acc=INT32_MIN, multiplier=(1 << 16) - 1, shift=62, out_width=8)
@example(acc=0, multiplier=0, shift=63, out_width=8)
@example(acc=INT32_MAX, multiplier=(1 << 16) - 1, shift=38, out_width=16)
def test_requantize_matches_python_integers(acc, multiplier, shift, out_width):
    expected = reference_requantize(acc, multiplier, shift, out_width)
    assert int(requantize(acc, multiplier, shift, out_width=out_width)) == expected


@settings(max_examples=50, deadline=None)
@given(accs=st.lists(st.integers(INT32_MIN, INT32_MAX), min_size=4, max_size=4),
       multipliers=st.lists(st.integers(0, (1 << 16) - 1), min_size=4, max_size=4),
       shifts=st.lists(st.integers(0, 63), min_size=4, max_size=4))
def test_requantize_vectorised_matches_python_integers(accs, multipliers, shifts):
    acc = np.array([accs, accs[::-1]], dtype=np.int64)
    expected = [[reference_requantize(a, m, s) for a, m, s in zip(row, multipliers, shifts)]
                for row in acc.tolist()]
    assert requantize(acc, multipliers, shifts).tolist() == expected


@pytest.mark.parametrize("acc, multiplier", [(0, 0), (0, 1), (1000, 1), (-1000, 1),
                                             (INT32_MAX, (1 << 16) - 1)])
def test_requantize_at_the_largest_shift(acc, multiplier):
    # the int64 offset 2**62 must not overflow; every |acc * multiplier| < 2**62 here, so
    # (acc*m + 2**62) >> 63 == 0
    assert int(requantize(acc, multiplier, 63)) == reference_requantize(acc, multiplier, 63) == 0


# quantize_multiplier ----------------------------------------------------------------------------

@pytest.mark.parametrize("scale, expected", [
    (1.0, (1 << 15, 15)),
    (0.5, (1 << 15, 16)),
    (0.75, (3 << 14, 16)),
    (2.0 ** -20, (1 << 15, 35)),
    (1.0 - 2.0 ** -20, (1 << 15, 15)),    # mantissa rounds up to 1.0: renormalised
    (2.0 ** 15, (1 << 15, 0)),
    (2.0 ** -48, (1 << 15, 63)),           # smallest normalised scale: shift 63 exactly
])
def test_quantize_multiplier_examples(scale, expected):
    assert quantize_multiplier(scale) == expected


@settings(max_examples=300, deadline=None)
@given(scale=st.floats(min_value=2.0 ** -47, max_value=2.0 ** 15))
def test_quantize_multiplier_normalised_and_precise(scale):
    multiplier, shift = quantize_multiplier(scale)
    assert isinstance(multiplier, int) and isinstance(shift, int)
    assert 1 << 15 <= multiplier < 1 << 16
    assert 0 <= shift < 1 << SHIFT_WIDTH
    error = abs(Fraction(multiplier, 1 << shift) - Fraction(scale)) / Fraction(scale)
    assert error < Fraction(1, 1 << 15)


@pytest.mark.parametrize("width", [2, 8, 24])
def test_quantize_multiplier_other_widths(width):
    multiplier, shift = quantize_multiplier(0.3, multiplier_width=width)
    assert 1 << (width - 1) <= multiplier < 1 << width
    assert abs(multiplier / 2 ** shift - 0.3) / 0.3 <= 2.0 ** -width


@pytest.mark.parametrize("scale, expected", [
    (2.0 ** -60, (8, 63)),        # round(2**-60 * 2**63) == 8
    (3.0 * 2.0 ** -64, (2, 63)),  # round(1.5) == 2 (Python rounds half to even)
    (1e-30, (0, 63)),
    (5e-324, (0, 63)),            # smallest subnormal
])
def test_quantize_multiplier_clips_tiny_scales_to_shift_63(scale, expected):
    assert quantize_multiplier(scale) == expected


def test_tiny_scale_outputs_round_to_zero():
    # quantize_multiplier's docstring: scales too small for the field round every output to 0
    multiplier, shift = quantize_multiplier(1e-30)
    assert np.array_equal(requantize([-1000, 0, 1000], multiplier, shift), [0, 0, 0])


@pytest.mark.parametrize("scale", [0, 0.0, -1.0, -1e-30, math.inf, -math.inf, math.nan])
def test_quantize_multiplier_rejects_non_positive_or_non_finite(scale):
    with pytest.raises(ValueError, match=rf"^Requantization scale must be a finite positive "
                                         rf"number, not {re.escape(repr(scale))}$"):
        quantize_multiplier(scale)


@pytest.mark.parametrize("scale", [2.0 ** 16, 1e6, 1e300])
def test_quantize_multiplier_rejects_too_large_scales(scale):
    with pytest.raises(ValueError, match=rf"^Requantization scale {re.escape(repr(scale))} is too "
                                         rf"large for a 16-bit multiplier$"):
        quantize_multiplier(scale)


# exact_matmul -----------------------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), m=st.integers(1, 6), k=st.integers(1, 40),
       n=st.integers(1, 6))
def test_exact_matmul_float_path_equals_int64(seed, m, k, n):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, size=(m, k))
    b = rng.integers(-128, 128, size=(k, n))
    result = exact_matmul(a, b)
    assert result.dtype == np.int64
    assert np.array_equal(result, a.astype(np.int64) @ b.astype(np.int64))


def test_exact_matmul_just_below_the_float_bound():
    # bound 2**53 - 1 < 2**53: the float path, still exact because 2**53 - 1 is a float64
    a = np.array([[(1 << 53) - 1]])
    assert int(exact_matmul(a, [[1]])[0, 0]) == (1 << 53) - 1


def test_exact_matmul_int_path_is_exact_beyond_float64():
    # float64 cannot hold 2**53 + 1: only the int64 path gives it back
    assert int(exact_matmul([[(1 << 53) + 1]], [[1]])[0, 0]) == (1 << 53) + 1
    rng = np.random.default_rng(7)
    a = rng.integers(-(1 << 30), 1 << 30, size=(3, 16))
    b = rng.integers(-(1 << 26), 1 << 26, size=(16, 5))
    expected = [[sum(int(x) * int(y) for x, y in zip(row, col)) for col in b.T] for row in a]
    result = exact_matmul(a, b)
    assert result.dtype == np.int64
    assert result.tolist() == expected
    assert np.array_equal(result, a @ b)


def test_exact_matmul_empty_inner_dimension():
    assert np.array_equal(exact_matmul(np.zeros((2, 0), dtype=np.int64),
                                       np.zeros((0, 3), dtype=np.int64)), np.zeros((2, 3)))


# check_requant_widths ---------------------------------------------------------------------------

@pytest.mark.parametrize("acc_width, multiplier_width", [(32, 16), (46, 16), (30, 32), (2, 2)])
def test_check_requant_widths_accepts(acc_width, multiplier_width):
    assert check_requant_widths(acc_width, multiplier_width) is None


@pytest.mark.parametrize("acc_width, multiplier_width", [(47, 16), (64, 16), (31, 32)])
def test_check_requant_widths_rejects(acc_width, multiplier_width):
    with pytest.raises(ValueError, match=rf"^acc_width \({acc_width}\) \+ multiplier_width "
                                         rf"\({multiplier_width}\) must not exceed 62 bits for "
                                         rf"exact int64 requantization$"):
        check_requant_widths(acc_width, multiplier_width)


def test_requantize_is_exact_at_the_widest_accepted_widths():
    # acc_width 46 + multiplier_width 16 == 62: extreme products stay exact in int64
    acc = [-(1 << 45), (1 << 45) - 1]
    multiplier = (1 << 16) - 1
    for shift in (0, 30, 47, 61, 62, 63):
        expected = [reference_requantize(a, multiplier, shift, 32) for a in acc]
        assert requantize(acc, multiplier, shift, out_width=32).tolist() == expected
