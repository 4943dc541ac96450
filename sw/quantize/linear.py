"""Quantization of one linear layer into the GEMM engine's integer operands.

Weights: int8, symmetric, one scale per output channel (``max |W[n, :]| / 127``). The input and
output activations: int8, symmetric, one scale per tensor (from calibration). The bias becomes
int32 in accumulator units (``round(b / (s_in * s_w[n]))``) and each output channel's rescale
``s_in * s_w[n] / s_out`` a (multiplier, shift) pair (``sw.numerics.quantize_multiplier``).

An output channel whose weight row is all zero has no scale of its own; it takes
``s_w[n] = s_out / s_in`` (:func:`weight_scales`), so one accumulator unit is one output unit:
its bias becomes ``round(b / s_out)`` and its rescale is exactly 1 (multiplier ``2**(w-1)``,
shift ``w-1``), and its output is ``clip(round(b / s_out))``, the constant rounded once. Such
rows are the folded units of the surgery (zero FC1 row, non-zero bias) and the padding neurons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.block_sparse import BlockSparseMatrix
from sw.golden.gemm import GemmOperands
from sw.numerics import quantize_multiplier, signed_range


def quantize_tensor(values, scale: float, bits: int = 8) -> np.ndarray:
    """``clip(round(values / scale))`` to signed ``bits``-bit integers (float to int boundary:
    numpy rounds half to even)."""
    low, high = signed_range(bits)
    return np.clip(np.round(np.asarray(values, dtype=np.float64) / scale), low, high).astype(
        np.int64)


@dataclass(frozen=True, eq=False)
class QuantizedLinear:
    """Integer form of ``y = x @ W.T + b`` between two per-tensor activation scales."""

    weight: np.ndarray            #: (out, in) int8
    weight_scale: np.ndarray      #: (out,) float
    bias: np.ndarray              #: (out,) int32, accumulator units
    multiplier: np.ndarray        #: (out,)
    shift: np.ndarray             #: (out,)
    input_scale: float
    output_scale: float

    def operands(self, x, block_shape=(1, 1)) -> GemmOperands:
        """GEMM-engine operands for int8 activations ``x``, weight stored in ``block_shape``
        blocks (blocks holding only zeros are not stored)."""
        return GemmOperands(x=np.asarray(x), weights=BlockSparseMatrix.from_dense(
            self.weight, block_shape), bias=self.bias, multiplier=self.multiplier,
            shift=self.shift)

    def accumulator_scale(self) -> np.ndarray:
        """Real value of one accumulator unit, per output channel."""
        return self.input_scale * self.weight_scale


def weight_scales(weight, *, input_scale: float, output_scale: float, bits: int = 8
                  ) -> np.ndarray:
    """Per-output-channel weight scales: ``max |W[n, :]| / (2**(bits-1) - 1)``, and
    ``output_scale / input_scale`` for an all-zero row (see the module docstring)."""
    high = signed_range(bits)[1]
    peak = np.abs(np.asarray(weight, dtype=np.float64)).max(axis=1, initial=0.0)
    return np.where(peak > 0, peak / high, output_scale / input_scale)


def quantize_linear(weight, bias, *, input_scale: float, output_scale: float, bits: int = 8,
                    acc_width: int = 32, multiplier_width: int = 16) -> QuantizedLinear:
    """Quantize a float ``(out, in)`` weight and its bias.

    Raises
    ------
    ValueError
        If a scale is not positive, or a bias does not fit ``acc_width`` bits.
    """
    if not input_scale > 0 or not output_scale > 0:
        raise ValueError(f"Scales must be positive, found input {input_scale}, "
                         f"output {output_scale}")
    weight = np.asarray(weight, dtype=np.float64)
    weight_scale = weight_scales(weight, input_scale=input_scale, output_scale=output_scale,
                                 bits=bits)
    weight_q = quantize_tensor(weight / weight_scale[:, None], 1.0, bits)
    bias = np.zeros(weight.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
    bias_q = np.round(bias / (input_scale * weight_scale))
    low, high_acc = signed_range(acc_width)
    outside = np.flatnonzero(~((bias_q >= low) & (bias_q <= high_acc)))
    if outside.size:
        channel = int(outside[0])
        raise ValueError(f"output channel {channel}: bias {bias[channel]:.6g} is "
                         f"{bias_q[channel]:.6g} accumulator units (input scale {input_scale:.6g}"
                         f" x weight scale {weight_scale[channel]:.6g}), beyond {acc_width}-bit "
                         f"integers")
    bias_q = bias_q.astype(np.int64)
    constants = [quantize_multiplier(float(input_scale * s / output_scale),
                                     multiplier_width=multiplier_width) for s in weight_scale]
    return QuantizedLinear(weight=weight_q, weight_scale=weight_scale, bias=bias_q,
                           multiplier=np.array([c[0] for c in constants], dtype=np.int64),
                           shift=np.array([c[1] for c in constants], dtype=np.int64),
                           input_scale=float(input_scale), output_scale=float(output_scale))
