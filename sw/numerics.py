"""Integer arithmetic primitives shared by every golden kernel (see docs/numerics.md).

Everything here works on numpy int64 arrays and floors like Python's ``//`` and ``>>``. These are
the only definitions of saturation and requantization in the project: the golden model, the
exporter and the testbenches import them; the RTL is checked against them bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

#: Width of the per-channel right-shift field of the requantization constants.
SHIFT_WIDTH = 6

#: Largest product width (accumulator + multiplier + sign) whose rounding sum int64 still holds.
_INT64_HEADROOM_BITS = 62


def signed_range(width: int) -> tuple[int, int]:
    """Return the inclusive ``(min, max)`` of a two's complement integer of ``width`` bits."""
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"Width must be a positive integer, not {width!r}")
    return -(1 << (width - 1)), (1 << (width - 1)) - 1


def saturate(values, width: int) -> np.ndarray:
    """Clamp ``values`` to the signed range of ``width`` bits (no wrap-around)."""
    low, high = signed_range(width)
    return np.clip(np.asarray(values, dtype=np.int64), low, high)


def wrap(values, width: int) -> np.ndarray:
    """Reduce ``values`` modulo ``2**width`` into the signed range, as a hardware register does."""
    values = np.asarray(values, dtype=np.int64)
    if width >= 64:                              # an int64 already is a 64-bit register
        return values
    half = 1 << (width - 1)
    return ((values + half) & ((1 << width) - 1)) - half


def rounding_offset(shift) -> np.ndarray:
    """The constant added before the right shift: ``2**(shift-1)``, or 0 when ``shift`` is 0."""
    shift = np.asarray(shift, dtype=np.int64)
    # 1 << (shift - 1) directly: (1 << shift) >> 1 would overflow int64 at shift 63.
    return np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)


def requantize(acc, multiplier, shift, *, out_width: int = 8) -> np.ndarray:
    """Scale accumulators down to ``out_width``-bit integers.

    ``y = saturate((acc * multiplier + rounding_offset(shift)) >> shift, out_width)`` with an
    arithmetic (flooring) right shift, i.e. round half up (towards +inf). ``multiplier`` and
    ``shift`` broadcast against ``acc`` (per output channel on the last axis).

    Raises
    ------
    ValueError
        If a multiplier is negative, or a shift is outside ``[0, 2**SHIFT_WIDTH)``.
    """
    acc = np.asarray(acc, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(multiplier < 0):
        raise ValueError("Requantization multipliers must be non-negative")
    if np.any(shift < 0) or np.any(shift >= (1 << SHIFT_WIDTH)):
        raise ValueError(f"Requantization shifts must lie in [0, {1 << SHIFT_WIDTH}), "
                         f"found {int(shift.min())}..{int(shift.max())}")
    product = acc * multiplier
    return saturate((product + rounding_offset(shift)) >> shift, out_width)


def check_requant_widths(acc_width: int, multiplier_width: int) -> None:
    """Raise ``ValueError`` if int64 cannot hold the exact rounding sum for these widths."""
    if acc_width + multiplier_width > _INT64_HEADROOM_BITS:
        raise ValueError(f"acc_width ({acc_width}) + multiplier_width ({multiplier_width}) must not "
                         f"exceed {_INT64_HEADROOM_BITS} bits for exact int64 requantization")


def quantize_multiplier(scale: float, *, multiplier_width: int = 16) -> tuple[int, int]:
    """Express a positive real ``scale`` as ``multiplier / 2**shift``.

    The multiplier is normalised into ``[2**(w-1), 2**w)`` (``w = multiplier_width``) for the
    most precision, then the shift is clipped into its field; scales too small for the field
    give multiplier 0 (every output rounds to 0).

    Raises
    ------
    ValueError
        If ``scale`` is not a finite positive number, or too large to represent.
    """
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"Requantization scale must be a finite positive number, not {scale!r}")
    mantissa, exponent = math.frexp(scale)           # scale = mantissa * 2**exponent, 0.5 <= m < 1
    shift = multiplier_width - exponent
    multiplier = round(mantissa * (1 << multiplier_width))
    if multiplier == 1 << multiplier_width:          # mantissa rounded up to 1.0
        multiplier >>= 1
        shift -= 1
    max_shift = (1 << SHIFT_WIDTH) - 1
    if shift < 0:
        raise ValueError(f"Requantization scale {scale!r} is too large for a "
                         f"{multiplier_width}-bit multiplier")
    if shift > max_shift:
        multiplier = round(scale * (1 << max_shift))
        shift = max_shift
    return int(multiplier), int(shift)


def exact_matmul(a, b) -> np.ndarray:
    """Exact integer ``a @ b`` as int64, fast.

    Uses float64 BLAS when every partial sum is provably below 2**53 (so the float result is the
    exact integer), and int64 arithmetic otherwise.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    inner = a.shape[-1]
    bound = inner * int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0))
    if bound < (1 << 53):
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a @ b
