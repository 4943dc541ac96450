"""Golden integer-only softmax, GELU, LayerNorm and residual add (see docs/numerics.md).

Each kernel is a pure function of integer arrays and the integer constants of a frozen dataclass;
a ``*_constants`` helper derives those integers once from the real scales, and the hardware gets
the same integers. Everything runs in numpy int64 and floors like Python's ``//`` and ``>>``.
The algorithms follow I-BERT (Kim et al., 2021): i-exp, i-GELU and i-sqrt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sw.numerics import quantize_multiplier, requantize, saturate, signed_range

#: I-BERT's second-order fit of ``exp(p)`` on ``(-ln 2, 0]``: ``A * (p + B)**2 + C``. In float64
#: it is at most 2.13e-3 off; ``softmax_exp`` with 10 fraction bits at most 2.52e-3 on [-8, 0]
#: (docs/numerics.md, "Accuracy of the integer exponential").
EXP_POLY_A, EXP_POLY_B, EXP_POLY_C = 0.3585, 1.353, 0.344
#: I-BERT's fit of ``erf(u)`` for ``u >= 0``: ``1 - A * (min(u, B) - B)**2``.
ERF_POLY_A, ERF_POLY_B = 0.2888, 1.769
#: Newton steps of ``isqrt``; enough for every ``n`` in ``[0, 2**62]`` (tested exhaustively at the
#: worst starting points and with hypothesis).
ISQRT_ITERATIONS = 6
#: Largest value ``isqrt`` accepts.
ISQRT_MAX = 1 << 62

_INT64_BITS = 62          # the widest intermediate the int64 golden model may hold exactly


def _as_int_array(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, not {array.dtype}")
    if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} exceed int64")
    return array.astype(np.int64)


def _check_signed(values: np.ndarray, width: int, name: str) -> None:
    low, high = signed_range(width)
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(f"{name} exceed {width}-bit signed integers "
                         f"(found {int(values.min())}..{int(values.max())})")


def _check_scale(scale: float, name: str) -> None:
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"{name} must be a finite positive number, not {scale!r}")


def _full_precision_multiplier(ratio: float, multiplier_width: int, what: str,
                               scale: float) -> tuple[int, int]:
    """``quantize_multiplier(ratio)``, refusing ratios whose multiplier lost its top bits."""
    multiplier, shift = quantize_multiplier(ratio, multiplier_width=multiplier_width)
    if multiplier < 1 << (multiplier_width - 1):
        raise ValueError(f"{what} scale {scale!r} is out of range: the ratio {ratio:.3g} needs a "
                         f"shift above 63 for a {multiplier_width}-bit multiplier")
    return multiplier, shift


# --------------------------------------------------------------------------------------------
# Softmax (i-exp)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SoftmaxConstants:
    """The integers of one softmax unit (``softmax_constants`` derives them).

    Attributes
    ----------
    multiplier, shift : int
        ``(max - x) * input_scale * log2(e) * 2**frac_bits ~= (d * multiplier) >> shift``.
    frac_bits : int
        Fraction bits ``F`` of the base-2 exponent ``u``.
    poly_b, poly_c : int
        ``round(EXP_POLY_B / ln2 * 2**F)`` and ``round(EXP_POLY_C / (EXP_POLY_A * ln2**2) * 4**F)``.
    recip_bits : int
        ``K``: the reciprocal is ``2**K // sum``.
    out_bits : int
        Fraction bits of the unsigned probabilities (``Q0.out_bits``, at most ``2**out_bits - 1``).
    max_len : int
        Longest row the unit accepts.
    in_width : int
        Signed width of the scores.
    """

    multiplier: int
    shift: int
    frac_bits: int
    poly_b: int
    poly_c: int
    recip_bits: int
    out_bits: int
    max_len: int
    in_width: int


def softmax_constants(input_scale: float, *, out_bits: int = 8, frac_bits: int = 10,
                      max_len: int = 4096, in_width: int = 32,
                      multiplier_width: int = 16) -> SoftmaxConstants:
    """Integer constants of ``softmax_int`` for scores whose real value is ``q * input_scale``.

    Raises
    ------
    ValueError
        If a scale or width is out of range, or the constants would not fit int64.
    """
    _check_scale(input_scale, "Softmax input scale")
    if not 1 <= out_bits <= 16:
        raise ValueError(f"Softmax output bits must be between 1 and 16, not {out_bits}")
    if not 4 <= frac_bits <= 16:
        raise ValueError(f"Softmax fraction bits must be between 4 and 16, not {frac_bits}")
    if not 2 <= in_width <= 32:
        raise ValueError(f"Softmax input width must be between 2 and 32 bits, not {in_width}")
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"Softmax row length must be a positive integer, not {max_len!r}")
    multiplier, shift = _full_precision_multiplier(
        input_scale * 2**frac_bits / math.log(2), multiplier_width, "Softmax input", input_scale)
    # sum < max_len * 2**(2F+3); 8 guard bits keep the reciprocal's relative error below 2**-8 LSB
    recip_bits = out_bits + 2 * frac_bits + 3 + (max_len - 1).bit_length() + 8
    if recip_bits > _INT64_BITS:
        raise ValueError(f"Softmax reciprocal needs {recip_bits} bits, more than "
                         f"{_INT64_BITS}; lower out_bits, frac_bits or max_len")
    return SoftmaxConstants(
        multiplier=multiplier, shift=shift, frac_bits=frac_bits,
        poly_b=round(EXP_POLY_B / math.log(2) * 2**frac_bits),
        poly_c=round(EXP_POLY_C / (EXP_POLY_A * math.log(2) ** 2) * 4**frac_bits),
        recip_bits=recip_bits, out_bits=out_bits, max_len=max_len, in_width=in_width)


def softmax_int(scores, constants: SoftmaxConstants) -> np.ndarray:
    """Integer softmax over the last axis: unsigned ``Q0.out_bits`` probabilities.

    Steps (widths in docs/numerics.md, "Integer kernels"): ``d = max - x``; base-2 exponent
    ``u = requantize(d, multiplier, shift)`` saturated to ``F + 6`` bits; ``z = u >> F``,
    ``r = u & (2**F - 1)``; ``e = ((poly_b - r)**2 + poly_c) >> z``; ``recip = 2**K // sum(e)``;
    ``p = requantize(e, recip, K - out_bits)`` saturated to ``[0, 2**out_bits - 1]``.

    Raises
    ------
    ValueError
        If the scores are not integers of ``in_width`` bits, or a row is empty or longer than
        ``max_len``.
    """
    c = constants
    x = _as_int_array(scores, "Softmax scores")
    if x.ndim == 0 or not 1 <= x.shape[-1] <= c.max_len:
        raise ValueError(f"Softmax rows must have 1..{c.max_len} scores, not shape {x.shape}")
    _check_signed(x, c.in_width, "Softmax scores")
    if x.size == 0:                                               # no rows
        return x
    distance = x.max(axis=-1, keepdims=True) - x                  # [0, 2**in_width)
    exp = softmax_exp(distance, c)                                # [0, 2**(2F+3))
    total = exp.sum(axis=-1, keepdims=True)                       # >= poly_b**2 + poly_c
    reciprocal = softmax_reciprocal(total, c)
    return requantize(exp, reciprocal, c.recip_bits - c.out_bits, out_width=c.out_bits + 1)


def softmax_exp(distance, constants: SoftmaxConstants) -> np.ndarray:
    """i-exp of distances ``d = max - x >= 0`` (steps 2 to 4 of ``softmax_int``):
    ``u = requantize(d, multiplier, shift)`` saturated to ``F + 6`` bits, ``z = u >> F``,
    ``r = u & (2**F - 1)``, ``e = ((poly_b - r)**2 + poly_c) >> z``."""
    c = constants
    exponent = requantize(distance, c.multiplier, c.shift, out_width=c.frac_bits + 7)
    whole = exponent >> c.frac_bits                               # [0, 63]
    fraction = exponent & ((1 << c.frac_bits) - 1)                # [0, 2**F)
    return ((c.poly_b - fraction) ** 2 + c.poly_c) >> whole


def softmax_reciprocal(total, constants: SoftmaxConstants) -> np.ndarray:
    """``2**recip_bits // total`` (step 6 of ``softmax_int``), floor."""
    return (1 << constants.recip_bits) // np.asarray(total, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# GELU (i-GELU)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GeluConstants:
    """The integers of one GELU unit (``gelu_constants`` derives them).

    Attributes
    ----------
    clip_width : int
        ``W``: inputs saturate to ``W``-bit signed first (invisible in the output, see the doc).
    erf_multiplier, erf_shift : int
        ``x / sqrt(2) * 2**frac_bits ~= (q * erf_multiplier) >> erf_shift``.
    frac_bits : int
        Fraction bits ``F`` of the erf argument ``t``.
    erf_b, erf_c : int
        ``round(ERF_POLY_B * 2**F)`` and ``round(4**F / ERF_POLY_A)``.
    multiplier, shift : int
        Output requantization: ``input_scale / (2 * erf_c * out_scale)``.
    in_width, out_width : int
        Signed widths of the input accumulators and of the output.
    """

    clip_width: int
    erf_multiplier: int
    erf_shift: int
    frac_bits: int
    erf_b: int
    erf_c: int
    multiplier: int
    shift: int
    in_width: int
    out_width: int


