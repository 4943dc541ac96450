# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the layer engine's scratchpad pieces, each on a real memory:
the row reader (beats, timing, back-pressure), the row writer, the GEMM epilogue and the
weight stager; outputs compared with ``sw.packing`` / the golden kernels, cycles with
``sw.cycle_model.layer_engine``. (``sim/test_layer_engine.py`` runs them inside the engine.)"""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, signed, unsigned
from amaranth.lib.memory import Memory

from hw.layer.gemm_epilogue import GemmEpilogue
from hw.layer.loading import gelu_table
from hw.layer.row_reader import RowReader
from hw.layer.row_writer import RowWriter
from hw.layer.weight_stager import WeightStager
from sw.block_sparse import BlockSparseMatrix
from sw.engine_params import LANE_WIDTH
from sw.cycle_model.layer_engine import EPILOGUE_LATENCY, FIRST_BEAT_DELAY, stage_tile_cycles
from sw.golden.kernels import (gelu_constants, gelu_int, residual_add_int,
                               residual_constants)
from sw.isa import Epilogue
from sw.packing import pack_lanes, pack_weights, rows_to_beats, unpack_lanes

C = 4
WORD = unsigned(C * LANE_WIDTH)        # a vector's bits (lane 0 lowest), as sw.packing packs


class _OnMemory(Elaboratable):
    """``dut`` with its read ports (``ScratchRead`` interfaces) on one memory of vectors and its
    write port (a ``ScratchWrite``), if any, on a second one."""

    def __init__(self, dut, init, *, reads, write=None, depth=256):
        self.dut, self.reads, self.write = dut, reads, write
        self.memory = Memory(shape=WORD, depth=depth, init=init)
        self.output = Memory(shape=WORD, depth=depth, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut, m.submodules.memory = self.dut, self.memory
        m.submodules.output = self.output
        for read in self.reads:
            port = self.memory.read_port()
            m.d.comb += [port.addr.eq(read.addr), read.data.eq(port.data)]
        if self.write is not None:
            port = self.output.write_port()
            m.d.comb += [port.addr.eq(self.write.addr), port.data.eq(self.write.data),
                         port.en.eq(self.write.en)]
        return m


async def _start(ctx, unit, **job):
    """Set ``unit``'s job fields, pulse ``start`` for one cycle and return after it."""
    for name, value in job.items():
        ctx.set(getattr(unit, name), value)
    ctx.set(unit.start, 1)
    await ctx.tick()
    ctx.set(unit.start, 0)


def _vectors(rows, stride):
    """Memory words of ``rows`` laid out ``stride`` vectors per row (unused vectors 0)."""
    tokens, width = rows.shape
    words = []
    for row in rows:
        padded = np.concatenate([row, np.zeros(stride * C - width, np.int64)])
        words += pack_lanes(padded.reshape(stride, C), LANE_WIDTH)
    return words


@pytest.mark.parametrize("lanes,length,ready_every", [(1, 7, 1), (2, 13, 1), (4, 9, 1),
                                                      (2, 13, 3)])
