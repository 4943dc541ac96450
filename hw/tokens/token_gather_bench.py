"""Simulation top of ``TokenGather``: an LFSR back-pressure source and an output capture memory.

Not part of the accelerator. It lets a transaction-level testbench exercise back-pressure
without Python work per clock: the consumer's ``ready`` comes from a 16-bit LFSR restarted at
every job acceptance, selected by ``ready_pattern``; every row taken from ``out`` is written to
a capture memory that the testbench reads back after ``done``. :func:`ready_sequence` is the
LFSR's Python model (the cycle model takes it to predict the stalls).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.tokens.token_gather import COUNTER_WIDTH, TokenGather, TokenGatherGeometry
from sw.config import AcceleratorConfig

#: Galois LFSR x^16 + x^14 + x^13 + x^11 + 1 (maximal length) and its restart value.
LFSR_TAPS = 0xB400
LFSR_SEED = 0xACE1


class ReadyPattern(enum.Enum, shape=2):
    """Consumer ``ready`` per cycle."""

    ALWAYS = 0      #: ready every cycle
    HALF = 1        #: LFSR bit 0 (about one cycle in two)
    QUARTER = 2     #: LFSR bits 0 and 1 both set (about one cycle in four)


def _lfsr_step(state: int) -> int:
    return (state >> 1) ^ (LFSR_TAPS if state & 1 else 0)


def ready_sequence(pattern: ReadyPattern, cycles: int) -> list[bool]:
    """``ready`` in the first ``cycles`` cycles after a job is accepted."""
    pattern = ReadyPattern(pattern)
    state, result = LFSR_SEED, []
    for _ in range(cycles):
        if pattern == ReadyPattern.ALWAYS:
            result.append(True)
        elif pattern == ReadyPattern.HALF:
            result.append(bool(state & 1))
        else:
            result.append(state & 3 == 3)
        state = _lfsr_step(state)
    return result


class TokenGatherBench(wiring.Component):
    """``TokenGather`` with an LFSR-driven consumer and a capture memory (simulation only).

    Members
    -------
    load, job : as ``TokenGather``'s
    ready_pattern : In(ReadyPattern)
        Back-pressure pattern; hold it steady during a job.
    done, total_cycles, stall_cycles : as ``TokenGather``'s
    captured : Out(range(tokens + 2))
        Rows taken from ``out`` in the last job.
    read_addr : In(range(tokens + 1))
        Capture memory address.
    read_data : Out(out_layout)
        Captured row at the ``read_addr`` of the previous cycle.
    """

    def __init__(self, config: AcceleratorConfig):
        self._config = config
        self._geometry = g = TokenGatherGeometry.from_config(config)
        super().__init__({
            "load": In(stream.Signature(g.load_layout)),
            "job": In(stream.Signature(g.job_layout)),
            "ready_pattern": In(ReadyPattern),
            "done": Out(1),
            "total_cycles": Out(COUNTER_WIDTH),
            "stall_cycles": Out(COUNTER_WIDTH),
            "captured": Out(range(g.tokens + 2)),
            "read_addr": In(range(g.tokens + 1)),
            "read_data": Out(g.out_layout),
        })

    def elaborate(self, platform):
        m = Module()
        g = self._geometry
        m.submodules.gather = gather = TokenGather(self._config)
        wiring.connect(m, wiring.flipped(self.load), gather.load)
        wiring.connect(m, wiring.flipped(self.job), gather.job)
        m.d.comb += [self.done.eq(gather.done), self.total_cycles.eq(gather.total_cycles),
                     self.stall_cycles.eq(gather.stall_cycles)]

        lfsr = Signal(16, init=LFSR_SEED)
        with m.If(gather.job.valid & gather.job.ready):
            m.d.sync += lfsr.eq(LFSR_SEED)
        with m.Else():
            m.d.sync += lfsr.eq((lfsr >> 1) ^ (lfsr[0].replicate(16) & LFSR_TAPS))
        with m.Switch(self.ready_pattern):
            with m.Case(ReadyPattern.ALWAYS):
                m.d.comb += gather.out.ready.eq(1)
            with m.Case(ReadyPattern.HALF):
                m.d.comb += gather.out.ready.eq(lfsr[0])
            with m.Default():
                m.d.comb += gather.out.ready.eq(lfsr[0] & lfsr[1])

        m.submodules.capture = capture = Memory(shape=g.out_layout, depth=g.tokens + 1,
                                                init=[])
        write, read = capture.write_port(), capture.read_port()
        taken = gather.out.valid & gather.out.ready
        m.d.comb += [write.addr.eq(self.captured), write.data.eq(gather.out.payload),
                     write.en.eq(taken), read.addr.eq(self.read_addr),
                     self.read_data.eq(read.data)]
        with m.If(gather.job.valid & gather.job.ready):
            m.d.sync += self.captured.eq(0)
        with m.Elif(taken):
            m.d.sync += self.captured.eq(self.captured + 1)
        return m
