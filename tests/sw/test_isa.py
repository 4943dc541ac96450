"""The instruction set (``sw.isa``): one field table gives the bytes of every instruction."""

import doctest

import pytest
from hypothesis import given, strategies as st

import sw.isa
from sw.image.program import decode_program, encode_program, layer_program
from sw.isa import (FIELDS, FIRST, INSTRUCTION_BITS, INSTRUCTION_BYTES, INSTRUCTION_FIELDS,
                    SECOND, Epilogue, Instruction, Opcode, gather_arg2, gather_fields, gemm_arg2,
                    gemm_fields)
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


def test_a_layer_program_encodes_as_version_2_says():
    """Every byte written out by hand from the field table and the version-2 numbering."""
    program = layer_program([1], tokens=17, token_keep=9, protected=2, fuse=True)
    section = encode_program(program)
    words = [section[8 + 8 * n:16 + 8 * n].hex() for n in range(len(program))]
    assert section[:8].hex() == "02000000" "0d000000"        # version 2, 13 instructions
    assert words[0] == "0101" "00ff" "0000" "0000"          # LAYERNORM LN1 <- INPUT, set 0
    assert words[1] == "0202" "01ff" "0000" "0000"          # GEMM Q <- LN1, q
    assert words[7] == "0208" "0700" "0300" "0200"          # GEMM RESIDUAL1 <- CONTEXT + INPUT
    assert words[8] == "0608" "08ff" "0900" "0201"          # TOKEN_GATHER keep 9, 2 + fused
    assert words[9] == "0109" "08ff" "0100" "0000"          # LAYERNORM LN2 <- RESIDUAL1, set 1
    assert words[10] == "020a" "09ff" "0400" "0100"         # GEMM GELU <- LN2, fc1, GELU
    assert words[11] == "020b" "0a08" "0500" "0600"         # GEMM OUTPUT <- GELU + RESIDUAL1
    assert words[12] == "00ff" "ffff" "0000" "0000"         # END


def test_gemm_arg2_round_trips_and_names_its_range():
    for epilogue in Epilogue:
        for residual_set in (FIRST, SECOND):
            assert gemm_fields(gemm_arg2(epilogue, residual_set)) == (epilogue, residual_set)
    assert gemm_arg2(Epilogue.RESIDUAL, SECOND) == 0b110
    with pytest.raises(ValueError, match=r"^Residual set must be 0 or 1, not 2$"):
        gemm_arg2(Epilogue.RESIDUAL, 2)
    with pytest.raises(ValueError, match="3 is not a valid Epilogue"):
        gemm_fields(3)


def test_gather_arg2_round_trips_and_names_its_range():
    assert gather_fields(gather_arg2(7, True)) == (7, True)
    assert gather_arg2(255, False) == 255
    with pytest.raises(ValueError, match=r"^Protected tokens must lie in 1\.\.255, not 256$"):
        gather_arg2(256, True)


def test_doctests_pass():
    result = doctest.testmod(sw.isa)
    assert result.attempted >= 2 and result.failed == 0
