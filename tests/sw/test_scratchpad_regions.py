"""Live ranges, first-fit sharing and the overwrite check of the scratchpad's regions."""

import dataclasses
import doctest

import pytest

import sw.scratchpad_regions

from sw.config import load_config
from sw.engine_params import EngineParams
from sw.image.program import layer_program
from sw.isa import SECOND, Buffer, Instruction, Opcode
from sw.scratchpad_regions import (LiveRange, disjoint_pairs, first_fit, intact_at_end,
                                   live_ranges, overwritten_reads, peak_live, program_of)

TINY = load_config("tiny")


def test_live_ranges_of_a_two_head_program():
    program = layer_program([0, 1], tokens=17, token_keep=17)
    ranges = live_ranges(program)
    # positions: 0 LN1, 1-3 Q K V, 4-9 two heads, 10 O (+ INPUT), 11 LN2, 12 FC1 (GELU),
    # 13 FC2 (+ RESIDUAL1), 14 END
    assert ranges == {
        Buffer.INPUT: LiveRange(-1, 10), Buffer.LN1: LiveRange(0, 3),
        Buffer.Q: LiveRange(1, 7), Buffer.K: LiveRange(2, 7), Buffer.V: LiveRange(3, 9),
        Buffer.SCORES: LiveRange(4, 8), Buffer.PROBS: LiveRange(5, 9),
        Buffer.CONTEXT: LiveRange(6, 10), Buffer.RESIDUAL1: LiveRange(10, 13),
        Buffer.LN2: LiveRange(11, 12), Buffer.GELU: LiveRange(12, 13),
        Buffer.OUTPUT: LiveRange(13, 15)}


def test_an_in_place_gather_extends_its_buffer():
    with_gather = live_ranges(layer_program([0], tokens=17, token_keep=8))
    assert with_gather[Buffer.RESIDUAL1] == LiveRange(7, 11)    # 7 O, 8 GATHER .. 11 FC2


def test_reading_an_unwritten_buffer_is_refused():
    program = [Instruction(Opcode.GEMM, Buffer.GELU, Buffer.LN2, arg=4)]
    with pytest.raises(ValueError, match=r"^Instruction 0 \(GEMM GELU <- LN2 \(arg 4, arg2 0\)"
                                         r"\) reads LN2 before anything writes it$"):
        live_ranges(program)


def test_overlap_is_inclusive():
    assert LiveRange(0, 3).overlaps(LiveRange(3, 5))
    assert not LiveRange(0, 2).overlaps(LiveRange(3, 5))


def test_disjoint_pairs_of_the_densest_deit_b16_program():
    ranges = live_ranges(program_of(load_config("deit_b16")))
    pairs = disjoint_pairs(ranges)
    assert len(ranges) == 12 and len(pairs) == 34
    assert (Buffer.LN1, Buffer.SCORES) in pairs and (Buffer.Q, Buffer.K) not in pairs
    for a, b in pairs:
        assert not ranges[a].overlaps(ranges[b])


def test_peak_live_is_the_largest_sum_over_positions():
    ranges = {Buffer.INPUT: LiveRange(-1, 1), Buffer.LN1: LiveRange(0, 0),
              Buffer.Q: LiveRange(1, 2)}
    sizes = {Buffer.INPUT: 10, Buffer.LN1: 5, Buffer.Q: 7}
    assert peak_live(ranges, sizes) == (1, 17)     # 0: 15, 1: 17, 2: 7


def test_first_fit_places_the_largest_first_at_the_lowest_free_offset():
    ranges = {Buffer.INPUT: LiveRange(-1, 2), Buffer.LN1: LiveRange(0, 1),
              Buffer.Q: LiveRange(2, 4), Buffer.K: LiveRange(3, 4), Buffer.V: LiveRange(5, 6)}
    sizes = {Buffer.INPUT: 5, Buffer.LN1: 3, Buffer.Q: 3, Buffer.K: 2, Buffer.V: 10}
    # V (10) at 0; INPUT (5) overlaps nothing placed: 0; LN1 and Q (3) live with INPUT: 5;
    # Q is live with K's later placement only; K (2) live with INPUT and Q: after both
    assert first_fit(sizes, ranges) == {Buffer.V: 0, Buffer.INPUT: 0, Buffer.LN1: 5,
                                        Buffer.Q: 5, Buffer.K: 0}
    # a buffer without a live range is live throughout
    assert first_fit({Buffer.LN1: 2, Buffer.Q: 2}, {Buffer.LN1: LiveRange(0, 0)}) == \
        {Buffer.LN1: 0, Buffer.Q: 2}


