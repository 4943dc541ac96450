"""Live ranges, element widths and packed bytes of the scratchpad's regions."""

import doctest

import pytest

import sw.scratchpad_regions

from sw.config import load_config
from sw.engine_params import EngineParams
from sw.image.program import layer_program
from sw.isa import Buffer, Instruction, Opcode
from sw.scratchpad_regions import (LiveRange, disjoint_pairs, element_bits, live_ranges,
                                   peak_live, program_of, region_bytes)

TINY = load_config("tiny")


def test_live_ranges_of_a_two_head_program():
    program = layer_program([0, 1], tokens=17, token_keep=17)
    ranges = live_ranges(program)
    # positions: 0 LN1, 1-3 Q K V, 4-9 two heads, 10 O, 11 RESIDUAL, 12 LN2, 13 FC1, 14 GELU,
    # 15 FC2, 16 RESIDUAL, 17 END
    assert ranges == {
        Buffer.INPUT: LiveRange(-1, 11), Buffer.LN1: LiveRange(0, 3),
        Buffer.Q: LiveRange(1, 7), Buffer.K: LiveRange(2, 7), Buffer.V: LiveRange(3, 9),
        Buffer.SCORES: LiveRange(4, 8), Buffer.PROBS: LiveRange(5, 9),
        Buffer.CONTEXT: LiveRange(6, 10), Buffer.ATTN: LiveRange(10, 11),
        Buffer.RESIDUAL1: LiveRange(11, 16), Buffer.LN2: LiveRange(12, 13),
        Buffer.FC1: LiveRange(13, 14), Buffer.GELU: LiveRange(14, 15),
        Buffer.FC2: LiveRange(15, 16), Buffer.OUTPUT: LiveRange(16, 18)}


def test_an_in_place_gather_extends_its_buffer():
    with_gather = live_ranges(layer_program([0], tokens=17, token_keep=8))
    assert with_gather[Buffer.RESIDUAL1] == LiveRange(8, 14)    # 8 RESIDUAL, 9 GATHER .. 14


def test_reading_an_unwritten_buffer_is_refused():
    program = [Instruction(Opcode.GELU, Buffer.GELU, Buffer.FC1)]
    with pytest.raises(ValueError, match=r"^Instruction 0 \(GELU GELU <- FC1 \(arg 0, arg2 0\)"
                                         r"\) reads FC1 before anything writes it$"):
        live_ranges(program)


def test_overlap_is_inclusive():
    assert LiveRange(0, 3).overlaps(LiveRange(3, 5))
    assert not LiveRange(0, 2).overlaps(LiveRange(3, 5))


def test_disjoint_pairs_of_the_densest_deit_b16_program():
    ranges = live_ranges(program_of(load_config("deit_b16")))
    pairs = disjoint_pairs(ranges)
    assert len(ranges) == 15 and len(pairs) == 67
    assert (Buffer.LN1, Buffer.SCORES) in pairs and (Buffer.Q, Buffer.K) not in pairs
    for a, b in pairs:
        assert not ranges[a].overlaps(ranges[b])


def test_peak_live_is_the_largest_sum_over_positions():
    ranges = {Buffer.INPUT: LiveRange(-1, 1), Buffer.LN1: LiveRange(0, 0),
              Buffer.Q: LiveRange(1, 2)}
    sizes = {Buffer.INPUT: 10, Buffer.LN1: 5, Buffer.Q: 7}
    assert peak_live(ranges, sizes) == (1, 17)     # 0: 15, 1: 17, 2: 7


def test_element_bits_follow_the_buffer_table():
    bits = element_bits(TINY)
    assert {b for b, n in bits.items() if n == 16} == {Buffer.INPUT, Buffer.RESIDUAL1,
                                                         Buffer.OUTPUT}
    assert (bits[Buffer.SCORES], bits[Buffer.PROBS], bits[Buffer.LN1]) == (32, 8, 8)


def test_region_bytes_today_sum_to_the_scratchpad():
    mm = EngineParams.from_config(TINY).memory_map
    assert sum(region_bytes(TINY).values()) == mm.depth * mm.lanes * 4


def test_packing_stores_four_int8_or_two_int16_per_word():
    today, packed = region_bytes(TINY), region_bytes(TINY, packed=True)
    assert packed[Buffer.LN1] * 4 == today[Buffer.LN1] == 17 * 16 * 4 * 4
    assert packed[Buffer.INPUT] * 2 == today[Buffer.INPUT]
    assert packed[Buffer.SCORES] == today[Buffer.SCORES]
    # SCORES rows of 24 keys are 6 vectors; 6 x 4 = 24 probabilities pack into 6 words
    assert packed[Buffer.PROBS] == 17 * 6 * 4


def test_doctests_pass():
    result = doctest.testmod(sw.scratchpad_regions)
    assert result.attempted > 0 and result.failed == 0
