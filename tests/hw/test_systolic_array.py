# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the systolic array: skew, latency, banks, back-to-back tiles."""

import numpy as np
import pytest

from hw.gemm.systolic_array import SystolicArray
from sw.numerics import exact_matmul


def test_rejects_bad_shape():
    with pytest.raises(ValueError, match="Array rows must be a positive integer, not 0"):
        SystolicArray(rows=0, cols=2)
    with pytest.raises(TypeError, match="Array columns must be a positive integer, not 2.5"):
        SystolicArray(rows=2, cols=2.5)


def test_latency_is_rows_plus_cols_minus_one():
    assert SystolicArray(rows=3, cols=5).latency == 7


@pytest.mark.parametrize("rows,cols", [(2, 3), (3, 2), (4, 4), (1, 1)])
def test_streams_back_to_back_tiles(run_simulation, rows, cols):
    """Vectors of alternating tiles, one per cycle, while the idle bank is being rewritten."""
    dut = SystolicArray(rows=rows, cols=cols)
    rng = np.random.default_rng(rows * 10 + cols)
    tiles = rng.integers(-128, 128, (4, rows, cols))
    vectors_per_tile = cols + rows + 1           # room to load the next tile meanwhile
    vectors = rng.integers(-128, 128, (len(tiles), vectors_per_tile, rows))
    vectors[0, 0] = 127                          # extremes
    vectors[0, 1] = -128
    tiles[0, :, 0] = -128

    async def load(ctx, tile, bank):
        for r in range(rows):
            ctx.set(dut.weight_row, [int(v) for v in tiles[tile][r]])
            ctx.set(dut.weight_row_index, r)
            ctx.set(dut.weight_bank, bank)
            ctx.set(dut.weight_we, 1)
            await ctx.tick()
        ctx.set(dut.weight_we, 0)

    async def driver(ctx):
        await load(ctx, 0, 0)
        for tile in range(len(tiles)):
            for index in range(vectors_per_tile):
                ctx.set(dut.act, [int(v) for v in vectors[tile, index]])
                ctx.set(dut.bank, tile % 2)
                # Rewrite the other bank's rows once the previous tile has left them.
                if tile + 1 < len(tiles) and cols <= index < cols + rows:
                    r = index - cols
                    ctx.set(dut.weight_row, [int(v) for v in tiles[tile + 1][r]])
                    ctx.set(dut.weight_row_index, r)
                    ctx.set(dut.weight_bank, (tile + 1) % 2)
                    ctx.set(dut.weight_we, 1)
                else:
                    ctx.set(dut.weight_we, 0)
                await ctx.tick()

    async def checker(ctx):
        await ctx.tick().repeat(rows + dut.latency)       # weight load, then the latency
        for tile in range(len(tiles)):
            expected = exact_matmul(vectors[tile], tiles[tile])
            for index in range(vectors_per_tile):
                assert [int(v) for v in ctx.get(dut.psum)] == expected[index].tolist(), \
                    f"tile {tile} vector {index}"
                await ctx.tick()

    run_simulation(dut, driver, checker)
