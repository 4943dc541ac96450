"""Golden block-sparse GEMM: ``Y = requantize(X @ W.T + bias)`` in exact integers.

The single reference for the GEMM engine. ``W`` has the ``nn.Linear`` layout ``(out, in)``;
blocks that are not stored are zeros, so a block-sparse GEMM equals the dense GEMM of
``matrix.to_dense()``: the sparsity changes the cycles, never the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.block_sparse import BlockSparseMatrix
from sw.numerics import check_requant_widths, exact_matmul, requantize, signed_range


@dataclass(frozen=True, eq=False)
class GemmOperands:
    """Everything one GEMM-engine job computes with.

    Attributes
    ----------
    x : ndarray (M, K)
        Activations, ``data_width``-bit signed.
    weights : BlockSparseMatrix
        ``(N, K)`` weights, ``data_width``-bit signed, block-compressed.
    bias : ndarray (N,)
        ``acc_width``-bit signed biases, in accumulator units.
    multiplier, shift : ndarray (N,)
        Per-output requantization constants (see ``sw.numerics.requantize``).
    """

    x: np.ndarray
    weights: BlockSparseMatrix
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(M, K, N)``."""
        tokens, inner = self.x.shape
        return tokens, inner, self.weights.shape[0]


def accumulate(x, dense_weight, bias, *, acc_width: int = 32) -> np.ndarray:
    """``X @ W.T + bias`` exactly, checking it fits the accumulator.

    Raises
    ------
    OverflowError
        If any accumulator leaves the ``acc_width``-bit signed range (the exporter must scale
        biases and operands so this never happens; the hardware would wrap).
    """
    acc = exact_matmul(x, np.asarray(dense_weight, dtype=np.int64).T) + np.asarray(bias)
    low, high = signed_range(acc_width)
    if acc.size and (acc.min() < low or acc.max() > high):
        raise OverflowError(f"Accumulator range {int(acc.min())}..{int(acc.max())} exceeds "
                            f"{acc_width}-bit signed integers")
    return acc


def block_sparse_gemm(operands: GemmOperands, *, data_width: int = 8, acc_width: int = 32,
                      multiplier_width: int = 16) -> np.ndarray:
    """The int ``(M, N)`` output of the GEMM engine for ``operands``.

    Raises
    ------
    ValueError
        If the operand shapes disagree or a value does not fit its width.
    OverflowError
        If an accumulator overflows ``acc_width`` bits.
    """
    if operands.weights.shape[1] != operands.shape[1]:
        raise ValueError(f"Activations have {operands.shape[1]} columns but the weight has "
                         f"{operands.weights.shape[1]} inputs")
    return linear_int(operands.x, operands.weights.to_dense(), operands.bias,
                      operands.multiplier, operands.shift, data_width=data_width,
                      acc_width=acc_width, multiplier_width=multiplier_width)


def linear_int(x, weight, bias, multiplier, shift, *, data_width: int = 8, acc_width: int = 32,
               multiplier_width: int = 16) -> np.ndarray:
    """``requantize(X @ W.T + bias)`` for a dense ``(N, K)`` weight (zeros where pruned); ``x``
    may carry leading batch axes. What the GEMM engine computes, whatever the sparsity.

    Raises
    ------
    ValueError
        If the operand shapes disagree or a value does not fit its width.
    OverflowError
        If an accumulator overflows ``acc_width`` bits.
    """
    check_requant_widths(acc_width, multiplier_width)
    x, weight = np.asarray(x, dtype=np.int64), np.asarray(weight, dtype=np.int64)
    bias = np.asarray(bias, dtype=np.int64)
    outer, inner = weight.shape
    if x.shape[-1] != inner:
        raise ValueError(f"Activations have {x.shape[-1]} columns but the weight has "
                         f"{inner} inputs")
    for name, values in (("bias", bias), ("multiplier", multiplier), ("shift", shift)):
        if np.shape(values) != (outer,):
            raise ValueError(f"{name} has shape {np.shape(values)}, expected ({outer},)")
    low, high = signed_range(data_width)
    for name, values in (("activations", x), ("weights", weight)):
        if values.size and (values.min() < low or values.max() > high):
            raise ValueError(f"{name} exceed {data_width}-bit signed integers")
    low, high = signed_range(acc_width)
    if bias.size and (bias.min() < low or bias.max() > high):
        raise ValueError(f"biases exceed {acc_width}-bit signed integers")
    multiplier = np.asarray(multiplier)
    if multiplier.size and (multiplier.min() < 0 or multiplier.max() >= 1 << multiplier_width):
        raise ValueError(f"multipliers must lie in [0, 2**{multiplier_width})")
    acc = accumulate(x, weight, bias, acc_width=acc_width)
    return requantize(acc, multiplier, shift, out_width=data_width)
