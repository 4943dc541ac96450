"""Simulation-only top around one unit: input memory -> unit -> output memory, with counters and
LFSR-gated streams, so a testbench works per job instead of per clock."""


from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.checks import check_positive

#: Width of each counter.
COUNTER_WIDTH = 32

#: Width of one load of the constants register.
CONSTANT_CHUNK = 32

#: Beats the simulation tops' input and output memories hold.
HARNESS_DEPTH = 1 << 16

#: Maximal-length 32-bit Galois LFSR (taps 32, 22, 2, 1).
LFSR_TAPS = 0x80200003


class LoadTarget(enum.Enum, shape=2):
    INPUT = 0        #: input memory word ``addr``
    CONSTANTS = 1    #: bits ``32 * addr ..`` of the unit's constants
    AFFINE = 2       #: the unit's ``affine`` write at ``addr`` (LayerNorm)


class UnitHarness(wiring.Component):
    """Runs jobs of ``beats`` input beats through ``unit`` and stores its output beats.

    Usage: while idle, load the input memory, the constants and (LayerNorm) gamma / beta
    through ``load``; send a ``job``; wait for ``done``; read the output memory through
    ``read_addr`` / ``read_data`` and the counters. Beat ``n`` of the input memory goes into
    the unit as its ``n``-th transfer; its ``n``-th output transfer is written at address
    ``n``.

    Each cycle a 32-bit LFSR (seeded by the job) steps; the input is offered only when its
    bits 0..7 are at least ``in_gap`` and the output accepted only when bits 16..23 are at
    least ``out_gap`` (so ``gap / 256`` is the share of idle input or back-pressure cycles; 0
    never gates).

    Parameters
    ----------
    unit : Gelu, Softmax or LayerNorm
    depth : int
        Beats the input and output memories hold.

    Members
    -------
    load : In(stream.Signature(StructLayout({"target", "addr", "data"})))
        Ready while idle.
    job : In(stream.Signature(StructLayout({"beats", "seed", "in_gap", "out_gap"})))
        Ready while idle.
    done : Out(1)
        High from the cycle after the last output transfer until the next job.
    read_addr : In(range(depth))
    read_data : Out(unit output beat)
        The output word at the previous cycle's ``read_addr``.
    cycles : Out(32)
        Cycles from the one after the job's acceptance to the last output transfer, inclusive.
    in_gated, out_gated : Out(32)
        Cycles the LFSR held back input the unit could have had / output the unit offered.
    """

    def __init__(self, unit, *, depth: int):
        self._unit = unit
        self._depth = check_positive(depth, "Depth")
        in_shape = unit.signature.members["i"].signature.members["payload"].shape
        out_shape = unit.signature.members["o"].signature.members["payload"].shape
        self._in_shape, self._out_shape = in_shape, out_shape
        widths = [data.Layout.cast(in_shape).size, CONSTANT_CHUNK]
        self._affine = "affine" in unit.signature.members
        if self._affine:
            affine = unit.signature.members["affine"].signature.members["payload"].shape
            widths.append(affine.size)
        self._load_width = max(widths)
        super().__init__({
            "load": In(stream.Signature(data.StructLayout({
                "target": LoadTarget, "addr": range(max(depth, 1 << 16)),
                "data": unsigned(self._load_width)}))),
            "job": In(stream.Signature(data.StructLayout({
                "beats": range(depth + 1), "seed": unsigned(32), "in_gap": unsigned(8),
                "out_gap": unsigned(8)}))),
            "done": Out(1),
            "read_addr": In(range(depth)),
            "read_data": Out(out_shape),
            "cycles": Out(COUNTER_WIDTH),
            "in_gated": Out(COUNTER_WIDTH),
            "out_gated": Out(COUNTER_WIDTH),
        })

    @property
    def unit(self):
        return self._unit

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self._unit
        depth = self._depth
        m.submodules.in_mem = in_mem = Memory(shape=self._in_shape, depth=depth, init=[])
        m.submodules.out_mem = out_mem = Memory(shape=self._out_shape, depth=depth, init=[])
        in_write, in_read = in_mem.write_port(), in_mem.read_port(domain="comb")
        out_write, out_read = out_mem.write_port(), out_mem.read_port()
        m.d.comb += [out_read.addr.eq(self.read_addr), self.read_data.eq(out_read.data)]

        running = Signal()
        command = self.load.payload
        loading = self.load.valid & self.load.ready
        m.d.comb += [self.load.ready.eq(~running), self.job.ready.eq(~running),
                     in_write.addr.eq(command.addr), in_write.data.eq(command.data),
                     in_write.en.eq(loading & (command.target == LoadTarget.INPUT))]
        constants = Signal(unit.signature.members["constants"].shape)
        m.d.comb += unit.constants.eq(constants)
        raw = constants.as_value()
        with m.If(loading & (command.target == LoadTarget.CONSTANTS)):
            with m.Switch(command.addr):
                for chunk in range(-(-len(raw) // CONSTANT_CHUNK)):
                    with m.Case(chunk):
                        part = raw[chunk * CONSTANT_CHUNK:(chunk + 1) * CONSTANT_CHUNK]
                        m.d.sync += part.eq(command.data)
        if self._affine:
            m.d.comb += [unit.affine.payload.eq(command.data),
                         unit.affine.payload.addr.eq(command.addr),
                         unit.affine.valid.eq(loading & (command.target == LoadTarget.AFFINE))]

        beats = Signal.like(self.job.payload.beats)
        in_gap, out_gap = Signal(8), Signal(8)
        lfsr = Signal(32)
        in_addr = Signal(range(depth + 1))
        out_addr = Signal(range(depth + 1))
        with m.If(self.job.valid & self.job.ready):
            m.d.sync += [running.eq(1), self.done.eq(0), beats.eq(self.job.payload.beats),
                         in_gap.eq(self.job.payload.in_gap), out_gap.eq(self.job.payload.out_gap),
                         lfsr.eq(self.job.payload.seed | 1), in_addr.eq(0), out_addr.eq(0),
                         self.cycles.eq(0), self.in_gated.eq(0), self.out_gated.eq(0)]
        with m.Elif(running):
            m.d.sync += [lfsr.eq((lfsr >> 1) ^ (lfsr[0].replicate(32) & LFSR_TAPS)),
                         self.cycles.eq(self.cycles + 1)]
        in_open, out_open = lfsr[0:8] >= in_gap, lfsr[16:24] >= out_gap
        has_input = running & (in_addr < beats)
        m.d.comb += [in_read.addr.eq(in_addr), unit.i.payload.eq(in_read.data),
                     unit.i.valid.eq(has_input & in_open),
                     unit.o.ready.eq(running & out_open)]
        with m.If(unit.i.valid & unit.i.ready):
            m.d.sync += in_addr.eq(in_addr + 1)
        with m.If(has_input & ~in_open & unit.i.ready):
            m.d.sync += self.in_gated.eq(self.in_gated + 1)
        with m.If(running & unit.o.valid & ~out_open):
            m.d.sync += self.out_gated.eq(self.out_gated + 1)
        m.d.comb += [out_write.addr.eq(out_addr), out_write.data.eq(unit.o.payload),
                     out_write.en.eq(unit.o.valid & unit.o.ready)]
        with m.If(unit.o.valid & unit.o.ready):
            m.d.sync += out_addr.eq(out_addr + 1)
            with m.If(out_addr == beats - 1):
                m.d.sync += [running.eq(0), self.done.eq(1)]
        return m


def harness_builder(unit_from_config):
    """``config -> UnitHarness(unit_from_config(config), depth=HARNESS_DEPTH)``."""
    def build(config):
        return UnitHarness(unit_from_config(config), depth=HARNESS_DEPTH)
    return build
