"""The board's UART host bridge at the bit level (Amaranth simulator): bytes sent as serial
frames reach the engine's load port field by field, start a job, and read back a scratchpad
vector, ``done`` and the cycle count; framing and protocol errors are answered as documented."""

import pytest
from amaranth import Module, Signal, Value, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.board.top import WEIGHT_TARGET, BoardTop, weight_load
from hw.board.uart import UartRx, UartTx, baud_divisor
from hw.board.uart_bridge import UNKNOWN_COMMAND, Command, HostBridge
from hw.layer.engine import LayerEngine
from hw.layer.loader import EngineTarget
from sw.config import load_config

from .conftest import simulate

DIVISOR = 5                     # clock cycles per bit: odd, to catch off-by-one sampling
JOB_CYCLES = 13                 # the fake engine's job length


class FakeEngine(wiring.Component):
    """The layer engine's host-facing ports with the tiny engine's widths: SCRATCH loads
    write a memory that ``read_addr`` reads (registered, like the engine's); every accepted
    load is recorded by the testbench; a job raises ``done`` after ``JOB_CYCLES`` cycles and
    counts them in ``cycles``; ``load.ready`` is low every third cycle (back-pressure). With
    ``axi``, the engine's AXI read port too, left for the testbench to drive (as the engine's
    weight fetcher would)."""

    def __init__(self, engine: LayerEngine, *, axi: bool = False):
        self.load_layout = engine.load_layout
        self.depth = 16
        super().__init__({
            "load": In(stream.Signature(self.load_layout)),
            "job": In(stream.Signature(unsigned(1))),
            "done": Out(1), "error": Out(1),
            "cycles": Out(len(Value.cast(engine.cycles))),
            "read_addr": In(len(Value.cast(engine.read_addr))),
            "read_data": Out(len(Value.cast(engine.read_data))),
            **({"axi": Out(engine.signature.members["axi"].signature)} if axi else {}),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.scratch = scratch = memory.Memory(
            shape=len(self.read_data), depth=self.depth, init=[])
        write, read = scratch.write_port(), scratch.read_port()
        phase = Signal(range(3))
        m.d.sync += phase.eq(phase + 1)
        with m.If(phase == 2):
            m.d.sync += phase.eq(0)
        m.d.comb += self.load.ready.eq(phase != 2)
        m.d.comb += [write.addr.eq(self.load.payload.addr), write.data.eq(self.load.payload.data),
                     write.en.eq(self.load.valid & self.load.ready
                                 & (self.load.payload.target == EngineTarget.SCRATCH)),
                     read.addr.eq(self.read_addr), self.read_data.eq(read.data)]
        running = Signal()
        m.d.comb += self.job.ready.eq(~running)
        with m.If(self.job.valid & self.job.ready):
            m.d.sync += [running.eq(1), self.done.eq(0), self.cycles.eq(0)]
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(self.cycles == JOB_CYCLES - 1):
                m.d.sync += [running.eq(0), self.done.eq(1)]
        return m


@pytest.fixture(scope="module")
def tiny_engine():
    """The tiny engine, for its port widths only (it is never elaborated)."""
    engine = LayerEngine(load_config("tiny"))
    engine._MustUse__silence = True     # amaranth's own switch for "created but never used"
    return engine


def _le(value: int, count: int) -> list[int]:
    return list(value.to_bytes(count, "little"))


async def _send(ctx, line, byte: int, divisor: int = DIVISOR, stop: int = 1):
    """One 8N1 frame on ``line``: start bit, 8 data bits LSB first, stop bit (``stop``)."""
    for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [stop]:
        ctx.set(line, bit)
        await ctx.tick().repeat(divisor)
    ctx.set(line, 1)


async def _receive(ctx, line, divisor: int = DIVISOR, timeout: int = 5000) -> int:
    """One 8N1 frame from ``line``, sampled mid-bit; checks the start and stop bits."""
    for _ in range(timeout):
        if ctx.get(line) == 0:
            break
        await ctx.tick()
    else:
        raise AssertionError(f"no start bit in {timeout} cycles")
    await ctx.tick().repeat(divisor // 2)
    assert ctx.get(line) == 0, "start bit too short"
    value = 0
    for i in range(8):
        await ctx.tick().repeat(divisor)
        value |= ctx.get(line) << i
    await ctx.tick().repeat(divisor)
    assert ctx.get(line) == 1, "stop bit low"
    return value


def test_baud_divisor():
    assert baud_divisor(25e6, 115200) == 217
    assert baud_divisor(25e6, 1_000_000) == 25
    with pytest.raises(ValueError, match=r"^Baud rate 10000000 is too fast for a 2.5e\+07 Hz "
                                         r"clock: 2.50 cycles per bit, at least 4 needed$"):
        baud_divisor(25e6, 10_000_000)
    with pytest.raises(ValueError, match=r"^Baud rate 5500000 on a 2.5e\+07 Hz clock: divisor 5 "
                                         r"misses it by 9.1%, more than 2%$"):
        baud_divisor(25e6, 5_500_000)
    with pytest.raises(ValueError, match=r"^Baud rate must be a positive integer, not 0$"):
        baud_divisor(25e6, 0)


def test_divisor_and_layout_checks(tiny_engine):
    with pytest.raises(ValueError, match=r"^Divisor must be an integer of at least 4, not 2$"):
        UartRx(divisor=2)
    with pytest.raises(ValueError, match=r"^Divisor must be an integer of at least 4, not 3$"):
        UartTx(divisor=3)
    with pytest.raises(TypeError, match=r"^Load layout must be a StructLayout with fields "
                                        r"target, addr and data, not "):
        HostBridge(load_layout=data.StructLayout({"addr": 4}), read_addr_bits=4,
                   read_data_bits=8, counter_bits=32)
    with pytest.raises(ValueError, match=r"^Read data width must be a positive integer, not 0$"):
        HostBridge(load_layout=tiny_engine.load_layout, read_addr_bits=4, read_data_bits=0,
                   counter_bits=32)


def test_uart_loopback_every_byte_and_a_framing_error():
    """Every byte value through the receiver, and back through the transmitter; a frame with a
    low stop bit is dropped and flagged, and the next frame is still received."""
    m = Module()
    m.submodules.rx = rx = UartRx(divisor=DIVISOR)
    m.submodules.tx = tx = UartTx(divisor=DIVISOR)
    wiring.connect(m, rx.bytes, tx.bytes)
    line_in = Signal(init=1)
    m.d.comb += rx.rx.eq(line_in)
    echoed = []

    async def sender(ctx):
        await ctx.tick().repeat(3)
        for byte in range(256):
            await _send(ctx, line_in, byte)
        await _send(ctx, line_in, 0x5A, stop=0)
        await ctx.tick().repeat(3 * DIVISOR)
        await _send(ctx, line_in, 0xA5)

    async def receiver(ctx):
        for _ in range(257):
            echoed.append(await _receive(ctx, tx.tx))
        assert ctx.get(rx.framing_error) == 1 and ctx.get(rx.overrun) == 0

    simulate(m, sender, receiver, name="uart_loopback")
    assert echoed == list(range(256)) + [0xA5]


def test_bridge_loads_starts_and_reads_back_at_the_bit_level(tiny_engine):
    engine = FakeEngine(tiny_engine)
    top = BoardTop(engine, divisor=DIVISOR)
    bridge = top.bridge
    widths = bridge.field_bytes
    layout = tiny_engine.load_layout
    addr_bits, data_bits = layout["addr"].width, layout["data"].width
    read_bits = len(engine.read_data)
    # a scratchpad vector of every bit set in a pattern, a program word, a constants chunk
    vector = int.from_bytes(bytes(range(1, 1 + -(-read_bits // 8))), "little") % (1 << read_bits)
    loads = [(EngineTarget.SCRATCH, 5, vector),
             (EngineTarget.PROGRAM, 3, (1 << data_bits) - 1),
             (EngineTarget.CONSTANTS, (1 << addr_bits) - 1, 0x0123456789ABCDEF),
             (EngineTarget.SCRATCH, 9, 0)]
    seen_loads = []
    answers = []

    def command(code, *fields):
        return [code] + [byte for value, count in fields for byte in _le(value, count)]

    script = [command(Command.INFO)]
    for target, addr, value in loads:
        script.append(command(Command.LOAD, (target.value, 1), (addr, widths["addr"]),
                              (value, widths["data"])))
    script += [command(Command.STATUS), command(Command.START),
               command(Command.READ, (5, widths["read_addr"])),
               command(Command.READ, (9, widths["read_addr"])), command(0x00)]
    expected_answer_bytes = [5, 1, 1, 1, 1, 1, 1, widths["read_data"], widths["read_data"], 1]

    async def host(ctx):
        await ctx.tick().repeat(3)
        for message, answer_bytes in zip(script, expected_answer_bytes):
            for byte in message:
                await _send(ctx, top.uart_rx, byte)
            answers.append([await _receive(ctx, top.uart_tx) for _ in range(answer_bytes)])
        # the job is over by now: done, and its cycles
        await ctx.tick().repeat(JOB_CYCLES)
        for message, count in ((command(Command.STATUS), 1),
                               (command(Command.CYCLES), widths["cycles"])):
            for byte in message:
                await _send(ctx, top.uart_rx, byte)
            answers.append([await _receive(ctx, top.uart_tx) for _ in range(count)])

    async def load_monitor(ctx):
        sampled = ctx.tick().sample(engine.load.valid, engine.load.ready, engine.load.payload)
        async for _clock, _reset, valid, ready, payload in sampled:
            if valid and ready:
                seen_loads.append((payload.target, payload.addr, payload.data))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(load_monitor, background=True)
    sim.run()

    assert answers[0] == [widths[key] for key in ("addr", "data", "read_addr", "read_data",
                                                  "cycles")]
    assert answers[1:5] == [[Command.LOAD]] * 4
    assert seen_loads == [(target, addr, value) for target, addr, value in loads]
    assert answers[5] == [0]                        # not done before the job
    assert answers[6] == [Command.START]
    assert answers[7] == _le(vector, widths["read_data"])
    assert answers[8] == [0] * widths["read_data"]
    assert answers[9] == [UNKNOWN_COMMAND]
    assert answers[10] == [1]                       # done, no error
    assert answers[11] == _le(JOB_CYCLES, widths["cycles"])


def test_weight_loads_fill_the_board_weight_ram_that_the_engine_reads_over_axi(tiny_engine):
    """LOADs of target WEIGHT_TARGET go to the board's AXI RAM (the engine sees none); an INCR
    burst on the engine's AXI port returns them in order."""
    engine = FakeEngine(tiny_engine, axi=True)
    top = BoardTop(engine, divisor=DIVISOR, weight_words=12)          # a 16-word RAM
    assert top.weights.depth == 16
    width = engine.axi.rdata.shape().width
    widths = top.bridge.field_bytes
    words = {3: 0x1234 % (1 << width), 4: (1 << width) - 1, 5: 0x5A % (1 << width)}
    seen_loads, answers, burst = [], [], []

    async def host(ctx):
        await ctx.tick().repeat(3)
        for addr, word in words.items():
            for byte in [Command.LOAD, WEIGHT_TARGET] + _le(0, widths["addr"]) + _le(
                    weight_load(word, addr, width), widths["data"]):
                await _send(ctx, top.uart_rx, byte)
            answers.append(await _receive(ctx, top.uart_tx))
        ctx.set(engine.axi.araddr, 3 * width // 8)
        ctx.set(engine.axi.arlen, 2)
        ctx.set(engine.axi.arvalid, 1)
        ctx.set(engine.axi.rready, 1)
        await ctx.tick().until(top.weights.axi.arready)
        ctx.set(engine.axi.arvalid, 0)
        while len(burst) < 3:
            _, _, valid, word, last = await ctx.tick().sample(
                engine.axi.rvalid, engine.axi.rdata, engine.axi.rlast)
            if valid:
                burst.append((word, last))

    async def load_monitor(ctx):
        sampled = ctx.tick().sample(engine.load.valid, engine.load.ready)
        async for _clock, _reset, valid, ready in sampled:
            if valid and ready:
                seen_loads.append(1)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(load_monitor, background=True)
    sim.run()
    assert answers == [Command.LOAD] * 3
    assert seen_loads == []
    assert burst == [(words[3], 0), (words[4], 0), (words[5], 1)]