def test_row_reader_beats_and_timing(run_simulation, lanes, length, ready_every):
    rng = np.random.default_rng(length)
    rows = rng.integers(-(1 << 15), 1 << 15, (5, length))
    stride = -(-length // C) + 1                      # a spare vector per row
    base = 3
    init = [0] * base + _vectors(rows, stride)
    reader = RowReader(vector_lanes=C, lanes=lanes, out_shape=signed(16), max_rows=8,
                       max_length=32, depth=256)
    top = _OnMemory(reader, init, reads=[reader.scratch])
    expected = rows_to_beats(rows, lanes).tolist()
    seen = []

    async def testbench(ctx):
        await _start(ctx, reader, base=base, stride=stride, rows=len(rows), length=length)
        cycle = 0
        while len(seen) < len(expected) and cycle < 500:
            cycle += 1
            ready = cycle % ready_every == 0
            ctx.set(reader.o.ready, ready)
            valid, payload = ctx.get(reader.o.valid), ctx.get(reader.o.payload)
            if valid and ready:
                seen.append((cycle, [int(v) for v in payload]))
            await ctx.tick()

    run_simulation(top, testbench)
    got = [beat for _, beat in seen]
    # lanes past the row's end are don't-care in the beat: compare the element lanes only
    mask = rows_to_beats(np.ones_like(rows), lanes) != 0
    assert [list(np.where(m, b, 0)) for b, m in zip(got, mask)] == \
        [list(np.where(m, b, 0)) for b, m in zip(expected, mask)]
    if ready_every == 1:                 # one beat per cycle from FIRST_BEAT_DELAY on
        assert [c for c, _ in seen] == list(range(FIRST_BEAT_DELAY,
                                                  FIRST_BEAT_DELAY + len(expected)))


@pytest.mark.parametrize("lanes,length", [(1, 6), (2, 11), (4, 8)])
def test_row_writer_builds_vectors(run_simulation, lanes, length):
    rng = np.random.default_rng(lanes)
    rows = rng.integers(0, 256, (3, length))
    stride = -(-length // C) + 2
    base = 5
    writer = RowWriter(vector_lanes=C, lanes=lanes, in_shape=unsigned(8), max_rows=8,
                       max_length=32, depth=256)
    top = _OnMemory(writer, [], reads=[], write=writer.scratch)
    beats = rows_to_beats(rows, lanes).tolist()
    finished = []

    async def testbench(ctx):
        await _start(ctx, writer, base=base, stride=stride, rows=len(rows), length=length)
        for index, beat in enumerate(beats):
            ctx.set(writer.i.valid, 1)
            ctx.set(writer.i.payload, beat)
            if ctx.get(writer.finished):
                finished.append(index)
            await ctx.tick()
        ctx.set(writer.i.valid, 0)
        words = [ctx.get(top.output.data[base + r * stride + w])
                 for r in range(len(rows)) for w in range(-(-length // C))]
        found = unpack_lanes(words, C, LANE_WIDTH).reshape(len(rows), -1)
        padded = np.zeros_like(found)
        padded[:, :length] = rows
        assert np.array_equal(found, padded)

    run_simulation(top, testbench)
    assert finished == [len(beats) - 1]


@pytest.mark.parametrize("epilogue", list(Epilogue))
def test_gemm_epilogue_writes_the_golden_result_five_cycles_later(run_simulation, epilogue):
    """GEMM outputs (requantized int8, or raw sums for NONE) given one vector a cycle with a
    gap go through the epilogue: each lands ``EPILOGUE_LATENCY`` cycles after it was given,
    as ``gelu_int`` / ``residual_add_int`` (skip read at the output's address + offset) say."""
    rng = np.random.default_rng(int(epilogue))
    tokens, width, stride = 3, 8, 2
    out_base, skip_base = 40, 8
    skip = rng.integers(-(1 << 15), 1 << 15, (tokens, width))
    if epilogue == Epilogue.NONE:
        outputs = rng.integers(-(1 << 31), 1 << 31, (tokens, width))
    else:
        outputs = rng.integers(-128, 128, (tokens, width))
    residual = residual_constants(0.01, 0.2, 0.012, in_width=16, out_width=16)
    gelu = gelu_constants(0.05, 0.02, in_width=8)
    expected = {Epilogue.NONE: lambda: outputs, Epilogue.GELU: lambda: gelu_int(outputs, gelu),
                Epilogue.RESIDUAL: lambda: residual_add_int(skip, outputs, residual)}[epilogue]()
    init = [0] * skip_base + _vectors(skip, stride)
    unit = GemmEpilogue(lanes=C, acc_width=32, data_width=8, multiplier_width=16, depth=256)
    top = _OnMemory(unit, init, reads=[unit.skip], write=unit.write)
    given, written = [], []

    async def testbench(ctx):
        for name in ("multiplier_a", "multiplier_b", "shift"):
            ctx.set(getattr(unit.constants, name), getattr(residual, name))
        for addr, entry in gelu_table(gelu, 8):
            ctx.set(unit.table_addr, addr)
            ctx.set(unit.table_data, entry - 256 if entry > 127 else entry)
            ctx.set(unit.table_en, 1)
            await ctx.tick()
        ctx.set(unit.table_en, 0)
        ctx.set(unit.mode, epilogue)
        ctx.set(unit.skip_offset, (skip_base - out_base) % 256)
        vectors = [(r, w) for r in range(tokens) for w in range(width // C)]
        for cycle in range(len(vectors) + 12):
            index = cycle - cycle // 3             # every third cycle gives nothing
            gives = cycle % 3 != 2 and index < len(vectors)
            ctx.set(unit.out_en, gives)
            if gives:
                r, w = vectors[index]
                ctx.set(unit.out_addr, out_base + r * stride + w)
                ctx.set(unit.out_data, [int(v) for v in outputs[r, w * C:(w + 1) * C]])
                given.append(cycle)
            if ctx.get(unit.write.en):
                written.append(cycle)
            await ctx.tick()
        words = [ctx.get(top.output.data[out_base + r * stride + w])
                 for r in range(tokens) for w in range(width // C)]
        found = unpack_lanes(words, C, LANE_WIDTH).reshape(tokens, width)
        assert np.array_equal(found, expected)

    run_simulation(top, testbench)
    assert written == [cycle + EPILOGUE_LATENCY for cycle in given]


@pytest.mark.parametrize("transpose", [True, False])
def test_weight_stager_writes_dense_key_and_value_tiles(run_simulation, transpose):
    rng = np.random.default_rng(int(transpose))
    tokens, keys, head_dim, block = 6, 8, 8, (4, 4)
    rows = rng.integers(-128, 128, (tokens, 2 * head_dim))      # two heads side by side
    stride = 2 * head_dim // C
    head_offset = head_dim // C                                   # the second head
    stager = WeightStager(lanes=C, block_rows=block[0], block_cols=block[1], keys=keys,
                          head_dim=head_dim, data_width=8, max_rows=8, depth=256,
                          weight_depth=256)
    top = _OnMemory(stager, _vectors(rows, stride), reads=[stager.scratch])
    head = np.zeros((keys, head_dim), np.int64)
    head[:tokens] = rows[:, head_dim:]                             # keys past the tokens: 0
    weight = head if transpose else head.T
    dense = BlockSparseMatrix.from_dense(weight, block, keep=np.ones(
        (weight.shape[0] // block[0], weight.shape[1] // block[1]), bool))
    expected = pack_weights(dense, C, C, 8)
    written, cycles = {}, []

    async def testbench(ctx):
        await _start(ctx, stager, transpose=transpose, src_base=head_offset, stride=stride,
                     tokens=tokens, dst=10)
        count = 0
        while True:
            count += 1
            if ctx.get(stager.weight_en):
                written[ctx.get(stager.weight_addr)] = ctx.get(stager.weight_data.as_value())
            if ctx.get(stager.finished):
                break
            await ctx.tick()
        cycles.append(count)

    run_simulation(top, testbench)
    assert [written[10 + i] for i in range(len(expected))] == expected
    assert len(written) == len(expected)
    assert cycles == [keys * head_dim // (C * C) * stage_tile_cycles(C)]


def test_load_plan_rejects_a_layer_the_config_cannot_hold():
    from hw.layer.loading import load_plan
    from sw.config import load_config
    from sw.golden.synthetic_layer import synthetic_layer
    layer = synthetic_layer(hidden=64, head_dim=16, heads=4, ffn=256, kept_heads=range(4),
                            kept_ffn=256, block=(8, 8), density=1.0)
    with pytest.raises(ValueError, match=r"fc1 weight 256x64 is larger than config 'tiny' "
                                         r"holds \(128x64\)"):
        load_plan(load_config("tiny"), layer)