def gelu_constants(input_scale: float, out_scale: float, *, frac_bits: int = 10,
                   in_width: int = 32, out_width: int = 8,
                   multiplier_width: int = 16) -> GeluConstants:
    """Integer constants of ``gelu_int`` from the input and output scales.

    Raises
    ------
    ValueError
        If a scale or width is out of range, or the product ``q * h`` could not be requantized
        exactly in int64 (output scale too coarse for the input scale).
    """
    _check_scale(input_scale, "GELU input scale")
    _check_scale(out_scale, "GELU output scale")
    if not 4 <= frac_bits <= 16:
        raise ValueError(f"GELU fraction bits must be between 4 and 16, not {frac_bits}")
    if not 2 <= in_width <= 32:
        raise ValueError(f"GELU input width must be between 2 and 32 bits, not {in_width}")
    if not 2 <= out_width <= 16:
        raise ValueError(f"GELU output width must be between 2 and 16 bits, not {out_width}")
    # Beyond |x| = max(2.6, 1.01 * 2**(out_width-1) * out_scale) erf is saturated (h = 0 or
    # 2 * erf_c) and the output saturated or 0, so clipping the input there changes nothing.
    limit = max(2.6, 1.01 * 2 ** (out_width - 1) * out_scale) / input_scale
    clip_width = min(in_width, math.ceil(limit).bit_length() + 1)
    erf_c = round(4**frac_bits / ERF_POLY_A)
    product_bits = clip_width + (2 * erf_c).bit_length()          # |q h| < 2**(W-1) * 2 erf_c
    if product_bits + multiplier_width > _INT64_BITS:
        raise ValueError(f"GELU product needs {product_bits} + {multiplier_width} bits, more than "
                         f"{_INT64_BITS}; the output scale is too coarse for the input scale")
    erf_multiplier, erf_shift = _full_precision_multiplier(
        input_scale * 2**frac_bits / math.sqrt(2), multiplier_width, "GELU input", input_scale)
    multiplier, shift = _full_precision_multiplier(
        input_scale / (2 * erf_c * out_scale), multiplier_width, "GELU output", out_scale)
    return GeluConstants(
        clip_width=clip_width, erf_multiplier=erf_multiplier, erf_shift=erf_shift,
        frac_bits=frac_bits, erf_b=round(ERF_POLY_B * 2**frac_bits), erf_c=erf_c,
        multiplier=multiplier, shift=shift, in_width=in_width, out_width=out_width)


