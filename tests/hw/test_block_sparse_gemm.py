# amaranth: UnusedElaboratable=no
"""Elaboration-level tests of the GEMM engine: timing constants agree with the cycle model, memory
word layouts agree with ``sw.packing``, jobs that do not fit are rejected with exact messages."""

import re

import numpy as np
import pytest
from amaranth.hdl import Fragment

from hw.gemm import BlockSparseGemm
from hw.gemm.block_sequencer import BlockSequencer
from hw.gemm.geometry import GemmGeometry, LoadTarget, check_job_fits
from hw.gemm.requantizer import Requantizer
from hw.gemm.systolic_array import SystolicArray
from sw.block_sparse import BlockSparseMatrix
from sw.config import load_config, minimum_buffers
from sw.cycle_model.gemm import (ACTIVATION_READ_LATENCY, GemmTiming, REQUANT_LATENCY, SEQUENCER_CYCLES_PER_TILE)
from sw.packing import pack_activations, pack_quant, pack_weights, quant_record_width

TINY = load_config("tiny")


def _variant(name, **shape):
    """Tiny with another array and block shape, buffers resized to the smallest that fit."""
    full = {key: getattr(TINY.hardware, key)
            for key in ("array_rows", "array_cols", "block_rows", "block_cols")} | shape
    return TINY.replace(name=name, hardware={**shape, **minimum_buffers(TINY.model, **full)})


CONFIGS = {
    "tiny": TINY,                                                        # 4x4, 8x8 blocks
    # the weight load offset is R - 1 here, C for the others
    "array_8x4": _variant("array_8x4", array_rows=8, array_cols=4, block_rows=16,
                          block_cols=16),
    "array_4x8": _variant("array_4x8", array_rows=4, array_cols=8, block_rows=16,
                          block_cols=8),
    # small enough that the sequencer, not the weight load, bounds the tile period
    "array_2x2": _variant("array_2x2", array_rows=2, array_cols=2, block_rows=4,
                          block_cols=4),
    "array_1x1": _variant("array_1x1", array_rows=1, array_cols=1, block_rows=4,
                          block_cols=4),
}


def test_unit_latencies_match_cycle_model():
    assert Requantizer.latency == REQUANT_LATENCY
    assert BlockSequencer.cycles_per_tile == SEQUENCER_CYCLES_PER_TILE


def test_rejects_a_non_config():
    with pytest.raises(TypeError, match=r"Config must be an AcceleratorConfig, not 'tiny'"):
        BlockSparseGemm("tiny")
    with pytest.raises(TypeError, match=r"Config must be an AcceleratorConfig, not \{"):
        BlockSparseGemm(TINY.to_dict())


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_structure_matches_cycle_model(config):
    """The schedule comes from the cycle model; the latencies of the cells it is built from
    must be the ones the model assumes."""
    hw = config.hardware
    dut = BlockSparseGemm(config)
    timing = GemmTiming(hw.array_rows, hw.array_cols)
    assert dut.timing == timing
    array = SystolicArray(rows=hw.array_rows, cols=hw.array_cols, data_width=hw.data_width,
                          acc_width=hw.acc_width)
    assert array.latency == timing.array_latency
    assert timing.drain_cycles == ACTIVATION_READ_LATENCY + array.latency + Requantizer.latency
    assert dut.config is config
    assert dut.geometry == GemmGeometry.from_config(config)
    Fragment.get(dut, None)                                              # it elaborates


