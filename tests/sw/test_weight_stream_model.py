"""The streamed-weight GEMM cycle model (``sw.cycle_model.weight_stream``): its limits.

The model is checked cycle for cycle against the RTL and cocotbext-axi's AXI RAM by
``sim/test_layer_engine.py`` (a memory that keeps up, and a starved stream); these tests pin
what it must give at its two extremes and its arguments' meaning."""

import numpy as np
import pytest

from sw.config import load_config
from sw.cycle_model.gemm import STARTUP_CYCLES, gemm_cycles
from sw.cycle_model.weight_stream import (AXI_RAM, MemoryTiming, StreamParams, tile_sequence,
                                          streamed_gemm_cycles)
from sw.engine_params import EngineParams

TINY_STREAM = StreamParams.of(EngineParams.from_config(load_config("tiny")))
DEIT_STREAM = StreamParams.of(EngineParams.from_config(load_config("deit_b16")))


def both(mask, *, tokens, array=4, block=8, stream=TINY_STREAM, memory=AXI_RAM):
    shape = dict(array_rows=array, array_cols=array, block_rows=block, block_cols=block,
                 tokens=tokens, block_mask=mask)
    return gemm_cycles(**shape), streamed_gemm_cycles(**shape, stream=stream, memory=memory)


def test_tile_sequence_marks_the_zero_tiles_of_empty_block_rows():
    mask = np.array([[True, False, True], [False, False, False]])
    assert tile_sequence(mask, out_tiles=2, in_tiles=1) == [True] * 4 + [False] * 2


def test_a_memory_that_keeps_up_costs_nothing_on_tiny():
    """Words of a tile arrive 2 + latency + R cycles after the start, before the first tile is
    taken (cycle 9): the resident engine's cycles exactly."""
    mask = np.ones((16, 8), bool)
    resident, streamed = both(mask, tokens=17)
    assert streamed.total == resident.total and streamed.stall == resident.stall


def test_deit_b16_exposes_only_the_first_two_tiles_fetch():
    """16-word tiles at one word a cycle: the first tile's words are all in at cycle 18 (taken
    at 19 instead of 9), the second's at 34 (its boundary at 35 instead of 21): 24 cycles, and
    nothing after (a 197-cycle period needs 16 words)."""
    mask = np.ones((24, 24), bool)
    resident, streamed = both(mask, tokens=197, array=16, block=32, stream=DEIT_STREAM)
    assert streamed.total - resident.total == (19 - (STARTUP_CYCLES - 2)) + (35 - 21) == 24


@pytest.mark.parametrize("bytes_per_cycle", [0.5, 1, 2])
def test_a_slow_memory_bounds_the_gemm_by_its_bytes(bytes_per_cycle):
    """Below the array's need, the GEMM takes as long as its bytes take to arrive, plus at most
    the resident schedule."""
    mask = np.ones((16, 8), bool)
    resident, streamed = both(mask, tokens=4, memory=MemoryTiming(2, bytes_per_cycle))
    transfer = 16 * 8 * 64 / bytes_per_cycle        # 128 blocks of 64 int8 weights
    assert transfer <= streamed.total <= transfer + resident.total


def test_sparser_weights_move_fewer_bytes_and_wait_less():
    dense, half = np.ones((16, 8), bool), np.zeros((16, 8), bool)
    half[:, ::2] = True
    slow = MemoryTiming(2, 1)
    assert both(half, tokens=4, memory=slow)[1].total < both(dense, tokens=4, memory=slow)[1].total


def test_a_smaller_buffer_or_fewer_bursts_in_flight_never_helps():
    mask = np.ones((16, 8), bool)
    small = StreamParams(word_bytes=4, burst_beats=4, max_outstanding=1, buffer_words=8)
    big = StreamParams(word_bytes=4, burst_beats=4, max_outstanding=2, buffer_words=64)
    slow = both(mask, tokens=6, stream=small)[1].total
    fast = both(mask, tokens=6, stream=big)[1].total
    assert slow > fast >= both(mask, tokens=6)[0].total