def gelu_int(x, constants: GeluConstants) -> np.ndarray:
    """Integer GELU of accumulators ``x``: ``out_width``-bit signed outputs.

    Steps: ``q = saturate(x, W)``; ``t = requantize(q, erf_multiplier, erf_shift)`` saturated to
    ``F + 3`` bits (``x / sqrt 2`` in ``Q2.F``); ``s = (min(|t|, erf_b) - erf_b)**2``;
    ``h = erf_c + sign(t) * (erf_c - s)`` (``1 + erf`` in units of ``1 / erf_c``, in
    ``[0, 2 erf_c]``); ``y = requantize(q * h, multiplier, shift, out_width)``.

    Raises
    ------
    ValueError
        If the inputs are not integers of ``in_width`` bits.
    """
    c = constants
    x = _as_int_array(x, "GELU inputs")
    _check_signed(x, c.in_width, "GELU inputs")
    clipped = saturate(x, c.clip_width)
    t = requantize(clipped, c.erf_multiplier, c.erf_shift, out_width=c.frac_bits + 3)
    square = (np.minimum(np.abs(t), c.erf_b) - c.erf_b) ** 2       # [0, erf_b**2]
    one_plus_erf = c.erf_c + np.sign(t) * (c.erf_c - square)       # [0, 2 * erf_c]
    return requantize(clipped * one_plus_erf, c.multiplier, c.shift, out_width=c.out_width)


