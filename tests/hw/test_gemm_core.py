# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of ``GemmCore``: two weights resident at once, operands at strided
addresses in activation / output memories the testbench plays, requantized and raw outputs,
8- and 9-bit activations; bit-exact to the golden model, cycle-exact to the cycle model.

The testbench models the two external memories as Python lists (a synchronous read port: the
word of the previous cycle's address; every word not holding an operand is garbage) and records
every output write with its cycle, counted from the job handshake (cycle 0).
"""

import dataclasses

import numpy as np
import pytest

from hw.gemm import GemmCore
from hw.gemm.geometry import GemmGeometry, LoadTarget
from sw.block_sparse import BlockSparseMatrix
from sw.config import load_config
from sw.cycle_model.gemm import gemm_cycles
from sw.golden.gemm import linear_int
from sw.numerics import exact_matmul, requantize
from sw.packing import pack_activations, pack_lanes, pack_resident_weight, unpack_lanes

TINY = load_config("tiny")
BASE = GemmGeometry.from_config(TINY)
#: Tiny with room for two resident weights (and more), memory depths set above the preset's.
GEOMETRY = dataclasses.replace(BASE, weight_depth=2 * BASE.weight_depth,
                               row_ptr_depth=BASE.row_ptr_depth + 8,
                               quant_depth=BASE.quant_depth + 12)

#: Give up on a job after this many cycles.
JOB_TIMEOUT = 20_000


def _random_weight(rng, grid, g: GemmGeometry, *, density=0.5, empty_rows=()):
    mask = rng.random(grid) < density
    mask[:, 0] |= ~mask.any(axis=1)
    mask[list(empty_rows)] = False
    dense = rng.integers(-128, 128, (grid[0] * g.block_rows, grid[1] * g.block_cols))
    dense *= np.kron(mask, np.ones((g.block_rows, g.block_cols), dtype=np.int64))
    matrix = BlockSparseMatrix.from_dense(dense, (g.block_rows, g.block_cols), keep=mask)
    assert np.array_equal(matrix.block_mask(), mask)
    outer = dense.shape[0]
    bias = rng.integers(-(1 << 18), 1 << 18, outer)
    multiplier = rng.integers(1 << 10, 1 << 16, outer)
    shift = rng.integers(16, 24, outer)
    return matrix, bias, multiplier, shift


def _load_commands(g: GemmGeometry, images, rng):
    """Garbage in every core memory word, then the resident weights' words."""
    widths = {target: (shape.size if hasattr(shape, "size") else shape.width)
              for target, shape in g.word_shapes.items()}
    memories = {target: rng.integers(0, 1 << min(widths[target], 62), g.depths[target]).tolist()
                for target in (LoadTarget.ROW_PTR, LoadTarget.COL_IDX, LoadTarget.QUANT)}
    # weight garbage only around the resident weights (the memory is large)
    end = max(image.weight_addr + len(image.weight) for image in images) + 64
    memories[LoadTarget.WEIGHT] = pack_lanes(
        rng.integers(-128, 128, (end, g.array_cols)), g.data_width)
    for image in images:
        placements = {LoadTarget.WEIGHT: (image.weight_addr, image.weight),
                      LoadTarget.ROW_PTR: (image.row_ptr_base, image.row_ptr),
                      LoadTarget.COL_IDX: (image.first_block, image.col_idx),
                      LoadTarget.QUANT: (image.quant_base, image.quant)}
        for target, (start, words) in placements.items():
            memories[target][start:start + len(words)] = words
    return [(target, addr, word) for target, words in memories.items()
            for addr, word in enumerate(words)]


@dataclasses.dataclass
class Job:
    """One job on the core, and what it should produce."""

    x: np.ndarray
    matrix: BlockSparseMatrix
    image: object
    act_base: int
    act_stride: int
    out_base: int
    out_stride: int
    raw: bool
    expected: np.ndarray          # (tokens, outer)

    @property
    def payload(self) -> dict:
        tokens, inner = self.x.shape
        g = GEOMETRY
        return {"tokens": tokens, "in_tiles": inner // g.array_rows,
                "out_block_rows": self.matrix.grid[0], "act_base": self.act_base,
                "act_stride": self.act_stride, "out_base": self.out_base,
                "out_stride": self.out_stride, "row_ptr_base": self.image.row_ptr_base,
                "quant_base": self.image.quant_base, "raw": int(self.raw)}


def _run(run_simulation, core: GemmCore, loads, jobs, act_memory):
    """Load, then run ``jobs`` back to back; per job: the output writes ``(cycle, addr, word)``,
    the cycle ``done`` rose and the counters."""
    g = core.geometry
    results = []

    async def testbench(ctx):
        for target, addr, word in loads:
            ctx.set(core.load.valid, 1)
            ctx.set(core.load.payload, {"target": target, "addr": addr, "data": word})
            assert ctx.get(core.load.ready), "load not ready while idle"
            await ctx.tick()
        ctx.set(core.load.valid, 0)
        for job in jobs:
            ctx.set(core.job.payload, job.payload)
            ctx.set(core.job.valid, 1)
            cycle, accepted, writes, done_cycle = 0, None, [], None
            while done_cycle is None:
                if accepted is None and ctx.get(core.job.ready):
                    accepted = cycle
                elif accepted is not None:
                    ctx.set(core.job.valid, 0)
                    if ctx.get(core.done):
                        done_cycle = cycle - accepted
                    else:
                        assert not ctx.get(core.load.ready), "load ready while running"
                if ctx.get(core.out_en):
                    writes.append((cycle - accepted, ctx.get(core.out_addr),
                                   ctx.get(core.out_data.as_value())))
                act_addr = ctx.get(core.act_addr)
                await ctx.tick()
                cycle += 1
                ctx.set(core.act_data.as_value(), act_memory[act_addr])
                assert cycle < JOB_TIMEOUT, "the job never finished"
            results.append({"writes": writes, "done": done_cycle,
                            "total": ctx.get(core.total_cycles),
                            "busy": ctx.get(core.busy_cycles),
                            "stall": ctx.get(core.stall_cycles)})

    run_simulation(core, testbench)
    return results


def _check(job: Job, result, g: GemmGeometry):
    tokens, inner = job.x.shape
    outer = job.matrix.shape[0]
    out_tiles = outer // g.array_cols
    model = gemm_cycles(array_rows=g.array_rows, array_cols=g.array_cols,
                        block_rows=g.block_rows, block_cols=g.block_cols, tokens=tokens,
                        block_mask=job.matrix.block_mask())
    assert (result["total"], result["busy"], result["stall"]) == (
        model.total, model.busy, model.stall)
    assert result["done"] == model.cycles_to_done
    assert result["writes"][-1][0] == model.total          # the last write ends `total`
    # every output word written once, where the strides put it
    addresses = [addr for _, addr, _ in result["writes"]]
    expected_addresses = [job.out_base + r * job.out_stride + n
                          for r in range(tokens) for n in range(out_tiles)]
    assert sorted(addresses) == sorted(expected_addresses)
    words = dict((addr, word) for _, addr, word in result["writes"])
    y = unpack_lanes([words[a] for a in expected_addresses], g.array_cols, g.acc_width)
    assert np.array_equal(y.reshape(tokens, outer), job.expected)


def _act_memory(rng, g: GemmGeometry, act_width: int, placed):
    """Garbage activation words, with each ``(x, act_base, act_stride)`` placed in them."""
    low, high = -(1 << (act_width - 1)), 1 << (act_width - 1)
    memory = pack_lanes(rng.integers(low, high, (g.act_depth, g.array_rows)), act_width)
    for x, base, stride in placed:
        words = pack_activations(x, g.array_rows, act_width)
        in_tiles = x.shape[1] // g.array_rows
        for r in range(x.shape[0]):
            start = base + r * stride
            assert start + in_tiles <= g.act_depth
            memory[start:start + in_tiles] = words[r * in_tiles:(r + 1) * in_tiles]
    return memory


def _two_weights(rng, g: GemmGeometry):
    """Two weights packed one after the other, neither at address 0."""
    first = _random_weight(rng, (6, 8), g, empty_rows=(2,))          # 48 x 64, an empty row
    second = _random_weight(rng, (4, 4), g, density=0.6)              # 32 x 32
    widths = dict(array_rows=g.array_rows, array_cols=g.array_cols, data_width=g.data_width,
                  acc_width=g.acc_width, multiplier_width=g.multiplier_width)
    image_1 = pack_resident_weight(*first, first_block=3, row_ptr_base=2, quant_base=5,
                                   **widths)
    image_2 = pack_resident_weight(*second, **image_1.next_free, **widths)
    assert image_2.first_block > 3 and image_2.row_ptr_base > 2 and image_2.quant_base > 5
    assert image_2.next_free["first_block"] <= g.depths[LoadTarget.COL_IDX]
    assert image_2.next_free["row_ptr_base"] <= g.row_ptr_depth
    assert image_2.next_free["quant_base"] <= g.quant_depth
    return (first, image_1), (second, image_2)


def test_two_resident_weights_strided_operands_requantized_and_raw(run_simulation):
    """8-bit activations. Job 1: weight 1, requantized; job 2: weight 2, raw, few tokens
    (tile period padding); job 3: job 1 again in raw mode, which must write the same words at
    the same cycles."""
    g = GEOMETRY
    rng = np.random.default_rng(2024)
    ((w1, bias1, mult1, shift1), image_1), ((w2, bias2, mult2, shift2), image_2) = \
        _two_weights(rng, g)
    x1 = rng.integers(-128, 128, (g.max_tokens, w1.shape[1]))
    x2 = rng.integers(-128, 128, (3, w2.shape[1]))
    in_1, in_2 = w1.shape[1] // g.array_rows, w2.shape[1] // g.array_rows
    jobs = [
        Job(x1, w1, image_1, act_base=7, act_stride=in_1 + 3, out_base=11,
            out_stride=w1.shape[0] // g.array_cols + 2, raw=False,
            expected=linear_int(x1, w1.to_dense(), bias1, mult1, shift1,
                                data_width=g.data_width, acc_width=g.acc_width,
                                multiplier_width=g.multiplier_width)),
        Job(x2, w2, image_2, act_base=400, act_stride=in_2 + 5, out_base=300,
            out_stride=w2.shape[0] // g.array_cols + 1, raw=True,
            expected=exact_matmul(x2, w2.to_dense().T) + bias2),
    ]
    jobs.append(dataclasses.replace(jobs[0], raw=True,
                                    expected=exact_matmul(x1, w1.to_dense().T) + bias1))
    act_memory = _act_memory(rng, g, g.data_width,
                             [(job.x, job.act_base, job.act_stride) for job in jobs[:2]])
    core = GemmCore(g)
    results = _run(run_simulation, core, _load_commands(g, [image_1, image_2], rng), jobs,
                   act_memory)
    for job, result in zip(jobs, results):
        _check(job, result, g)
    # the requantized outputs both saturate and not, so requantization really happened
    requantized = jobs[0].expected
    assert np.isin(requantized, [-128, 127]).any() and (np.abs(requantized) < 100).any()
    # raw and requantized modes: same addresses at the same cycles
    assert [w[:2] for w in results[0]["writes"]] == [w[:2] for w in results[2]["writes"]]
    assert results[0]["total"] == results[2]["total"]


@pytest.mark.parametrize("low,high", [(0, 256), (-256, 256)], ids=["unsigned_8", "signed_9"])
def test_nine_bit_activations(run_simulation, low, high):
    """``act_width = data_width + 1``: unsigned 8-bit values (softmax probabilities) and the
    whole signed 9-bit range as activations, raw and requantized."""
    g = GEOMETRY
    act_width = g.data_width + 1
    rng = np.random.default_rng(high - low)
    ((w1, bias1, mult1, shift1), image_1), ((w2, bias2, mult2, shift2), image_2) = \
        _two_weights(rng, g)
    x1 = rng.integers(low, high, (9, w1.shape[1]))
    x1[0, :] = low                                    # the extremes of the range
    x1[1, :] = high - 1
    x2 = rng.integers(low, high, (g.max_tokens, w2.shape[1]))
    in_1, in_2 = w1.shape[1] // g.array_rows, w2.shape[1] // g.array_rows
    acc1 = exact_matmul(x1, w1.to_dense().T) + bias1
    acc2 = exact_matmul(x2, w2.to_dense().T) + bias2
    jobs = [
        Job(x1, w1, image_1, act_base=1, act_stride=in_1 + 1, out_base=3,
            out_stride=w1.shape[0] // g.array_cols + 4, raw=True, expected=acc1),
        Job(x2, w2, image_2, act_base=260, act_stride=in_2 + 2, out_base=200,
            out_stride=w2.shape[0] // g.array_cols + 1, raw=False,
            expected=requantize(acc2, mult2, shift2, out_width=g.data_width)),
    ]
    act_memory = _act_memory(rng, g, act_width,
                             [(job.x, job.act_base, job.act_stride) for job in jobs])
    core = GemmCore(g, act_width=act_width)
    assert core.act_width == act_width
    results = _run(run_simulation, core, _load_commands(g, [image_1, image_2], rng), jobs,
                   act_memory)
    for job, result in zip(jobs, results):
        _check(job, result, g)


def test_rejects_bad_arguments():
    with pytest.raises(TypeError, match=r"^Geometry must be a GemmGeometry, not 'tiny'$"):
        GemmCore("tiny")
    with pytest.raises(ValueError, match=r"^Activation width must be a positive integer"):
        GemmCore(GEOMETRY, act_width=0)
    with pytest.raises(ValueError, match=r"^Accumulator width must be at least the activation "
                                         r"plus weight widths \(33\), not 32$"):
        GemmCore(GEOMETRY, act_width=25)


def test_default_geometry_depths_are_unchanged():
    """The preset's depths, unless set: one weight of ``max_outer`` outputs."""
    assert BASE.row_ptr_depth == BASE.max_block_rows + 1
    assert BASE.quant_depth == BASE.max_out_tiles == TINY.max_gemm_outer // BASE.array_cols
    assert GEOMETRY.depths[LoadTarget.COL_IDX] == 2 * BASE.depths[LoadTarget.COL_IDX]
    assert GEOMETRY.depths[LoadTarget.ROW_PTR] == BASE.max_block_rows + 9
    layout = GEOMETRY.core_job_layout
    assert list(dict(layout.members)) == [
        "tokens", "in_tiles", "out_block_rows", "act_base", "act_stride", "out_base",
        "out_stride", "row_ptr_base", "quant_base", "raw", "streamed"]