PROGRAMS = {
    "densest": lambda m: program_of_model(m),
    "two heads": lambda m: layer_program([0, m.num_heads - 1], tokens=m.tokens,
                                         token_keep=m.tokens),
    "one head, gather": lambda m: layer_program([1], tokens=m.tokens, token_keep=m.tokens // 2,
                                                fuse=False),
    # post-LN (BERT) programs run on the memory map the pre-LN densest program laid out
    "post-LN densest": lambda m: layer_program(range(m.num_heads), tokens=m.tokens,
                                               token_keep=1, norm="post"),
    "post-LN two heads": lambda m: layer_program([0, m.num_heads - 1], tokens=m.tokens,
                                                 token_keep=m.tokens, norm="post"),
    "post-LN one head, gather": lambda m: layer_program(
        [1], tokens=m.tokens, token_keep=m.tokens // 2, fuse=False, norm="post"),
}


def program_of_model(m):
    return layer_program(range(m.num_heads), tokens=m.tokens, token_keep=1)


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("name", ["tiny", "deit_b16", "bert_base"])
def test_no_program_reads_a_vector_another_buffer_overwrote(name, program):
    config = load_config(name)
    mm = EngineParams.from_config(config).memory_map
    assert len({r.base for r in mm.regions.values()}) < len(mm.regions)     # regions share
    assert overwritten_reads(PROGRAMS[program](config.model), mm) == []


def test_an_unsafe_memory_map_is_caught():
    mm = EngineParams.from_config(TINY).memory_map
    regions = dict(mm.regions)
    regions[Buffer.LN1] = regions[Buffer.INPUT]              # INPUT: live until RESIDUAL1
    regions[Buffer.CONTEXT] = dataclasses.replace(regions[Buffer.V], base=regions[Buffer.V].base
                                                  + regions[Buffer.V].stride)
    unsafe = dataclasses.replace(mm, regions=regions)
    program = layer_program([0, 1], tokens=17, token_keep=8)
    assert overwritten_reads(program, unsafe) == [
        "instruction 0 (LAYERNORM LN1 <- INPUT (arg 0, arg2 0)) reads INPUT, but its "
        "destination LN1 overwrites it",
        "instruction 6 (ATTENTION_CONTEXT CONTEXT <- PROBS, V (arg 0, arg2 0)) reads V, but "
        "its destination CONTEXT overwrites it",
        "instruction 9 (ATTENTION_CONTEXT CONTEXT <- PROBS, V (arg 1, arg2 1)) reads V, but "
        "256 of its vectors hold CONTEXT",
        "instruction 9 (ATTENTION_CONTEXT CONTEXT <- PROBS, V (arg 1, arg2 1)) reads V, but "
        "its destination CONTEXT overwrites it",
        "instruction 10 (GEMM RESIDUAL1 <- CONTEXT, INPUT (arg 3, arg2 2)) reads INPUT, but "
        "272 of its vectors hold LN1"]


def test_the_readback_of_an_overwritten_output_is_caught():
    mm = EngineParams.from_config(TINY).memory_map
    program = layer_program([0], tokens=17, token_keep=17)
    ln2_again = Instruction(Opcode.LAYERNORM, Buffer.LN2, Buffer.RESIDUAL1, arg=SECOND)
    on_ln2 = dataclasses.replace(mm, regions={**mm.regions, Buffer.OUTPUT: mm.regions[Buffer.LN2]})
    assert overwritten_reads(program, on_ln2) == []
    assert overwritten_reads((*program[:-1], ln2_again, program[-1]), on_ln2) == [
        "the read-back reads OUTPUT, but 272 of its vectors hold LN2"]


def test_intact_at_end_lists_what_a_testbench_can_still_read_back():
    mm = EngineParams.from_config(TINY).memory_map
    # tiny's int8 memory (vectors): LN1, CONTEXT at 0; Q at 272; K, LN2 at 544; V at 816;
    # GELU 0..544 covers LN1, CONTEXT and Q, LN2 covers K; OUTPUT takes INPUT's int16 vectors
    assert intact_at_end(layer_program([0, 1], tokens=17, token_keep=17), mm) == {
        Buffer.V, Buffer.SCORES, Buffer.PROBS, Buffer.RESIDUAL1, Buffer.LN2, Buffer.GELU,
        Buffer.OUTPUT}
    # after a gather keeping one token, GELU writes one row (32 vectors): Q survives too
    assert intact_at_end(program_of(TINY), mm) == {
        Buffer.Q, Buffer.V, Buffer.SCORES, Buffer.PROBS, Buffer.RESIDUAL1, Buffer.LN2,
        Buffer.GELU, Buffer.OUTPUT}


def test_doctests_pass():
    result = doctest.testmod(sw.scratchpad_regions)
    assert result.attempted > 0 and result.failed == 0
