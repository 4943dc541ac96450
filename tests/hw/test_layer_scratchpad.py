# amaranth: UnusedElaboratable=no
"""``hw.layer.scratchpad``: the scratchpad's ports go to the owner the sequencer names."""

import pytest

from hw.layer.scratchpad import CLIENTS, Owner, ScratchClient, ScratchpadArbiter, ScratchRead

LANES = 4


def test_every_owner_but_load_has_a_client_port():
    arbiter = ScratchpadArbiter(depth=16, lanes=LANES)
    assert [owner.name for owner in CLIENTS] == ["GEMM", "LAYERNORM", "SOFTMAX", "GELU",
                                                 "RESIDUAL", "GATHER"]
    for owner in CLIENTS:
        assert arbiter.signature.members[owner.name.lower()].signature.flip() == \
            ScratchClient(depth=16, lanes=LANES)
    assert arbiter.signature.members["stager"].signature.flip() == \
        ScratchRead(depth=16, lanes=LANES)
    assert ScratchRead(depth=16, lanes=LANES) != ScratchRead(depth=8, lanes=LANES)


def test_only_the_owner_writes_and_its_reads_see_the_memory(run_simulation):
    arbiter = ScratchpadArbiter(depth=16, lanes=LANES)
    gemm, residual = arbiter.client(Owner.GEMM), arbiter.client(Owner.RESIDUAL)

    async def testbench(ctx):
        # the load port writes while no instruction runs; a client's write is ignored
        ctx.set(arbiter.owner, Owner.LOAD)
        ctx.set(arbiter.load.addr, 3)
        ctx.set(arbiter.load.data, [1, -2, 3, -4])
        ctx.set(arbiter.load.en, 1)
        ctx.set(gemm.write.addr, 5)
        ctx.set(gemm.write.data, [9, 9, 9, 9])
        ctx.set(gemm.write.en, 1)
        await ctx.tick()
        ctx.set(arbiter.load.en, 0)
        # the GEMM owns the ports: its write lands, the load port's does not
        ctx.set(arbiter.owner, Owner.GEMM)
        ctx.set(arbiter.load.addr, 6)
        ctx.set(arbiter.load.en, 1)
        ctx.set(gemm.read_a.addr, 3)
        await ctx.tick()
        assert [int(v) for v in ctx.get(gemm.read_a.data)] == [1, -2, 3, -4]
        ctx.set(gemm.write.en, 0)
        ctx.set(arbiter.load.en, 0)
        # the residual reads through both ports
        ctx.set(arbiter.owner, Owner.RESIDUAL)
        ctx.set(residual.read_a.addr, 5)
        ctx.set(residual.read_b.addr, 3)
        await ctx.tick()
        assert [int(v) for v in ctx.get(residual.read_a.data)] == [9, 9, 9, 9]
        assert [int(v) for v in ctx.get(residual.read_b.data)] == [1, -2, 3, -4]
        # staging: port a follows the stager, whoever owns the ports
        ctx.set(arbiter.staging, 1)
        ctx.set(arbiter.stager.addr, 3)
        ctx.set(residual.write.addr, 3)
        ctx.set(residual.write.en, 1)             # ignored while staging
        await ctx.tick()
        assert [int(v) for v in ctx.get(arbiter.stager.data)] == [1, -2, 3, -4]
        ctx.set(residual.write.en, 0)
        ctx.set(arbiter.staging, 0)
        for address, expected in ((6, [0, 0, 0, 0]), (3, [1, -2, 3, -4])):
            ctx.set(arbiter.readback.addr, address)
            await ctx.tick()
            assert [int(v) for v in ctx.get(arbiter.readback.data)] == expected

    run_simulation(arbiter, testbench)


@pytest.mark.parametrize("arguments,message", [
    ({"depth": 0, "lanes": 4}, "Scratchpad depth must be a positive integer, not 0"),
    ({"depth": 8, "lanes": "4"}, "Scratchpad lanes must be a positive integer, not '4'"),
])
def test_bad_shapes_are_refused(arguments, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        ScratchpadArbiter(**arguments)
