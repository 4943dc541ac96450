"""Block-compressed-row (BCSR) storage of a block-sparse weight matrix.

A weight has the PyTorch ``nn.Linear`` layout ``(out_features, in_features)``. It is cut into
blocks of ``block_rows`` outputs x ``block_cols`` inputs (nn_pruning's block shape); only blocks
holding a non-zero are stored, row of blocks by row of blocks, in increasing column order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class BlockSparseMatrix:
    """A matrix in block-compressed-row form.

    Attributes
    ----------
    shape : (int, int)
        ``(rows, cols)`` of the dense matrix: ``(out_features, in_features)``.
    block_shape : (int, int)
        ``(block_rows, block_cols)``.
    row_ptr : ndarray of int64, shape ``(rows // block_rows + 1,)``
        Block row ``i`` owns stored blocks ``row_ptr[i] .. row_ptr[i+1]-1``.
    col_idx : ndarray of int64, shape ``(nnz_blocks,)``
        Block column of each stored block, increasing within a block row.
    blocks : ndarray of int64, shape ``(nnz_blocks, block_rows, block_cols)``
        The stored blocks' values.
    """

    shape: tuple[int, int]
    block_shape: tuple[int, int]
    row_ptr: np.ndarray
    col_idx: np.ndarray
    blocks: np.ndarray

    @classmethod
    def from_dense(cls, dense, block_shape, *, keep=None) -> "BlockSparseMatrix":
        """Compress ``dense``, storing the blocks that hold a non-zero.

        ``keep`` (a boolean block mask of shape ``(rows // block_rows, cols // block_cols)``)
        forces the choice instead, e.g. the pruning mask; a kept block may then be all zeros.

        Raises
        ------
        ValueError
            If the block shape does not divide the matrix, or ``keep`` has the wrong shape.
        """
        dense = np.asarray(dense, dtype=np.int64)
        if dense.ndim != 2:
            raise ValueError(f"Expected a 2-D weight matrix, found shape {dense.shape}")
        rows, cols = dense.shape
        block_rows, block_cols = (int(v) for v in block_shape)
        if block_rows < 1 or block_cols < 1 or rows % block_rows or cols % block_cols:
            raise ValueError(f"Block shape {block_rows}x{block_cols} does not divide the "
                             f"{rows}x{cols} matrix")
        tiled = dense.reshape(rows // block_rows, block_rows, cols // block_cols, block_cols)
        tiled = tiled.transpose(0, 2, 1, 3)          # (block row, block col, rows, cols)
        if keep is None:
            keep = np.any(tiled != 0, axis=(2, 3))
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != tiled.shape[:2]:
            raise ValueError(f"Block mask shape {keep.shape} does not match the "
                             f"{tiled.shape[0]}x{tiled.shape[1]} blocks of the matrix")
        block_row_idx, col_idx = np.nonzero(keep)     # row-major: sorted by row, then column
        row_ptr = np.zeros(keep.shape[0] + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=row_ptr[1:])
        return cls(shape=(rows, cols), block_shape=(block_rows, block_cols),
                   row_ptr=row_ptr, col_idx=col_idx.astype(np.int64),
                   blocks=tiled[block_row_idx, col_idx].copy())

    @property
    def grid(self) -> tuple[int, int]:
        """Number of blocks along ``(rows, cols)``."""
        return self.shape[0] // self.block_shape[0], self.shape[1] // self.block_shape[1]

    @property
    def nnz_blocks(self) -> int:
        """Number of stored blocks."""
        return int(self.col_idx.size)

    @property
    def block_density(self) -> float:
        """Stored blocks over all blocks."""
        return self.nnz_blocks / (self.grid[0] * self.grid[1])

    def block_mask(self) -> np.ndarray:
        """Boolean ``grid``-shaped mask of the stored blocks."""
        mask = np.zeros(self.grid, dtype=bool)
        mask[self.block_row_of_each_block(), self.col_idx] = True
        return mask

    def block_row_of_each_block(self) -> np.ndarray:
        """Block row index of every stored block."""
        return np.repeat(np.arange(self.grid[0]), np.diff(self.row_ptr))

    def to_dense(self) -> np.ndarray:
        """The dense ``shape`` matrix, zeros where no block is stored."""
        block_rows, block_cols = self.block_shape
        tiled = np.zeros((*self.grid, block_rows, block_cols), dtype=np.int64)
        tiled[self.block_row_of_each_block(), self.col_idx] = self.blocks
        return tiled.transpose(0, 2, 1, 3).reshape(self.shape)
