# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the block sequencer: descriptor order, flags, timing, handshakes.

The testbench plays the two BCSR memories (Python lists, read one cycle after the address, the
rest of each address space filled with garbage) and the descriptor consumer.
"""

import numpy as np
import pytest

from hw.gemm.block_sequencer import BlockSequencer
from hw.gemm.geometry import GemmGeometry, LoadTarget
from sw.block_sparse import BlockSparseMatrix
from sw.config import load_config
from sw.cycle_model.gemm import SEQUENCER_CYCLES_PER_TILE
from sw.numerics import exact_matmul
from sw.packing import weight_tiles

TINY = load_config("tiny")
CONFIGS = {
    # 4x4 array, 8x8 blocks: 2 output tiles x 2 input tiles per block
    "tiny": TINY,
    # non-square 8-row x 4-column array, 16x16 blocks: 4 output tiles x 2 input tiles
    "array_8x4_block_16x16": TINY.replace(name="seq_8x4", hardware={
        "array_rows": 8, "array_cols": 4, "block_rows": 16, "block_cols": 16}),
    # 4x4 array, 16x4 blocks: 4 output tiles x 1 input tile (a zero-width tile counter)
    "array_4x4_block_16x4": TINY.replace(name="seq_16x4", hardware={
        "block_rows": 16, "block_cols": 4}),
}

#: Cycles from the job handshake cycle to the first descriptor being valid, at most.
FIRST_DESCRIPTOR_CYCLES = 5

#: Give up on a job after this many cycles.
JOB_TIMEOUT = 2000


def test_cycles_per_tile_matches_cycle_model():
    assert BlockSequencer.cycles_per_tile == SEQUENCER_CYCLES_PER_TILE


def _random_matrix(rng, geometry: GemmGeometry, *, empty_rows=(), grid=(6, 5),
                   density=0.5) -> BlockSparseMatrix:
    """A random BCSR weight on a ``grid`` of blocks (clipped to the engine's limits)."""
    g = geometry
    rows, cols = min(grid[0], g.max_block_rows), min(grid[1], g.max_in_blocks)
    mask = rng.random((rows, cols)) < density
    mask[:, 0] |= ~mask.any(axis=1)              # every row stored ...
    mask[list(empty_rows)] = False               # ... except the chosen empty ones
    while mask.sum() > g.max_blocks:
        stored = np.argwhere(mask)
        mask[tuple(stored[rng.integers(len(stored))])] = False
    values = rng.integers(-128, 128, (rows * g.block_rows, cols * g.block_cols))
    values[values == 0] = 1                      # a stored block is never all zeros
    blocks = np.kron(mask, np.ones((g.block_rows, g.block_cols), dtype=np.int64))
    matrix = BlockSparseMatrix.from_dense(values * blocks, (g.block_rows, g.block_cols))
    assert np.array_equal(matrix.block_mask(), mask)
    return matrix


def _expected_descriptors(matrix: BlockSparseMatrix, geometry: GemmGeometry) -> list[dict]:
    """The walk the ``sw.packing`` docstring defines: for each block row ``i``, output tile
    ``s``, stored block ``j``, input tile ``kk``; the weight tile ``j * tiles_per_block +
    s * (block_cols/R) + kk``. A ``zero`` descriptor per output tile of an empty block row."""
    g = geometry
    out_tiles, in_tiles = g.out_tiles_per_block, g.in_tiles_per_block
    tiles_per_block = out_tiles * in_tiles
    descriptors = []
    for i in range(matrix.grid[0]):
        stored = range(int(matrix.row_ptr[i]), int(matrix.row_ptr[i + 1]))
        for s in range(out_tiles):
            out_tile = i * out_tiles + s
            if not stored:
                descriptors.append(dict(out_tile=out_tile, first=1, last=1, zero=1, end=0))
                continue
            visits = [(j, kk) for j in stored for kk in range(in_tiles)]
            for n, (j, kk) in enumerate(visits):
                descriptors.append(dict(
                    act_tile=int(matrix.col_idx[j]) * in_tiles + kk, out_tile=out_tile,
                    weight_addr=(j * tiles_per_block + s * in_tiles + kk) * g.array_rows,
                    first=int(n == 0), last=int(n == len(visits) - 1), zero=0, end=0))
    descriptors.append(dict(zero=0, end=1))
    return descriptors


def _check_products(matrix: BlockSparseMatrix, geometry: GemmGeometry, descriptors, rng):
    """Accumulating ``X tile @ weight tile`` per descriptor, with the tiles of
    ``sw.packing.weight_tiles``, gives ``X @ W.T``: every stored tile is used where it belongs."""
    g = geometry
    R, C = g.array_rows, g.array_cols
    dense = matrix.to_dense()
    x = rng.integers(-128, 128, (3, dense.shape[1]))
    tiles = weight_tiles(matrix, R, C)
    y = np.zeros((x.shape[0], dense.shape[0]), dtype=np.int64)
    written = set()
    for d in descriptors:
        if d["end"]:
            continue
        written.add(d["out_tile"])
        if d["zero"]:
            continue
        assert d["weight_addr"] % R == 0
        act = x[:, d["act_tile"] * R:(d["act_tile"] + 1) * R]
        y[:, d["out_tile"] * C:(d["out_tile"] + 1) * C] += exact_matmul(
            act, tiles[d["weight_addr"] // R])
    assert written == set(range(dense.shape[0] // C))
    assert np.array_equal(y, exact_matmul(x, dense.T))


def _memory_image(words, depth_bits: int, data_width: int, rng) -> list[int]:
    """``words`` at address 0 onwards, garbage in the rest of the address space."""
    image = rng.integers(0, 1 << data_width, 1 << depth_bits).tolist()
    image[:len(words)] = [int(w) for w in words]
    return image


def _run_jobs(run_simulation, geometry: GemmGeometry, matrices, *, back_pressure: bool,
              seed: int):
    """Run one job per matrix through a sequencer; return per job its handshake cycle, the
    cycle log (valid, ready, payload) and the cycle of every transfer."""
    dut = BlockSequencer(geometry=geometry)
    g = geometry
    rng = np.random.default_rng(seed)
    fields = [name for name, _ in g.tile_layout]
    row_ptr_width = g.word_shapes[LoadTarget.ROW_PTR].width
    col_idx_width = g.word_shapes[LoadTarget.COL_IDX].width
    images = [(_memory_image(m.row_ptr, len(dut.row_ptr_addr), row_ptr_width, rng),
               _memory_image(m.col_idx, len(dut.col_idx_addr), col_idx_width, rng))
              for m in matrices]
    jobs = []

    async def testbench(ctx):
        cycle = 0
        row_ptr_mem = col_idx_mem = None
        row_ptr_addr = col_idx_addr = None
        log = transfers = None
        running = False

        async def step():
            """Finish the current cycle as the consumer and the memories."""
            nonlocal cycle, row_ptr_addr, col_idx_addr, running
            ready = int(rng.random() < 0.4) if back_pressure else 1
            ctx.set(dut.tiles.ready, ready)
            valid = ctx.get(dut.tiles.valid)
            payload = ctx.get(dut.tiles.payload)
            if running:
                assert not ctx.get(dut.job.ready), f"job.ready high while busy, cycle {cycle}"
            if valid and ready:
                transfers.append(len(log))
                if payload.end:
                    running = False
            log.append((valid, ready, {name: int(getattr(payload, name)) for name in fields}))
            row_ptr_addr = ctx.get(dut.row_ptr_addr)
            col_idx_addr = ctx.get(dut.col_idx_addr)
            await ctx.tick()
            cycle += 1
            # synchronous read ports: the data of the previous cycle's address
            ctx.set(dut.row_ptr_data, row_ptr_mem[row_ptr_addr])
            ctx.set(dut.col_idx_data, col_idx_mem[col_idx_addr])
            assert len(log) < JOB_TIMEOUT, "the sequencer never finished the job"

        for matrix, (row_ptr_mem, col_idx_mem) in zip(matrices, images):
            log, transfers = [], []
            for _ in range(int(rng.integers(0, 3)) if back_pressure else 0):
                await step()
            ctx.set(dut.job.valid, 1)
            ctx.set(dut.job.payload.out_block_rows, matrix.grid[0])
            while True:
                accepted = ctx.get(dut.job.ready)
                await step()
                if accepted:
                    break
            handshake = len(log) - 1
            # the sequencer must have latched the job: change it under its feet
            ctx.set(dut.job.valid, 0)
            ctx.set(dut.job.payload.out_block_rows, (1 << len(dut.job.payload.out_block_rows)) - 1)
            running = True
            while running:
                await step()
            # the cycle after the end descriptor's transfer: ready for the next job
            assert ctx.get(dut.job.ready), "job.ready low after the end descriptor"
            jobs.append((handshake, log, transfers))

    run_simulation(dut, testbench)
    return jobs


def _transferred(log, transfers):
    descriptors = []
    for cycle in transfers:
        payload = log[cycle][2]
        if payload["end"]:
            descriptors.append({key: payload[key] for key in ("zero", "end")})
        elif payload["zero"]:
            descriptors.append({key: payload[key]
                                for key in ("out_tile", "first", "last", "zero", "end")})
        else:
            descriptors.append(payload)
    return descriptors


@pytest.mark.parametrize("back_pressure", [False, True], ids=["always_ready", "back_pressure"])
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_walks_stored_tiles_in_packing_order(run_simulation, config, back_pressure):
    """Three jobs back to back: a random weight with empty block rows (two adjacent, the last),
    an all-empty weight, and one whose first block row is empty."""
    g = GemmGeometry.from_config(config)
    rng = np.random.default_rng(7)
    last = min(6, g.max_block_rows) - 1
    matrices = [
        _random_matrix(rng, g, empty_rows=(1, 2, last)),
        _random_matrix(rng, g, grid=(3, 4), density=0.0, empty_rows=range(3)),
        _random_matrix(rng, g, grid=(4, 3), density=0.7, empty_rows=(0,)),
    ]
    assert matrices[1].nnz_blocks == 0
    jobs = _run_jobs(run_simulation, g, matrices, back_pressure=back_pressure, seed=11)
    for number, (matrix, (handshake, log, transfers)) in enumerate(zip(matrices, jobs)):
        descriptors = _transferred(log, transfers)
        assert descriptors == _expected_descriptors(matrix, g), f"job {number}"
        _check_products(matrix, g, descriptors, rng)
        # Stream rules: once valid, valid and the payload hold until the transfer.
        for cycle in range(handshake + 1, len(log) - 1):
            valid, ready, payload = log[cycle]
            if valid and not ready:
                assert log[cycle + 1][0] and log[cycle + 1][2] == payload, f"cycle {cycle}"


def _first_valid_after(log, cycle):
    return next(c for c in range(cycle + 1, len(log)) if log[c][0])


@pytest.mark.parametrize("back_pressure", [False, True], ids=["always_ready", "back_pressure"])
def test_descriptor_timing(run_simulation, back_pressure):
    """What the cycle model relies on, measured with the job handshake in cycle ``h``:

    * the first descriptor is valid at ``h + 5`` when the first block row has a stored block
      (row pointer address, data, column index address, data, emit), ``h + 3`` when it is empty;
    * after each transfer, the next descriptor is valid within ``cycles_per_tile`` (5) cycles:
      5 when a new block row starts, 3 when a new block starts, 1 within a block or between
      ``zero`` descriptors. With an always-ready consumer this is the distance between
      consecutive descriptors.
    """
    g = GemmGeometry.from_config(TINY)
    rng = np.random.default_rng(3)
    matrices = [_random_matrix(rng, g, empty_rows=(2, 3)),
                _random_matrix(rng, g, grid=(3, 3), empty_rows=(0,))]
    jobs = _run_jobs(run_simulation, g, matrices, back_pressure=back_pressure, seed=5)
    first_delays = []
    for handshake, log, transfers in jobs:
        first_delays.append(_first_valid_after(log, handshake) - handshake)
        gaps = [_first_valid_after(log, t) - t for t in transfers[:-1]]
        assert max(gaps) <= BlockSequencer.cycles_per_tile, gaps
        if not back_pressure:
            assert np.diff(transfers).max() <= BlockSequencer.cycles_per_tile
            assert transfers[0] - handshake == first_delays[-1]
    assert all(delay <= FIRST_DESCRIPTOR_CYCLES for delay in first_delays), first_delays
    # pinned as measured, so that a change to the start-up is noticed (STARTUP_CYCLES counts on
    # the first descriptor by cycle 6, when it leaves the engine's queue)
    assert first_delays == [5, 3]
