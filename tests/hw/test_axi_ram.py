"""The on-chip AXI4 read RAM (``hw.memory.axi_ram``): words written through its write port come
back in INCR bursts in order, with ``rlast`` on each burst's last beat, under random ``rready``;
fed to the layer engine's ``WeightFetcher`` it delivers a stream of words bit-exact."""

import random

import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hw.memory.axi_ram import AxiReadRam, check_shape
from hw.memory.weight_fetcher import WeightFetcher

DEPTH = 64
WORD_BITS = 16


async def _fill(ctx, ram, words):
    for addr, word in enumerate(words):
        ctx.set(ram.write_addr, addr)
        ctx.set(ram.write_data, word)
        ctx.set(ram.write_en, 1)
        await ctx.tick()
    ctx.set(ram.write_en, 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_bursts_return_the_written_words_under_random_rready(seed):
    rng = random.Random(seed)
    words = [rng.randrange(1 << WORD_BITS) for _ in range(DEPTH)]
    bursts = [(3, 4), (7, 1), (20, 16), (60, 8)]      # (first word, beats); the last one wraps
    ram = AxiReadRam(data_width=WORD_BITS, depth=DEPTH)
    received = []

    async def bench(ctx):
        await _fill(ctx, ram, words)
        for first, beats in bursts:
            ctx.set(ram.axi.araddr, first * WORD_BITS // 8 + 1)    # low bits are ignored
            ctx.set(ram.axi.arlen, beats - 1)
            ctx.set(ram.axi.arvalid, 1)
            await ctx.tick().until(ram.axi.arready)
            ctx.set(ram.axi.arvalid, 0)
            burst = []
            while True:
                ready = rng.random() < 0.6
                ctx.set(ram.axi.rready, ready)
                _, _, valid, data, last = await ctx.tick().sample(
                    ram.axi.rvalid, ram.axi.rdata, ram.axi.rlast)
                if valid and ready:
                    burst.append(data)
                    if last:
                        break
            ctx.set(ram.axi.rready, 0)
            received.append(burst)

    sim = Simulator(ram)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert received == [[words[(first + i) % DEPTH] for i in range(beats)]
                        for first, beats in bursts]


def test_bursts_follow_each_other_with_rready_high():
    ram = AxiReadRam(data_width=WORD_BITS, depth=DEPTH)
    beats_at = []

    async def bench(ctx):
        ctx.set(ram.axi.rready, 1)
        ctx.set(ram.axi.araddr, 0)
        ctx.set(ram.axi.arlen, 3)
        ctx.set(ram.axi.arvalid, 1)
        await ctx.tick()                                   # AR handshake at cycle 0
        ctx.set(ram.axi.arvalid, 0)
        for cycle in range(1, 8):
            _, _, valid = await ctx.tick().sample(ram.axi.rvalid)
            if valid:
                beats_at.append(cycle)

    sim = Simulator(ram)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert beats_at == [2, 3, 4, 5]


def test_a_weight_fetcher_streams_the_ram_bit_exact():
    rng = random.Random(7)
    words = [rng.randrange(1 << WORD_BITS) for _ in range(DEPTH)]
    base_word, count, tile = 16, 40, 4
    m = Module()
    m.submodules.ram = ram = AxiReadRam(data_width=WORD_BITS, depth=DEPTH)
    m.submodules.fetcher = fetcher = WeightFetcher(
        word_shape=unsigned(WORD_BITS),
        depth=12, burst_beats=4, max_outstanding=2, tile_words=tile, max_words=DEPTH)
    wiring.connect(m, fetcher.axi, ram.axi)
    taken = []

    async def bench(ctx):
        await _fill(ctx, ram, words)
        ctx.set(fetcher.base, base_word * WORD_BITS // 8)
        ctx.set(fetcher.words, count)
        ctx.set(fetcher.start, 1)
        await ctx.tick()
        ctx.set(fetcher.start, 0)
        while len(taken) < count:
            ready = rng.random() < 0.5
            ctx.set(fetcher.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(fetcher.o.valid, fetcher.o.payload)
            if valid and ready:
                taken.append(payload)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert taken == words[base_word:base_word + count]


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="power of two of bytes"):
        check_shape(data_width=24, depth=16)
    with pytest.raises(ValueError, match="power of two of at least 2, not 48"):
        check_shape(data_width=16, depth=48)
