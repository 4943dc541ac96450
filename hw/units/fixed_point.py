"""Combinational fixed-point helpers shared by the units: rounding shift and saturation, exactly
as ``sw.numerics.requantize`` rounds (half up, then a flooring shift) and saturates."""

from amaranth.hdl import Const, Mux, Value


def rounding_shift(value: Value, shift: Value) -> Value:
    """``(value + 2**(shift - 1)) >> shift``, no offset for shift 0; combinational.

    ``shift`` is unsigned; the sum is one bit wider than ``value`` and the offset, so it never
    overflows, and a signed ``value`` shifts arithmetically (floors)."""
    offset = (Const(1, 1) << shift) >> 1
    return (value + offset) >> shift


def saturate(value: Value, low: int, high: int) -> Value:
    """``value`` clamped to ``[low, high]``; combinational. Assign it to a signal of a width
    that holds the range."""
    return Mux(value > high, high, Mux(value < low, low, value))
