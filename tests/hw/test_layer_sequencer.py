# amaranth: UnusedElaboratable=no
"""``hw.layer.sequencer`` inside the tiny layer engine (Amaranth simulator): END and an
opcode the engine does not run. Whole programs are co-simulated in sim/test_layer_engine.py."""

import pytest

from hw.layer.engine import EngineTarget, LayerEngine
from sw.config import load_config
from sw.cycle_model.layer_engine import DISPATCH_CYCLES
from sw.image.program import encode_program
from sw.isa import INSTRUCTION_BYTES, Instruction, Opcode


def _word(instruction) -> int:
    return int.from_bytes(encode_program([instruction])[8:8 + INSTRUCTION_BYTES], "little")


@pytest.mark.parametrize("word,error", [(_word(Instruction(Opcode.END)), 0),
                                        (0x7F, 1)])      # opcode 127 is not an instruction
def test_a_program_ends_with_done_and_error_only_for_an_unknown_opcode(run_simulation, word,
                                                                       error):
    engine = LayerEngine(load_config("tiny"))
    seen = {}

    async def testbench(ctx):
        ctx.set(engine.load.payload, {"target": EngineTarget.PROGRAM, "addr": 0, "data": word})
        ctx.set(engine.load.valid, 1)
        await ctx.tick()
        ctx.set(engine.load.valid, 0)
        ctx.set(engine.job.valid, 1)
        await ctx.tick()
        ctx.set(engine.job.valid, 0)
        for _ in range(10):
            if ctx.get(engine.done):
                break
            await ctx.tick()
        seen.update(done=ctx.get(engine.done), error=ctx.get(engine.error),
                    cycles=ctx.get(engine.cycles))

    run_simulation(engine, testbench)
    assert (seen["done"], seen["error"]) == (1, error)
    assert seen["cycles"] == DISPATCH_CYCLES              # fetch and decode, then done
