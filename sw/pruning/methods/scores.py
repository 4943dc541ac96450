"""Learnable block mask scores for a weight, or one score vector shared by FC1 rows and FC2 columns.

Weights are in the ``nn.Linear`` layout ``(out, in)`` = ``(rows, cols)``. A block of
``block_rows x block_cols`` weights shares one score; the binarized score grid is expanded back
to the weight shape with ``repeat_interleave``. The score parameter is named ``mask_scores`` so
optimizer grouping by name (nn_pruning's ``"mask_score" in name``) finds it.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from .binarizers import magnitude_mask

__all__ = [
    "MASK_INITS",
    "MaskScores",
    "SharedDimensionScores",
    "bias_mask",
    "expand_block_mask",
]

MASK_INITS = ("constant", "uniform", "kaiming")

MaskFunction = Callable[..., Tensor]


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _init_scores(scores: Tensor, mask_init: str, mask_scale: float) -> None:
    """Initialise ``scores`` in place as nn_pruning does for each ``mask_init``.

    ``constant``: every score is ``mask_scale``; ``uniform``: U(-mask_scale, mask_scale);
    ``kaiming``: ``kaiming_uniform_(a=sqrt(5))`` (``mask_scale`` unused), the default
    ``nn.Linear`` weight init, which needs a 2-D score tensor.
    """
    with torch.no_grad():
        if mask_init == "constant":
            nn.init.constant_(scores, mask_scale)
        elif mask_init == "uniform":
            nn.init.uniform_(scores, -mask_scale, mask_scale)
        elif mask_init == "kaiming":
            if scores.dim() < 2:
                raise ValueError("kaiming mask_init needs 2-D mask scores, not a score vector")
            nn.init.kaiming_uniform_(scores, a=math.sqrt(5))
        else:
            raise ValueError(f"Unknown mask_init {mask_init!r}; known: {', '.join(MASK_INITS)}")


def expand_block_mask(block_mask: Tensor, block_rows: int, block_cols: int) -> Tensor:
    """Expand a ``(R, C)`` block mask to ``(R * block_rows, C * block_cols)`` element mask."""
    return block_mask.repeat_interleave(block_rows, dim=0).repeat_interleave(block_cols, dim=1)


def bias_mask(weight_mask: Tensor) -> Tensor:
    """Bias mask of an ``(out, in)`` weight mask: output ``i`` is kept iff row ``i`` keeps a weight.

    Returns a bool tensor of shape ``(out,)``.
    """
    if weight_mask.dim() != 2:
        raise ValueError(
            f"weight mask must be 2-D (out, in), not of shape {tuple(weight_mask.shape)}")
    return (weight_mask != 0).any(dim=1)


class MaskScores(nn.Module):
    """Learnable scores, one per ``block_rows x block_cols`` block of a ``(rows, cols)`` weight.

    Parameters
    ----------
    rows, cols : int
        Weight shape ``(out, in)``.
    block_rows, block_cols : int
        Block shape; must divide ``rows`` and ``cols``. ``block_cols=cols`` gives one score per
        row, ``block_rows=rows`` one score per column.
    mask_init : str
        One of ``MASK_INITS``.
    mask_scale : float
        Parameter of ``mask_init``.

    Members
    -------
    mask_scores : nn.Parameter, shape ``(rows // block_rows, cols // block_cols)``

    Raises
    ------
    ValueError
        On non-positive sizes, blocks that do not divide the weight, or an unknown init.
    """

    def __init__(
        self, *, rows: int, cols: int, block_rows: int = 1, block_cols: int = 1,
        mask_init: str = "constant", mask_scale: float = 0.0,
    ):
        super().__init__()
        for name, value in (("rows", rows), ("cols", cols), ("block_rows", block_rows),
                            ("block_cols", block_cols)):
            _check_positive_int(name, value)
        if rows % block_rows:
            raise ValueError(f"block_rows {block_rows} does not divide weight rows {rows}")
        if cols % block_cols:
            raise ValueError(f"block_cols {block_cols} does not divide weight cols {cols}")
        self._shape = (rows, cols)
        self._block_shape = (block_rows, block_cols)
        self.mask_scores = nn.Parameter(torch.empty(rows // block_rows, cols // block_cols))
        _init_scores(self.mask_scores, mask_init, mask_scale)

    @classmethod
    def per_row(cls, *, rows: int, cols: int, **init) -> "MaskScores":
        """One score per output row (``block_rows=1, block_cols=cols``)."""
        return cls(rows=rows, cols=cols, block_rows=1, block_cols=cols, **init)

    @classmethod
    def per_column(cls, *, rows: int, cols: int, **init) -> "MaskScores":
        """One score per input column (``block_rows=rows, block_cols=1``)."""
        return cls(rows=rows, cols=cols, block_rows=rows, block_cols=1, **init)

    @property
    def shape(self) -> tuple[int, int]:
        """Weight shape ``(rows, cols)``."""
        return self._shape

    @property
    def block_shape(self) -> tuple[int, int]:
        """``(block_rows, block_cols)``."""
        return self._block_shape

    def expand(self, block_mask: Tensor) -> Tensor:
        """Expand a block-grid mask to the weight shape."""
        return expand_block_mask(block_mask, *self._block_shape)

    def mask(
        self, method: MaskFunction, threshold: float, *, weight: Tensor | None = None,
        min_fraction: float = 0.0, training: bool = False, copies: int = 1,
    ) -> Tensor:
        """Weight-shaped mask from ``method`` (a registry entry) at ``threshold``.

        ``magnitude`` works element by element on ``weight`` and ignores the scores and blocks.
        ``copies``: see :mod:`~sw.pruning.methods.binarizers` (``1d`` scores).
        """
        block_mask = method(self.mask_scores, threshold, weight=weight,
                            min_fraction=min_fraction, training=training, copies=copies)
        if method is magnitude_mask:
            return block_mask
        return self.expand(block_mask)


class SharedDimensionScores(nn.Module):
    """One score vector over a shared dimension: FC1's output rows and FC2's input columns.

    Pruning intermediate unit ``i`` of an MLP removes FC1 row ``i`` and FC2 column ``i``
    together; both masks come from the same binarized vector, so they always agree.

    Parameters
    ----------
    size : int
        Length of the shared dimension (FC1 ``out`` = FC2 ``in``).
    block : int
        Units per score along the shared dimension; must divide ``size``.
    mask_init : str
        ``constant`` or ``uniform`` (``kaiming`` needs a 2-D tensor).
    mask_scale : float
        Parameter of ``mask_init``.

    Members
    -------
    mask_scores : nn.Parameter, shape ``(size // block,)``
    """

    def __init__(
        self, *, size: int, block: int = 1, mask_init: str = "constant", mask_scale: float = 0.0,
    ):
        super().__init__()
        _check_positive_int("size", size)
        _check_positive_int("block", block)
        if size % block:
            raise ValueError(f"block {block} does not divide shared dimension {size}")
        self._size = size
        self._block = block
        self.mask_scores = nn.Parameter(torch.empty(size // block))
        _init_scores(self.mask_scores, mask_init, mask_scale)

    @property
    def size(self) -> int:
        """Length of the shared dimension."""
        return self._size

    def unit_mask(
        self, method: MaskFunction, threshold: float, *, min_fraction: float = 0.0,
        training: bool = False, copies: int = 1,
    ) -> Tensor:
        """Mask over the shared dimension, shape ``(size,)``.

        ``copies``: the other dimension of the weights (see
        :mod:`~sw.pruning.methods.binarizers`), for nn_pruning's ``linear_min_parameters`` count.

        Raises
        ------
        ValueError
            For ``magnitude``, which has no single weight to rank here.
        """
        if method is magnitude_mask:
            raise ValueError("magnitude pruning cannot drive a shared FC1/FC2 score vector")
        vector_mask = method(self.mask_scores, threshold, weight=None,
                             min_fraction=min_fraction, training=training, copies=copies)
        return vector_mask.repeat_interleave(self._block)

    def fc1_mask(self, unit_mask: Tensor, fc1_cols: int) -> Tensor:
        """FC1 weight mask ``(size, fc1_cols)``: row ``i`` follows unit ``i``."""
        return unit_mask.unsqueeze(1).expand(self._size, fc1_cols)

    def fc2_mask(self, unit_mask: Tensor, fc2_rows: int) -> Tensor:
        """FC2 weight mask ``(fc2_rows, size)``: column ``i`` follows unit ``i``."""
        return unit_mask.unsqueeze(0).expand(fc2_rows, self._size)
