# amaranth: UnusedElaboratable=no
"""``hw.layer.loader``: load commands fill the program, gamma / beta and constants; the
instruction layout is ``sw.isa``'s field table."""

import doctest

from amaranth.hdl import unsigned
from amaranth.lib import data
from hypothesis import given, settings, strategies as st

import hw.layer.loader
from hw.layer.loader import EngineLoader, EngineTarget, instruction_layout
from sw.image.program import encode_program
from sw.isa import FIELDS, Instruction, Opcode

LOAD = data.StructLayout({"target": EngineTarget, "addr": range(256), "data": unsigned(64)})
CONSTANTS = data.StructLayout({"tokens": unsigned(8), "wide": unsigned(40)})


def _loader():
    return EngineLoader(load_layout=LOAD, constants_layout=CONSTANTS, program_depth=8,
                        affine_shape=unsigned(16), affine_depth=4, scratch_depth=16, lanes=2,
                        gemm_command=unsigned(24), table_width=8)


def test_the_layout_has_the_tables_fields_at_their_offsets():
    layout = instruction_layout()
    assert layout.size == 64
    assert [(name, layout[name].offset, layout[name].shape.width) for name, _ in layout] == \
        [(f.name, f.offset, f.bits) for f in FIELDS]


@settings(max_examples=50, deadline=None)
@given(st.builds(Instruction, st.sampled_from(list(Opcode)), st.integers(0, 255),
                 st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF),
                 st.integers(0, 0xFFFF)))
def test_an_encoded_instruction_is_the_layouts_word(instruction):
    word = int.from_bytes(encode_program([instruction])[8:], "little")
    assert instruction_layout().const(instruction.fields()).as_value().value == word


def test_commands_fill_the_memories_and_pass_on(run_simulation):
    loader = _loader()
    word = int.from_bytes(encode_program([Instruction(Opcode.GEMM, 2, 1, arg=4)])[8:], "little")

    async def testbench(ctx):
        def command(target, addr, value):
            ctx.set(loader.load.payload, {"target": target, "addr": addr, "data": value})
            ctx.set(loader.load.valid, 1)
        command(EngineTarget.PROGRAM, 5, word)
        await ctx.tick()
        command(EngineTarget.AFFINE, 3, 0xBEEF)
        await ctx.tick()
        command(EngineTarget.CONSTANTS, 0, 0x1234_5611)
        await ctx.tick()
        command(EngineTarget.CONSTANTS, 1, 0xAB)
        await ctx.tick()
        command(EngineTarget.SCRATCH, 9, 7)
        assert (ctx.get(loader.scratch.en), ctx.get(loader.scratch.addr)) == (1, 9)
        assert ctx.get(loader.gemm.valid) == 0
        command(EngineTarget.GEMM, 0, 0x123456)
        assert (ctx.get(loader.gemm.valid), ctx.get(loader.gemm.payload)) == (1, 0x123456)
        assert ctx.get(loader.scratch.en) == 0
        ctx.set(loader.running, 1)                # no load while running
        assert ctx.get(loader.load.ready) == 0 and ctx.get(loader.gemm.valid) == 0
        ctx.set(loader.load.valid, 0)
        ctx.set(loader.program_addr, 5)
        ctx.set(loader.affine_addr, 3)
        await ctx.tick()
        instruction = ctx.get(loader.instruction)
        assert (instruction.opcode, instruction.dst, instruction.src_a, instruction.arg) == \
            (Opcode.GEMM, 2, 1, 4)
        assert ctx.get(loader.affine_data) == 0xBEEF
        assert ctx.get(loader.constants.tokens) == 0x11
        assert ctx.get(loader.constants.wide) == 0xAB_1234_56

    run_simulation(loader, testbench)


def test_doctests_pass():
    result = doctest.testmod(hw.layer.loader)
    assert result.attempted >= 2 and result.failed == 0
