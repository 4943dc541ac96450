"""Tests of the GEMM engine's cycle model against the timeline in its module docstring."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sw.cycle_model.gemm import (
    ACTIVATION_READ_LATENCY,
    REQUANT_LATENCY,
    SEQUENCER_CYCLES_PER_TILE,
    STARTUP_CYCLES,
    GemmCycles,
    GemmTiming,
    dense_gemm_cycles,
    gemm_cycles,
)


def test_timeline_constants():
    assert (STARTUP_CYCLES, SEQUENCER_CYCLES_PER_TILE, ACTIVATION_READ_LATENCY,
            REQUANT_LATENCY) == (11, 5, 1, 3)


@pytest.mark.parametrize("rows, cols, latency, load_offset, min_period, drain", [
    # latency R + C - 1; load offset max(C, R - 1); min period max(offset + 1, 5);
    # drain = 1 (activation read) + latency + 3 (requantizer)
    (16, 16, 31, 16, 17, 35),
    (4, 4, 7, 4, 5, 11),
    (2, 8, 9, 8, 9, 13),
    (8, 2, 9, 7, 8, 13),
    (2, 2, 3, 2, 5, 7),      # the sequencer, not the weight load, bounds the period
    (1, 1, 1, 1, 5, 5),
])
def test_timing_parameters(rows, cols, latency, load_offset, min_period, drain):
    timing = GemmTiming(rows, cols)
    assert timing.array_latency == latency
    assert timing.weight_load_offset == load_offset
    assert timing.min_tile_period == min_period
    assert timing.drain_cycles == drain


def test_tile_period_is_tokens_or_the_minimum():
    timing = GemmTiming(16, 16)
    assert [timing.tile_period(tokens) for tokens in (1, 16, 17, 18, 197)] == [17, 17, 17, 18, 197]


def test_small_sparse_example_with_an_empty_block_row():
    # 4x4 array, 8x8 blocks: 2 output tiles x 2 input tiles per block. 16x16 weight, grid 2x2,
    # one stored block in block row 0; block row 1 is empty.
    cycles = gemm_cycles(array_rows=4, array_cols=4, block_rows=8, block_cols=8, tokens=3,
                         block_mask=[[True, False], [False, False]])
    tiles = 1 * 2 * 2 + 2                 # 4 tiles of the block, 2 zero tiles for block row 1
    period = max(3, 5)                    # M = 3 < min_tile_period 5
    window = (tiles - 1) * period + 3     # 5 * 5 + 3 = 28
    drain = 1 + (4 + 4 - 1) + 3           # 11
    assert (tiles, period, window, drain) == (6, 5, 28, 11)
    assert cycles.tiles == 6
    assert cycles.nonzero_tiles == 4
    assert cycles.tile_period == 5
    assert cycles.total == (11 - 1) + window + drain == 49
    assert cycles.cycles_to_done == 50
    assert cycles.busy == 4 * 3 == 12
    assert cycles.stall == window - 12 == 16
    assert cycles.overhead == 49 - 12 - 16 == 21
    assert cycles.macs == 3 * 8 * 8 == 192
    assert cycles.processing_elements == 16
    assert cycles.ideal == 192 // 16 == 12
    assert cycles.utilization == 12 / 49


def test_full_size_example_without_stalls():
    # 16x16 array, 32x32 blocks: 2x2 tiles per block; 64x96 weight, grid 2x3, 3 stored blocks
    mask = [[True, True, False], [False, False, True]]
    cycles = gemm_cycles(array_rows=16, array_cols=16, block_rows=32, block_cols=32, tokens=197,
                         block_mask=mask)
    tiles = (2 * 2) * 3                   # 12, no empty block row
    window = (tiles - 1) * 197 + 197      # P = max(197, 17) = 197: 2364
    assert window == 2364
    assert cycles.tiles == cycles.nonzero_tiles == 12
    assert cycles.tile_period == 197
    assert cycles.total == 10 + 2364 + (1 + 31 + 3) == 2409
    assert cycles.busy == 12 * 197 == 2364
    assert cycles.stall == 0
    assert cycles.macs == 197 * 3 * 32 * 32 == 605184
    assert cycles.ideal == 605184 // 256 == 2364
    assert cycles.overhead == 45


def test_non_square_array_example():
    # 2-row x 8-column array, 8x4 blocks: 1 output tile x 2 input tiles; 16x8 weight, grid 2x2
    cycles = gemm_cycles(array_rows=2, array_cols=8, block_rows=8, block_cols=4, tokens=20,
                         block_mask=[[False, True], [False, False]])
    # block row 0: 1 block x 2 tiles; block row 1 empty: 1 zero tile per output tile = 1
    assert cycles.tiles == 3
    assert cycles.nonzero_tiles == 2
    assert cycles.tile_period == 20                   # max(20, 9)
    assert cycles.total == 10 + (2 * 20 + 20) + (1 + 9 + 3) == 83
    assert cycles.busy == 40
    assert cycles.stall == 20
    assert cycles.ideal == math.ceil(20 * 32 / 16) == 40


def test_an_all_empty_mask_still_writes_every_output():
    # 2 block rows x 2 output tiles of zero tiles, nothing busy
    cycles = gemm_cycles(array_rows=4, array_cols=4, block_rows=8, block_cols=8, tokens=6,
                         block_mask=np.zeros((2, 3), dtype=bool))
    assert cycles.tiles == 4
    assert cycles.nonzero_tiles == cycles.busy == cycles.macs == cycles.ideal == 0
    assert cycles.total == 10 + (3 * 6 + 6) + 11 == 45
    assert cycles.stall == 24
    assert cycles.utilization == 0


def test_one_token_pads_every_tile_to_the_minimum_period():
    cycles = gemm_cycles(array_rows=16, array_cols=16, block_rows=16, block_cols=16, tokens=1,
                         block_mask=[[True, True]])
    assert cycles.tiles == 2
    assert cycles.tile_period == 17
    assert cycles.total == 10 + (17 + 1) + 35 == 63
    assert cycles.busy == 2
    assert cycles.stall == 16


@st.composite
def engine_jobs(draw):
    rows, cols = draw(st.sampled_from([1, 2, 4, 8, 16])), draw(st.sampled_from([1, 2, 4, 8, 16]))
    block_rows, block_cols = cols * draw(st.integers(1, 3)), rows * draw(st.integers(1, 3))
    grid = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    mask = np.array(draw(st.lists(st.booleans(), min_size=grid[0] * grid[1],
                                  max_size=grid[0] * grid[1]))).reshape(grid)
    tokens = draw(st.integers(1, 300))
    return dict(array_rows=rows, array_cols=cols, block_rows=block_rows, block_cols=block_cols,
                tokens=tokens, block_mask=mask)


@settings(max_examples=100, deadline=None)
@given(job=engine_jobs())
def test_counters_follow_the_timeline(job):
    cycles = gemm_cycles(**job)
    rows, cols, tokens, mask = (job["array_rows"], job["array_cols"], job["tokens"],
                                job["block_mask"])
    out_tiles, in_tiles = job["block_rows"] // cols, job["block_cols"] // rows
    tiles = sum(out_tiles * (in_tiles * int(count) if count else 1) for count in mask.sum(axis=1))
    period = max(tokens, max(max(cols, rows - 1) + 1, 5))
    window = (tiles - 1) * period + tokens
    assert cycles.tiles == tiles
    assert cycles.nonzero_tiles == int(mask.sum()) * out_tiles * in_tiles
    assert cycles.tile_period == period
    assert cycles.total == 10 + window + (1 + rows + cols - 1 + 3)
    assert cycles.busy == cycles.nonzero_tiles * tokens
    assert cycles.stall == window - cycles.busy >= 0
    # every stored weight is one MAC per token, and a tile keeps all R*C PEs busy for M cycles
    assert cycles.ideal == tokens * int(mask.sum()) * job["block_rows"] * job["block_cols"] \
        // (rows * cols) == cycles.busy
    assert 0 <= cycles.utilization <= 1


@settings(max_examples=100, deadline=None)
@given(job=engine_jobs(), data=st.data())
def test_removing_a_block_never_costs_cycles(job, data):
    mask = job["block_mask"]
    stored = np.argwhere(mask)
    if not len(stored):
        mask[0, 0] = True
        stored = np.argwhere(mask)
    before = gemm_cycles(**job)
    i, j = stored[data.draw(st.integers(0, len(stored) - 1))]
    pruned = mask.copy()
    pruned[i, j] = False
    after = gemm_cycles(**{**job, "block_mask": pruned})
    assert after.total <= before.total
    assert after.busy < before.busy
    assert after.macs < before.macs


@pytest.mark.parametrize("rows, cols, block_rows, block_cols, tokens, inner, outer", [
    (4, 4, 8, 8, 17, 64, 128),
    (16, 16, 32, 32, 197, 768, 768),
    (2, 8, 8, 4, 5, 8, 16),
])
def test_dense_equals_an_all_ones_mask(rows, cols, block_rows, block_cols, tokens, inner, outer):
    dense = dense_gemm_cycles(array_rows=rows, array_cols=cols, block_rows=block_rows,
                              block_cols=block_cols, tokens=tokens, in_features=inner,
                              out_features=outer)
    ones = np.ones((outer // block_rows, inner // block_cols), dtype=bool)
    assert dense == gemm_cycles(array_rows=rows, array_cols=cols, block_rows=block_rows,
                                block_cols=block_cols, tokens=tokens, block_mask=ones)
    assert isinstance(dense, GemmCycles)
    assert dense.stall == 0 or tokens < GemmTiming(rows, cols).min_tile_period
    assert dense.macs == tokens * inner * outer


@pytest.mark.parametrize("inner, outer", [(768, 3072), (3072, 768)], ids=["fc1", "fc2"])
def test_deit_b_ffn_dense_utilization(inner, outer):
    cycles = dense_gemm_cycles(array_rows=16, array_cols=16, block_rows=32, block_cols=32,
                               tokens=197, in_features=inner, out_features=outer)
    tiles = (768 // 16) * (3072 // 16)              # 9216, every tile busy, P = 197
    assert cycles.tiles == tiles
    assert cycles.total == 10 + tiles * 197 + 35
    assert cycles.ideal == 197 * 768 * 3072 // 256 == tiles * 197
    assert cycles.utilization >= 0.99


# errors -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, cols, block_rows, block_cols", [
    (4, 4, 8, 6), (4, 4, 6, 8), (2, 8, 4, 4), (8, 2, 4, 4),
])
def test_the_array_must_tile_the_block(rows, cols, block_rows, block_cols):
    with pytest.raises(ValueError, match=rf"^A {rows}x{cols} array does not tile "
                                         rf"{block_rows}x{block_cols} blocks$"):
        gemm_cycles(array_rows=rows, array_cols=cols, block_rows=block_rows,
                    block_cols=block_cols, tokens=4, block_mask=[[True]])


@pytest.mark.parametrize("tokens", [0, -3])
def test_tokens_must_be_positive(tokens):
    with pytest.raises(ValueError, match=rf"^Tokens must be a positive integer, not {tokens}$"):
        gemm_cycles(array_rows=4, array_cols=4, block_rows=8, block_cols=8, tokens=tokens,
                    block_mask=[[True]])


@pytest.mark.parametrize("mask, shape_text", [
    (np.zeros((0, 3), dtype=bool), r"\(0, 3\)"),
    (np.zeros((2, 0), dtype=bool), r"\(2, 0\)"),
    ([True, False], r"\(2,\)"),
    (np.ones((1, 1, 1), dtype=bool), r"\(1, 1, 1\)"),
])
def test_the_mask_must_be_a_non_empty_grid(mask, shape_text):
    with pytest.raises(ValueError, match=rf"^Block mask must be a non-empty 2-D grid, found shape "
                                         rf"{shape_text}$"):
        gemm_cycles(array_rows=4, array_cols=4, block_rows=8, block_cols=8, tokens=4,
                    block_mask=mask)