# --------------------------------------------------------------------------------------------
# LayerNorm (i-sqrt)
# --------------------------------------------------------------------------------------------

def isqrt(n) -> np.ndarray:
    """``floor(sqrt(n))`` of int64 ``n`` in ``[0, 2**62]``, by a fixed number of Newton steps.

    ``x0 = 2**ceil(bit_length(n) / 2)`` (at least ``sqrt(n)``), then ``ISQRT_ITERATIONS`` times
    ``x = min(x, (x + n // max(x, 1)) >> 1)``. The ``min`` makes the sequence non-increasing, so
    it stops at ``floor(sqrt(n))`` instead of oscillating to ``floor(sqrt(n)) + 1``; the
    ``max(x, 1)`` only matters for ``n = 0``, whose root reaches 0 after one step.

    Raises
    ------
    ValueError
        If ``n`` is not integers in ``[0, 2**62]``.
    """
    n = _as_int_array(n, "isqrt operands")
    if n.size and (n.min() < 0 or n.max() > ISQRT_MAX):
        raise ValueError(f"isqrt operands must lie in [0, 2**62], found "
                         f"{int(n.min())}..{int(n.max())}")
    bit_length = np.zeros_like(n)
    for bit in range(63):                                          # a leading-one detector
        bit_length += (n >> bit) > 0
    root = np.left_shift(np.int64(1), (bit_length + 1) >> 1)
    for _ in range(ISQRT_ITERATIONS):
        root = np.minimum(root, (root + n // np.maximum(root, 1)) >> 1)
    return root


@dataclass(frozen=True, eq=False)
class LayerNormConstants:
    """The integers of one LayerNorm (``layernorm_constants`` derives them).

    Attributes
    ----------
    gamma : ndarray (d,)
        ``gamma_width``-bit signed weights, one scale ``s_g`` for all channels.
    beta : ndarray (d,)
        Biases in units of ``s_g / 2**norm_bits`` (the accumulator units).
    norm_bits : int
        Fraction bits ``P`` of the normalised value.
    multiplier, shift : int
        Output requantization: ``s_g / (2**P * out_scale)``.
    in_width, out_width : int
        Signed widths of the inputs and outputs.
    """

    gamma: np.ndarray
    beta: np.ndarray
    norm_bits: int
    multiplier: int
    shift: int
    in_width: int
    out_width: int

    @property
    def dim(self) -> int:
        """Row length ``d``."""
        return int(self.gamma.shape[0])


def _layernorm_widths(dim: int, in_width: int, norm_bits: int, gamma_bits: int,
                      beta_bits: int) -> tuple[int, int]:
    """Bit widths of ``sum(c**2)`` (unsigned) and of the affine accumulator (signed)."""
    log_dim = (dim - 1).bit_length()                               # ceil(log2 d)
    square_sum_bits = 3 * log_dim + 2 * in_width                   # sum(c**2) < d**3 4**in_width
    norm_width = norm_bits + (log_dim + 1) // 2 + 2                 # |n| < 2 sqrt(d) 2**P
    acc_width = max(norm_width + gamma_bits - 1, beta_bits) + 1
    return square_sum_bits, acc_width


def layernorm_constants(gamma, beta, out_scale: float, *, in_width: int = 8,
                        norm_bits: int = 12, gamma_width: int = 16, out_width: int = 8,
                        multiplier_width: int = 16) -> LayerNormConstants:
    """Quantize LayerNorm's real ``gamma`` and ``beta`` (shape ``(d,)``) for ``layernorm_int``.

    LayerNorm does not depend on the input scale (the integer form drops ``eps``), so only the
    output scale enters.

    Raises
    ------
    ValueError
        If shapes, scales or widths are out of range, or an intermediate would not fit int64.
    """
    gamma = np.asarray(gamma, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if gamma.ndim != 1 or gamma.shape != beta.shape or gamma.shape[0] < 2:
        raise ValueError(f"gamma and beta must have the same shape (d,) with d >= 2, not "
                         f"{gamma.shape} and {beta.shape}")
    if not (np.all(np.isfinite(gamma)) and np.all(np.isfinite(beta))):
        raise ValueError("gamma and beta must be finite")
    _check_scale(out_scale, "LayerNorm output scale")
    if not 2 <= in_width <= 16:
        raise ValueError(f"LayerNorm input width must be between 2 and 16 bits, not {in_width}")
    if not 0 <= norm_bits <= 16:
        raise ValueError(f"LayerNorm norm bits must be between 0 and 16, not {norm_bits}")
    if not 2 <= gamma_width <= 16:
        raise ValueError(f"LayerNorm gamma width must be between 2 and 16 bits, not {gamma_width}")
    peak = float(np.abs(gamma).max())
    gamma_scale = (peak if peak > 0 else 1.0) / ((1 << (gamma_width - 1)) - 1)
    gamma_q = np.round(gamma / gamma_scale).astype(np.int64)
    beta_q = np.round(beta * 2**norm_bits / gamma_scale)
    if np.abs(beta_q).max() >= 2.0**40:
        raise ValueError("beta is too large for gamma's scale (more than 40 bits)")
    beta_q = beta_q.astype(np.int64)
    dim = gamma.shape[0]
    square_sum_bits, acc_width = _layernorm_widths(
        dim, in_width, norm_bits, gamma_width, int(np.abs(beta_q).max()).bit_length() + 1)
    if square_sum_bits > _INT64_BITS or acc_width + multiplier_width > _INT64_BITS:
        raise ValueError(f"LayerNorm of {dim} {in_width}-bit inputs does not fit int64 "
                         f"(sum of squares {square_sum_bits} bits, affine {acc_width} + "
                         f"{multiplier_width} bits)")
    multiplier, shift = _full_precision_multiplier(
        gamma_scale / (2**norm_bits * out_scale), multiplier_width, "LayerNorm output",
        out_scale)
    return LayerNormConstants(gamma=gamma_q, beta=beta_q, norm_bits=norm_bits,
                              multiplier=multiplier, shift=shift, in_width=in_width,
                              out_width=out_width)


def layernorm_int(x, constants: LayerNormConstants) -> np.ndarray:
    """Integer LayerNorm over the last axis: ``out_width``-bit signed outputs.

    Steps: ``c = d * x - sum(x)`` (``d`` times the centred value, exact);
    ``std = isqrt(sum(c**2) // d)`` (``floor(d * sigma)``); ``n = (c << P) // max(std, 1)``
    (``(x - mean) / sigma`` in ``Q.P``, floor); ``y = requantize(n * gamma + beta, multiplier,
    shift, out_width)``. A constant row has ``c = 0`` and gives ``requantize(beta)``.

    Raises
    ------
    ValueError
        If the inputs are not integers of ``in_width`` bits, or rows do not have ``d`` values.
    """
    c = constants
    x = _as_int_array(x, "LayerNorm inputs")
    if x.ndim == 0 or x.shape[-1] != c.dim:
        raise ValueError(f"LayerNorm rows must have {c.dim} values, not shape {x.shape}")
    _check_signed(x, c.in_width, "LayerNorm inputs")
    centred = c.dim * x - x.sum(axis=-1, keepdims=True)            # d * (x - mean)
    variance = (centred ** 2).sum(axis=-1, keepdims=True) // c.dim  # d**2 * sigma**2, floor
    std = np.maximum(isqrt(variance), 1)                           # floor(d * sigma)
    normalised = (centred << c.norm_bits) // std                   # Q.P, floor
    return requantize(normalised * c.gamma + c.beta, c.multiplier, c.shift,
                      out_width=c.out_width)


# --------------------------------------------------------------------------------------------
# Residual add
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResidualConstants:
    """``out = requantize(a * multiplier_a + b * multiplier_b, 1, shift, out_width)``."""

    multiplier_a: int
    multiplier_b: int
    shift: int
    in_width: int
    out_width: int


def residual_constants(a_scale: float, b_scale: float, out_scale: float, *, in_width: int = 8,
                       out_width: int = 8, multiplier_width: int = 16) -> ResidualConstants:
    """Two multipliers sharing one shift, the larger scale ratio normalised to full precision.

    Raises
    ------
    ValueError
        If a scale is not finite and positive, or a width is out of range.
    """
    for name, scale in (("a", a_scale), ("b", b_scale), ("output", out_scale)):
        _check_scale(scale, f"Residual {name} scale")
    if not 2 <= in_width <= 32 or not 2 <= out_width <= 32:
        raise ValueError(f"Residual widths must be between 2 and 32 bits, not {in_width} and "
                         f"{out_width}")
    larger = max(a_scale, b_scale) / out_scale
    _, shift = _full_precision_multiplier(larger, multiplier_width, "Residual output", out_scale)
    multiplier_a = round(a_scale / out_scale * 2**shift)
    multiplier_b = round(b_scale / out_scale * 2**shift)
    return ResidualConstants(multiplier_a=multiplier_a, multiplier_b=multiplier_b, shift=shift,
                             in_width=in_width, out_width=out_width)


def residual_add_int(a, b, constants: ResidualConstants) -> np.ndarray:
    """``a * s_a + b * s_b`` requantized to ``out_scale``: ``out_width``-bit signed outputs.

    Raises
    ------
    ValueError
        If the operands are not integers of ``in_width`` bits or their shapes do not broadcast.
    """
    c = constants
    a = _as_int_array(a, "Residual operand a")
    b = _as_int_array(b, "Residual operand b")
    _check_signed(a, c.in_width, "Residual operand a")
    _check_signed(b, c.in_width, "Residual operand b")
    try:
        total = a * c.multiplier_a + b * c.multiplier_b
    except ValueError as error:
        raise ValueError(f"Residual operands of shapes {a.shape} and {b.shape} do not "
                         f"broadcast") from error
    return requantize(total, 1, c.shift, out_width=c.out_width)