def test_timing_variants_cover_both_bounds():
    """The configs above exercise each branch of the two ``max`` of the cycle model."""
    timings = [GemmTiming(c.hardware.array_rows, c.hardware.array_cols) for c in CONFIGS.values()]
    assert {t.weight_load_offset == t.array_cols for t in timings} == {True, False}
    assert {t.min_tile_period == SEQUENCER_CYCLES_PER_TILE for t in timings} == {True, False}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_quant_record_layout_matches_packing(config):
    g = GemmGeometry.from_config(config)
    hw = config.hardware
    record = g.quant_record_layout
    assert record.size == quant_record_width(hw.acc_width, hw.multiplier_width)
    assert list(g.field_offsets(record)) == ["bias", "multiplier", "shift"]
    # One word of C records, decoded through the hardware's layouts, gives back what
    # sw.packing.pack_quant put in (bias sign included).
    rng = np.random.default_rng(hw.array_cols)
    cols = hw.array_cols
    bias = rng.integers(-(1 << (hw.acc_width - 1)), 1 << (hw.acc_width - 1), cols)
    bias[0] = -1
    multiplier = rng.integers(0, 1 << hw.multiplier_width, cols)
    shift = rng.integers(0, 64, cols)
    [word] = pack_quant(bias, multiplier, shift, cols, hw.acc_width, hw.multiplier_width)
    quant_word = g.word_shapes[LoadTarget.QUANT]
    assert quant_word.size == cols * record.size
    assert g.load_layout["data"].shape.width >= quant_word.size
    # the load port's data field carries the word unchanged to the memory
    load = g.load_layout.const({"target": LoadTarget.QUANT, "addr": 0, "data": word})
    decoded = quant_word.from_bits(load.data)
    assert [decoded[c].bias for c in range(cols)] == bias.tolist()
    assert [decoded[c].multiplier for c in range(cols)] == multiplier.tolist()
    assert [decoded[c].shift for c in range(cols)] == shift.tolist()


def test_operand_word_layouts_match_packing():
    """Lane 0 of an activation or weight word is the low bits, as ``sw.packing`` stores it."""
    g = GemmGeometry.from_config(CONFIGS["array_4x8"])
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (2, 2 * g.array_rows))
    words = pack_activations(x, g.array_rows, g.data_width)
    decoded = [list(g.word_shapes[LoadTarget.ACTIVATION].from_bits(w)) for w in words]
    assert np.array_equal(np.array(decoded).reshape(x.shape), x)
    dense = rng.integers(-128, 128, (g.block_rows, g.block_cols))
    matrix = BlockSparseMatrix.from_dense(dense, (g.block_rows, g.block_cols))
    words = pack_weights(matrix, g.array_rows, g.array_cols, g.data_width)
    assert len(words) == g.words_per_block
    # word r of tile 0 holds the C weights that array row r multiplies: W[0:C, r]
    row_1 = list(g.word_shapes[LoadTarget.WEIGHT].from_bits(words[1]))
    assert row_1 == dense[:g.array_cols, 1].tolist()


@pytest.mark.parametrize("job,message", [
    (dict(tokens=18, inner=64, outer=64),
     "GEMM tokens (18) must lie in 1..17 on this engine"),
    (dict(tokens=0, inner=64, outer=64),
     "GEMM tokens (0) must lie in 1..17 on this engine"),
    (dict(tokens=17, inner=136, outer=64),
     "GEMM input features (136) must lie in 1..128 on this engine"),
    (dict(tokens=17, inner=64, outer=256),
     "GEMM output features (256) must lie in 1..128 on this engine"),
    (dict(tokens=17, inner=12, outer=64),
     "Block shape 8x8 does not divide the 64x12 weight"),
    (dict(tokens=17, inner=64, outer=60),
     "Block shape 8x8 does not divide the 60x64 weight"),
    (dict(tokens=17, inner=64, outer=64, words={LoadTarget.WEIGHT: 2049}),
     "weight memory holds 2048 words, the job needs 2049"),
    (dict(tokens=17, inner=64, outer=64, words={LoadTarget.COL_IDX: 129}),
     "col_idx memory holds 128 words, the job needs 129"),
])
def test_check_job_fits_rejects(job, message):
    g = GemmGeometry.from_config(TINY)
    job = {"words": {}} | job
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_job_fits(g, **job)


def test_check_job_fits_accepts_the_largest_job():
    g = GemmGeometry.from_config(TINY)
    check_job_fits(g, tokens=17, inner=128, outer=128, words=g.depths)
