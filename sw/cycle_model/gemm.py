"""Cycle model of the block-sparse GEMM engine (``hw.gemm.BlockSparseGemm``).

The engine is a weight-stationary ``R x C`` systolic array. Its sequencer walks the weight's
block-compressed rows and turns every stored block into ``(block_rows/C) x (block_cols/R)``
array *tiles*; a block row with no stored block still costs one all-zero tile per output tile,
because its outputs (the bias, requantized) must be written. Each tile streams the ``M``
activation rows through the array, one per cycle, while the next tile's weights are loaded into
the second weight bank, so consecutive tiles follow each other with no gap once ``M`` covers the
weight load. The timeline, counted from the cycle the job is accepted (cycle 0):

* ``STARTUP_CYCLES``: the sequencer fetches the first descriptors and the first tile's weights
  start loading; the first activation row is issued at cycle ``STARTUP_CYCLES``.
* The *issue window*: tile ``j`` issues its ``M`` rows from ``STARTUP_CYCLES + j * P``, where the
  tile period ``P = max(M, min_tile_period)``. The window lasts ``(T - 1) * P + M`` cycles for
  ``T`` tiles.
* Drain: the last row reaches the array one cycle after it is issued (activation memory read),
  leaves it ``R + C - 1`` cycles later (skew, the array, de-skew), is added to its accumulator
  and requantized (``REQUANT_LATENCY`` register stages) and written. ``done`` rises the cycle
  after that write.

Performance counters: ``busy`` counts issue cycles of non-zero tiles (``M`` per tile), ``stall``
the rest of the issue window (all-zero tiles, period padding when ``M < min_tile_period``), and
``total`` every cycle from the one after acceptance to the last output write, inclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Cycles from job acceptance (cycle 0) to the issue of the first activation row. The sequencer
#: has the first descriptor after 6 cycles and the second after 11 (see SEQUENCER_CYCLES_PER_TILE);
#: the first is popped at cycle STARTUP_CYCLES - 2, the second when the first tile starts.
STARTUP_CYCLES = 11

#: Worst-case cycles the sequencer spends per tile descriptor (row pointer read, column index
#: read, emit); the tile period never drops below it, so the sequencer never starves the array.
SEQUENCER_CYCLES_PER_TILE = 5

#: Cycles between issuing an activation row's address and the row entering the array.
ACTIVATION_READ_LATENCY = 1

#: Register stages of the requantizer (accumulator register, multiply, round-shift-saturate).
REQUANT_LATENCY = 3


@dataclass(frozen=True)
class GemmTiming:
    """Fixed timing parameters of one ``array_rows x array_cols`` GEMM engine."""

    array_rows: int
    array_cols: int

    @property
    def array_latency(self) -> int:
        """Cycles from a row entering the skew registers to its sums leaving the de-skew ones."""
        return self.array_rows + self.array_cols - 1

    @property
    def weight_load_offset(self) -> int:
        """Cycle within a tile period at which the next tile's weight rows start loading.

        A bank may be rewritten only after the tile before last has left its last column
        (``>= C - 2``) and the load must not overlap the previous one (``>= R - 1``).
        """
        return max(self.array_cols, self.array_rows - 1)

    @property
    def min_tile_period(self) -> int:
        """Shortest tile period: the weight load must finish first, the sequencer keep up."""
        return max(self.weight_load_offset + 1, SEQUENCER_CYCLES_PER_TILE)

    @property
    def drain_cycles(self) -> int:
        """Cycles from the last issue to the last output write."""
        return ACTIVATION_READ_LATENCY + self.array_latency + REQUANT_LATENCY

    def tile_period(self, tokens: int) -> int:
        """Cycles between the first rows of consecutive tiles for ``tokens`` activation rows."""
        return max(tokens, self.min_tile_period)


@dataclass(frozen=True)
class GemmCycles:
    """Predicted cycle counts of one GEMM job."""

    total: int           #: cycles from the one after acceptance to the last output write
    busy: int            #: issue cycles of non-zero tiles
    stall: int           #: other cycles of the issue window
    tiles: int           #: tiles streamed, including all-zero tiles of empty block rows
    nonzero_tiles: int   #: tiles cut from stored blocks
    tile_period: int     #: P
    macs: int            #: multiply-accumulates of stored blocks (M x stored weights)
    processing_elements: int

    @property
    def cycles_to_done(self) -> int:
        """Clock edges from acceptance until ``done`` reads high."""
        return self.total + 1

    @property
    def overhead(self) -> int:
        """Start-up and drain cycles: ``total - busy - stall``."""
        return self.total - self.busy - self.stall

    @property
    def ideal(self) -> int:
        """``ceil(non-zero MACs / PEs)``: every PE busy every cycle."""
        return math.ceil(self.macs / self.processing_elements)

    @property
    def utilization(self) -> float:
        """``ideal / total``."""
        return self.ideal / self.total


def gemm_cycles(*, array_rows: int, array_cols: int, block_rows: int, block_cols: int,
                tokens: int, block_mask) -> GemmCycles:
    """Cycles of one job: ``tokens`` activation rows times a weight with ``block_mask`` stored.

    ``block_mask`` is the boolean ``(out_features/block_rows, in_features/block_cols)`` grid of
    stored blocks (``BlockSparseMatrix.block_mask()``).

    Raises
    ------
    ValueError
        If the array does not tile the block, ``tokens`` is not positive, or the mask is empty.
    """
    if block_rows % array_cols or block_cols % array_rows:
        raise ValueError(f"A {array_rows}x{array_cols} array does not tile "
                         f"{block_rows}x{block_cols} blocks")
    if tokens < 1:
        raise ValueError(f"Tokens must be a positive integer, not {tokens}")
    mask = np.asarray(block_mask, dtype=bool)
    if mask.ndim != 2 or 0 in mask.shape:
        raise ValueError(f"Block mask must be a non-empty 2-D grid, found shape {mask.shape}")
    timing = GemmTiming(array_rows, array_cols)
    out_tiles, in_tiles = block_rows // array_cols, block_cols // array_rows
    blocks_per_row = mask.sum(axis=1)
    tiles = int(np.sum(out_tiles * np.maximum(blocks_per_row * in_tiles, 1)))
    nonzero_tiles = int(blocks_per_row.sum()) * out_tiles * in_tiles
    period = timing.tile_period(tokens)
    window = (tiles - 1) * period + tokens
    busy = nonzero_tiles * tokens
    return GemmCycles(
        # cycles 1 .. STARTUP_CYCLES-1, then the issue window, then the drain
        total=(STARTUP_CYCLES - 1) + window + timing.drain_cycles,
        busy=busy,
        stall=window - busy,
        tiles=tiles,
        nonzero_tiles=nonzero_tiles,
        tile_period=period,
        macs=tokens * int(blocks_per_row.sum()) * block_rows * block_cols,
        processing_elements=array_rows * array_cols,
    )


def dense_gemm_cycles(*, array_rows: int, array_cols: int, block_rows: int, block_cols: int,
                      tokens: int, in_features: int, out_features: int) -> GemmCycles:
    """Cycles of the same engine on an unpruned ``(out_features, in_features)`` weight."""
    mask = np.ones((out_features // block_rows, in_features // block_cols), dtype=bool)
    return gemm_cycles(array_rows=array_rows, array_cols=array_cols, block_rows=block_rows,
                       block_cols=block_cols, tokens=tokens, block_mask=mask)
