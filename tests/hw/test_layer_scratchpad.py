# amaranth: UnusedElaboratable=no
"""``hw.layer.scratchpad``: the scratchpad's ports go to the owner the sequencer names."""

import pytest

from hw.layer.scratchpad import CLIENTS, Owner, ScratchClient, ScratchpadArbiter, ScratchRead
from sw.engine_params import ElementType, ScratchMemory

LANES = 4


def test_every_owner_but_load_has_a_client_port():
    arbiter = ScratchpadArbiter(depth=16, lanes=LANES)
    assert [owner.name for owner in CLIENTS] == ["GEMM", "LAYERNORM", "SOFTMAX", "GATHER"]
    for owner in CLIENTS:
        assert arbiter.signature.members[owner.name.lower()].signature.flip() == \
            ScratchClient(depth=16, lanes=LANES)
    assert arbiter.signature.members["stager"].signature.flip() == \
        ScratchRead(depth=16, lanes=LANES)
    assert ScratchRead(depth=16, lanes=LANES) != ScratchRead(depth=8, lanes=LANES)


def test_only_the_owner_writes_and_its_reads_see_the_memory(run_simulation):
    arbiter = ScratchpadArbiter(depth=16, lanes=LANES)
    gemm, softmax = arbiter.client(Owner.GEMM), arbiter.client(Owner.SOFTMAX)

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
        # another client reads through both ports
        ctx.set(arbiter.owner, Owner.SOFTMAX)
        ctx.set(softmax.read_a.addr, 5)
        ctx.set(softmax.read_b.addr, 3)
        await ctx.tick()
        assert [int(v) for v in ctx.get(softmax.read_a.data)] == [9, 9, 9, 9]
        assert [int(v) for v in ctx.get(softmax.read_b.data)] == [1, -2, 3, -4]
        # staging: port a follows the stager, whoever owns the ports
        ctx.set(arbiter.staging, 1)
        ctx.set(arbiter.stager.addr, 3)
        ctx.set(softmax.write.addr, 3)
        ctx.set(softmax.write.en, 1)             # ignored while staging
        await ctx.tick()
        assert [int(v) for v in ctx.get(arbiter.stager.data)] == [1, -2, 3, -4]
        ctx.set(softmax.write.en, 0)
        ctx.set(arbiter.staging, 0)
        for address, expected in ((6, [0, 0, 0, 0]), (3, [1, -2, 3, -4])):
            ctx.set(arbiter.readback.addr, address)
            await ctx.tick()
            assert [int(v) for v in ctx.get(arbiter.readback.data)] == expected

    run_simulation(arbiter, testbench)


#: an int16, an int8 and an unsigned 8-bit memory at flat addresses 0.., 8.., 16.. (3 offset bits)
PACKED = (ScratchMemory(0, ElementType(16, True), 8), ScratchMemory(1, ElementType(8, True), 5),
          ScratchMemory(2, ElementType(8, False), 2))


def test_packed_memories_keep_each_lanes_low_bits_and_extend_them(run_simulation):
    arbiter = ScratchpadArbiter(depth=18, lanes=LANES, memories=PACKED, offset_bits=3)
    gemm = arbiter.client(Owner.GEMM)
    writes = {2: [-300, 300, -1, 32767], 10: [-128, 127, -1, 5], 17: [255, 0, 128, 1]}

    async def testbench(ctx):
        ctx.set(arbiter.owner, Owner.LOAD)
        ctx.set(arbiter.load.en, 1)
        for address, values in writes.items():
            ctx.set(arbiter.load.addr, address)
            ctx.set(arbiter.load.data, values)
            await ctx.tick()
        ctx.set(arbiter.load.en, 0)
        # vector 1 of memory 2 was written, vector 1 of memories 0 and 1 was not
        for address in (1, 1 << 3 | 1):
            ctx.set(arbiter.readback.addr, address)
            await ctx.tick()
            assert [int(v) for v in ctx.get(arbiter.readback.data)] == [0] * LANES
        # reads switch memory every cycle: each datum comes from the previous cycle's address
        ctx.set(arbiter.owner, Owner.GEMM)
        order = [2, 10, 17, 10, 2, 17]
        ctx.set(gemm.read_a.addr, order[0])
        ctx.set(gemm.read_b.addr, 17)
        for previous, address in zip(order, order[1:] + order[:1]):
            await ctx.tick()
            ctx.set(gemm.read_a.addr, address)
            assert [int(v) for v in ctx.get(gemm.read_a.data)] == writes[previous]
            assert [int(v) for v in ctx.get(gemm.read_b.data)] == writes[17]
        # a write of values wider than its memory keeps each lane's low bits
        ctx.set(gemm.write.addr, 11)
        ctx.set(gemm.write.data, [0x1FF, -129, 0x7F, 0])
        ctx.set(gemm.write.en, 1)
        await ctx.tick()
        ctx.set(gemm.write.en, 0)
        ctx.set(arbiter.readback.addr, 11)
        await ctx.tick()
        assert [int(v) for v in ctx.get(arbiter.readback.data)] == [-1, 127, 127, 0]

    run_simulation(arbiter, testbench)


@pytest.mark.parametrize("arguments,message", [
    ({"depth": 0, "lanes": 4}, "Scratchpad depth must be a positive integer, not 0"),
    ({"depth": 8, "lanes": "4"}, "Scratchpad lanes must be a positive integer, not '4'"),
    ({"depth": 18, "lanes": 4, "memories": PACKED},
     "Scratchpad offset bits must be a positive integer, not None"),
    ({"depth": 18, "lanes": 4, "memories": PACKED, "offset_bits": 2},
     r"Scratchpad memory 0 must be a ScratchMemory with index 0, 1\.\.4 vectors and 1\.\.32 "
     r"bits, not ScratchMemory\(index=0, element=ElementType\(bits=16, signed=True\), "
     r"depth=8\)"),
])
def test_bad_shapes_are_refused(arguments, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        ScratchpadArbiter(**arguments)
