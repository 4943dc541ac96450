"""The stand-alone block-sparse GEMM engine: a :class:`GemmCore` with its own activation and
output memories, loaded and read by a host.

Timing is specified by ``sw.cycle_model.gemm`` (whose module docstring is the timeline) and the
arithmetic by ``sw.golden.gemm``; the co-simulation checks both.
"""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.gemm.gemm_core import COUNTER_WIDTH, GemmCore
from hw.gemm.geometry import GemmGeometry, LoadTarget
from sw.config import AcceleratorConfig
from sw.cycle_model.gemm import GemmTiming

__all__ = ["BlockSparseGemm", "COUNTER_WIDTH"]


class BlockSparseGemm(wiring.Component):
    """Computes ``Y = requantize(X @ W.T + bias)`` for a block-sparse ``W``, visiting only its
    stored blocks.

    Usage: while idle, write the activation, weight, row-pointer, column-index and
    quantization memories through ``load`` (layouts in ``sw.packing``); send one ``job``; wait
    for ``done``; read ``Y`` through ``read_addr`` / ``read_data`` and the counters.

    Inside, a :class:`GemmCore` (sequencer, systolic array, accumulation, requantizer; the
    weight, row-pointer, column-index and quantization memories) reads the activation memory
    and writes the output memory. Activations are packed densely (``act_stride = in_tiles``),
    outputs too (``out_stride`` = the job's output tiles), the weight's row pointers and
    quantization words start at word 0, and the output is requantized.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator instance; its ``hardware`` section sizes the engine.

    Members
    -------
    load : In(stream.Signature(geometry.load_layout))
        Memory writes; ready while idle.
    job : In(stream.Signature(geometry.job_layout))
        Starts a GEMM of ``tokens`` rows, ``in_tiles * array_rows`` inputs and
        ``out_block_rows * block_rows`` outputs; ready while idle.
    done : Out(1)
        High from the cycle after the last output write until the next job is accepted.
    read_addr : In(range(out_buffer_depth))
        Output memory address.
    read_data : Out(ArrayLayout(signed(data_width), array_cols))
        Output word at the ``read_addr`` of the previous cycle.
    total_cycles, busy_cycles, stall_cycles : Out(COUNTER_WIDTH)
        Performance counters of the last job (see ``sw.cycle_model.gemm``).
    """

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"Config must be an AcceleratorConfig, not {config!r}")
        self._config = config
        self._geometry = g = GemmGeometry.from_config(config)
        super().__init__({
            "load": In(stream.Signature(g.load_layout)),
            "job": In(stream.Signature(g.job_layout)),
            "done": Out(1),
            "read_addr": In(range(g.out_depth)),
            "read_data": Out(g.word_shapes[LoadTarget.WEIGHT]),
            "total_cycles": Out(COUNTER_WIDTH),
            "busy_cycles": Out(COUNTER_WIDTH),
            "stall_cycles": Out(COUNTER_WIDTH),
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    @property
    def geometry(self) -> GemmGeometry:
        return self._geometry

    @property
    def timing(self) -> GemmTiming:
        """The schedule this engine implements (``sw.cycle_model.gemm`` is its specification:
        the weight-load offset and shortest tile period come from there; the co-simulation
        checks that the resulting cycle counts match it exactly)."""
        return GemmTiming(self._geometry.array_rows, self._geometry.array_cols)

    def elaborate(self, platform):
        m = Module()
        g = self._geometry
        m.submodules.core = core = GemmCore(g)

        m.submodules.act_mem = act_mem = Memory(
            shape=g.word_shapes[LoadTarget.ACTIVATION], depth=g.act_depth, init=[])
        act_write, act_read = act_mem.write_port(), act_mem.read_port()
        m.submodules.out_mem = out_mem = Memory(
            shape=g.word_shapes[LoadTarget.WEIGHT], depth=g.out_depth, init=[])
        out_read, out_write = out_mem.read_port(), out_mem.write_port()

        # every load goes to the core (which ignores activation words) and the activation memory
        command = self.load.payload
        m.d.comb += [
            core.load.payload.eq(command),
            core.load.valid.eq(self.load.valid),
            self.load.ready.eq(core.load.ready),
            act_write.addr.eq(command.addr),
            act_write.data.eq(command.data),
            act_write.en.eq(self.load.valid & self.load.ready
                            & (command.target == LoadTarget.ACTIVATION)),
        ]

        job = self.job.payload
        core_job = core.job.payload
        m.d.comb += [
            core_job.tokens.eq(job.tokens),
            core_job.in_tiles.eq(job.in_tiles),
            core_job.out_block_rows.eq(job.out_block_rows),
            core_job.act_base.eq(0),
            core_job.act_stride.eq(job.in_tiles),
            core_job.out_base.eq(0),
            core_job.out_stride.eq(job.out_block_rows * g.out_tiles_per_block),
            core_job.row_ptr_base.eq(0),
            core_job.quant_base.eq(0),
            core_job.raw.eq(0),
            core.job.valid.eq(self.job.valid),
            self.job.ready.eq(core.job.ready),
        ]

        m.d.comb += [
            act_read.addr.eq(core.act_addr),
            core.act_data.eq(act_read.data),
            out_write.addr.eq(core.out_addr),
            out_write.en.eq(core.out_en),
            out_read.addr.eq(self.read_addr),
            self.read_data.eq(out_read.data),
            self.done.eq(core.done),
            self.total_cycles.eq(core.total_cycles),
            self.busy_cycles.eq(core.busy_cycles),
            self.stall_cycles.eq(core.stall_cycles),
        ]
        for c in range(g.array_cols):
            m.d.comb += out_write.data[c].eq(core.out_data[c])     # int8, sign-extended there
        return m
