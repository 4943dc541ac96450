"""Deterministic block-sparse GEMM operands for co-simulation, demo and benchmark.

A case names a shape, a block density and a pattern; ``make_operands`` turns it into int8
activations and weights, int32 biases and requantization constants scaled so outputs use the
whole int8 range (and saturate at its ends) rather than collapsing to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.block_sparse import BlockSparseMatrix
from sw.config import HardwareParams
from sw.golden.gemm import GemmOperands
from sw.numerics import quantize_multiplier

PATTERNS = ("random", "all_zero", "empty_block_rows", "single_block", "saturate")


@dataclass(frozen=True)
class GemmCase:
    """One GEMM job: ``tokens x in_features`` activations, ``out_features x in_features``
    weights with ``density`` of their blocks stored, laid out by ``pattern``."""

    name: str
    tokens: int
    in_features: int
    out_features: int
    density: float = 1.0
    pattern: str = "random"
    seed: int = 0

    def __post_init__(self):
        if self.pattern not in PATTERNS:
            raise ValueError(f"Unknown pattern {self.pattern!r}; patterns: {', '.join(PATTERNS)}")


def _block_mask(case: GemmCase, grid: tuple[int, int], rng) -> np.ndarray:
    mask = np.zeros(grid, dtype=bool)
    if case.pattern == "all_zero":
        return mask
    if case.pattern == "single_block":
        mask[rng.integers(grid[0]), rng.integers(grid[1])] = True
        return mask
    count = max(1, round(case.density * mask.size))
    mask.flat[rng.choice(mask.size, size=count, replace=False)] = True
    if case.pattern == "empty_block_rows":
        mask[::2] = False                   # every other block row has no stored block
        if not mask.any():
            mask[-1, 0] = True
    return mask


def make_operands(case: GemmCase, hardware: HardwareParams) -> GemmOperands:
    """Operands of ``case`` for an engine with ``hardware``'s block shape and widths."""
    rng = np.random.default_rng(case.seed)
    low, high = -(1 << (hardware.data_width - 1)), (1 << (hardware.data_width - 1)) - 1
    grid = (case.out_features // hardware.block_rows, case.in_features // hardware.block_cols)
    mask = _block_mask(case, grid, rng)
    x = rng.integers(low, high + 1, (case.tokens, case.in_features))
    dense = rng.integers(low, high + 1, (case.out_features, case.in_features))
    if case.pattern == "saturate":          # extreme operands: the largest products there are
        x = np.where(rng.random(x.shape) < 0.5, low, high)
        dense = np.where(rng.random(dense.shape) < 0.5, low, high)
    keep = np.kron(mask, np.ones((hardware.block_rows, hardware.block_cols), dtype=bool))
    weights = BlockSparseMatrix.from_dense(np.where(keep, dense, 0),
                                           (hardware.block_rows, hardware.block_cols), keep=mask)
    # Typical accumulator magnitude of each output, to scale it onto the int8 range.
    fan_in = np.maximum(keep.sum(axis=1), 1)
    spread = (high * high) * np.sqrt(fan_in / 3.0)
    bias = rng.integers(-4, 5, case.out_features) * (spread.astype(np.int64) // 8)
    if case.pattern == "saturate":
        scales = 64.0 * high / spread       # overdriven: most outputs clip at low or high
    else:
        scales = high / (3.0 * spread) * rng.uniform(0.5, 2.0, case.out_features)
    constants = [quantize_multiplier(float(s), multiplier_width=hardware.multiplier_width)
                 for s in scales]
    multiplier = np.array([c[0] for c in constants], dtype=np.int64)
    shift = np.array([c[1] for c in constants], dtype=np.int64)
    return GemmOperands(x=x, weights=weights, bias=bias, multiplier=multiplier, shift=shift)


def save_operands(operands: GemmOperands, path) -> None:
    """Write ``operands`` to an ``.npz`` file (what the testbench process reads)."""
    w = operands.weights
    np.savez(path, x=operands.x, shape=np.array(w.shape), block_shape=np.array(w.block_shape),
             row_ptr=w.row_ptr, col_idx=w.col_idx, blocks=w.blocks, bias=operands.bias,
             multiplier=operands.multiplier, shift=operands.shift)


def load_operands(path) -> GemmOperands:
    """Read operands written by :func:`save_operands`."""
    with np.load(path) as f:
        weights = BlockSparseMatrix(shape=tuple(int(v) for v in f["shape"]),
                                    block_shape=tuple(int(v) for v in f["block_shape"]),
                                    row_ptr=f["row_ptr"], col_idx=f["col_idx"],
                                    blocks=f["blocks"])
        return GemmOperands(x=f["x"], weights=weights, bias=f["bias"],
                            multiplier=f["multiplier"], shift=f["shift"])
