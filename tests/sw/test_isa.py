"""The instruction set (``sw.isa``): one field table gives the bytes of every instruction."""

import doctest
import hashlib

import pytest
from hypothesis import given, strategies as st

import sw.isa
from sw.image.program import decode_program, encode_program, layer_program
from sw.isa import (FIELDS, INSTRUCTION_BITS, INSTRUCTION_BYTES, INSTRUCTION_FIELDS, Buffer,
                    Instruction, Opcode, gather_arg2, gather_fields)
from sw.packing import ByteReader


def test_the_field_table_tiles_one_64_bit_word():
    assert [(f.name, f.offset, f.bits) for f in FIELDS] == [
        ("opcode", 0, 8), ("dst", 8, 8), ("src_a", 16, 8), ("src_b", 24, 8), ("arg", 32, 16),
        ("arg2", 48, 16)]
    assert INSTRUCTION_FIELDS == (("opcode", "u8"), ("dst", "u8"), ("src_a", "u8"),
                                  ("src_b", "u8"), ("arg", "u16"), ("arg2", "u16"))
    assert (INSTRUCTION_BITS, INSTRUCTION_BYTES) == (64, 8)


instructions = st.builds(
    Instruction, st.sampled_from(list(Opcode)), st.integers(0, 255), st.integers(0, 255),
    st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))


@given(instructions)
def test_the_bytes_are_the_fields_at_their_table_offsets(instruction):
    word = sum(getattr(instruction, f.name) << f.offset for f in FIELDS)
    section = encode_program([instruction])
    assert section[8:] == word.to_bytes(INSTRUCTION_BYTES, "little")
    assert decode_program(ByteReader(section)) == (instruction,)


def test_a_layer_program_encodes_as_version_1_did():
    """Bytes pinned from the encoder before the ISA moved to ``sw.isa`` (``git show a9fb700``)."""
    program = layer_program([1], tokens=17, token_keep=9, protected=2, fuse=True)
    section = encode_program(program)
    assert section[:8].hex() == "0100000010000000"                    # version 1, 16
    assert section[8:16].hex() == "0101" "00ff" "0000" "0000"          # LAYERNORM LN1 <- INPUT
    assert section[16:24].hex() == "0202" "01ff" "0000" "0000"         # GEMM Q <- LN1, q
    gather = program[9]
    assert gather.opcode == Opcode.TOKEN_GATHER and gather.dst == Buffer.RESIDUAL1
    assert section[8 + 9 * 8:8 + 10 * 8].hex() == "0809" "09ff" "0900" "0201"  # keep 9, 2 fused
    assert hashlib.sha256(section).hexdigest() == (
        "a00a9271075c570f2f69fae1f7be2d9f049099288bf695fbcccceb47ce5dcbd5")


def test_gather_arg2_round_trips_and_names_its_range():
    assert gather_fields(gather_arg2(7, True)) == (7, True)
    assert gather_arg2(255, False) == 255
    with pytest.raises(ValueError, match=r"^Protected tokens must lie in 1\.\.255, not 256$"):
        gather_arg2(256, True)


def test_doctests_pass():
    result = doctest.testmod(sw.isa)
    assert result.attempted >= 2 and result.failed == 0
