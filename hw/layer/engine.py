# amaranth: UnusedElaboratable=no
"""The encoder-layer engine: runs a layer program over a scratchpad with all the units.

One generated top holds the block-sparse GEMM engine (``hw.gemm.gemm_core``) with its epilogue
(``hw.layer.gemm_epilogue``: GELU and the residual adds on the GEMM's outputs), the softmax and
LayerNorm units (``hw.units``), the weight stager that turns a head's keys and values into GEMM
weights, and three parts of its own: the load port and
instruction store (``hw.layer.loader``), the scratchpad holding every buffer of the program
with the arbiter that gives its ports to the running unit (``hw.layer.scratchpad``), and the
sequencer (``hw.layer.sequencer``), which fetches the program's instructions (``sw.isa``) and
runs them one after the other. This module builds and connects them; every size comes from
``sw.engine_params.EngineParams``. The head-skip control is
the program itself: the exporter emits attention instructions for the kept heads only, and
the Q, K, V weights hold the kept heads' rows only, so nothing of a removed head is fetched or
computed.

Timing is specified by ``sw.cycle_model.layer_engine`` (its docstring is the timeline); the
co-simulation checks every instruction's cycles against it. Per instruction the sequencer
records its cycles in a trace memory, and per opcode it keeps a busy counter.
"""

from dataclasses import replace

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.gemm.gemm_core import GemmCore
from hw.gemm.geometry import GemmGeometry, LoadTarget as GemmTarget
from hw.layer.gather_stage import GatherStage
from hw.layer.gemm_epilogue import GemmEpilogue, residual_constants_layout
from hw.layer.loader import CONSTANT_CHUNK, EngineLoader, EngineTarget, instruction_layout
from hw.layer.row_reader import RowReader
from hw.layer.row_writer import RowWriter
from hw.layer.scratchpad import Owner, ScratchpadArbiter, vector_layout
from hw.layer.sequencer import COUNTER_WIDTH, ROW_UNITS, Sequencer, drive
from hw.layer.weight_stager import WeightStager
from hw.memory.weight_fetcher import ADDRESS_WIDTH, WeightFetcher
from hw.units.layernorm import LayerNorm
from hw.units.softmax import Softmax
from sw.config import AcceleratorConfig
from sw.engine_params import ENGINE_TENSORS, EngineParams, LayerMemoryMap
from sw.isa import INSTRUCTION_BITS, Opcode

__all__ = ["COUNTER_WIDTH", "CONSTANT_CHUNK", "EngineTarget", "program_capacity",
           "instruction_layout", "engine_gemm_geometry", "build_layer_engine", "LayerEngine"]


def program_capacity(config: AcceleratorConfig) -> int:
    """Instructions the program memory holds (``EngineParams.program_capacity``)."""
    return EngineParams.from_config(config).program_capacity


def engine_gemm_geometry(config: AcceleratorConfig) -> GemmGeometry:
    """The GEMM engine of a layer engine: block numbering and constants for the densest layer,
    an on-chip weight memory for the staged keys and values only (the linears stream)."""
    params = EngineParams.from_config(config)
    capacity, mm = params.gemm_capacity, params.memory_map
    base = GemmGeometry.from_config(config)
    return replace(base, act_depth=mm.depth, out_depth=mm.depth,
                   weight_depth=capacity["weight"], resident_weight_depth=params.staged_words,
                   row_ptr_depth=capacity["row_ptr"],
                   quant_depth=capacity["quant"], max_inner=max(base.max_inner, mm.keys),
                   max_outer=max(base.max_outer, mm.keys))


def build_layer_engine(config: AcceleratorConfig) -> "LayerEngine":
    """The layer engine of ``config``, after checking that the config can hold one (so a bad
    config raises ``LayerEngineError`` before any component exists)."""
    EngineParams.from_config(config)
    return LayerEngine(config)


class LayerEngine(wiring.Component):
    """Runs one layer program (see the module docstring).

    Usage: put the linears' weights in the external memory behind ``axi`` (a weight image's
    WEIGHT_STREAM sections, or ``hw.layer.loading.LoadPlan.external``); while idle, load the
    scratchpad's INPUT rows, the program, the GEMM's block structure and constants, the
    constants register, LayerNorm's gamma / beta and the GELU table through ``load``
    (``hw.layer.loading`` says what);
    send a ``job``; wait for ``done``; read any scratchpad vector through ``read_addr`` /
    ``read_data``, each instruction's cycles through ``trace_addr`` / ``trace_data`` and the
    per-opcode counters.

    Members
    -------
    load : In(stream.Signature(StructLayout({"target", "addr", "data"})))
    axi : Out(hw.memory.axi.AxiReadSignature)
        The weight fetcher's AXI4 read port (``axi__araddr`` ... in Verilog).
    job : In(stream.Signature(unsigned(1)))
    done : Out(1)
    error : Out(1)
        Set with ``done`` when the program held an opcode this engine does not run.
    read_addr / read_data : scratchpad read-back (registered)
    trace_addr / trace_data : cycles of instruction ``trace_addr`` of the last run
    cycles : Out(COUNTER_WIDTH)
        Cycles from the job's acceptance to ``done``.
    opcode_cycles : Out(ArrayLayout(COUNTER_WIDTH, len(Opcode)))
        Cycles spent on the instructions of each opcode.
    """

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"Config must be an AcceleratorConfig, not {config!r}")
        self._config = config
        self._params = params = EngineParams.from_config(config)
        mm = params.memory_map
        self._gemm_geometry = g = engine_gemm_geometry(config)
        self._gemm = GemmCore(g, act_width=config.hardware.data_width + 1)
        self._softmax = Softmax.from_config(config)
        self._layernorm = LayerNorm.from_config(config)
        self._program_depth = params.program_capacity
        hw = config.hardware
        vector = vector_layout(mm.lanes)
        gemm_load = self._gemm.signature.members["load"].signature.members["payload"].shape
        affine = self._layernorm.signature.members["affine"].signature.members["payload"].shape
        self._affine_beats = self._layernorm.timing.max_beats
        self._constants_layout = data.StructLayout({
            "tokens": range(mm.tokens + 1),
            "ffn": range(mm.ffn + 1),
            "layernorm": data.ArrayLayout(
                self._layernorm.signature.members["constants"].shape, 2),
            "softmax": self._softmax.signature.members["constants"].shape,
            "residual": data.ArrayLayout(residual_constants_layout(hw.multiplier_width), 2),
            "tensors": data.ArrayLayout(data.StructLayout({
                "row_ptr_base": range(g.depths[GemmTarget.ROW_PTR]),
                "quant_base": range(g.quant_depth),
                "weight_base": range(g.weight_memory_depth),
                "stream_base": unsigned(ADDRESS_WIDTH),
                "stream_words": range(params.gemm_capacity["weight"] + 1),
                "in_tiles": range(g.max_inner // g.array_rows + 1),
                "out_block_rows": range(g.max_block_rows + 1),
            }), len(ENGINE_TENSORS)),
        })
        widths = [vector.size, INSTRUCTION_BITS, data.Layout.cast(gemm_load).size,
                  CONSTANT_CHUNK, data.Layout.cast(affine).size]
        self._load_layout = data.StructLayout({
            "target": EngineTarget,
            "addr": range(max(mm.depth, 2 * self._affine_beats, self._program_depth,
                              1 << hw.data_width)),
            "data": unsigned(max(widths))})
        self._loader = EngineLoader(
            load_layout=self._load_layout, constants_layout=self._constants_layout,
            program_depth=self._program_depth, affine_shape=affine,
            affine_depth=2 * self._affine_beats, scratch_depth=mm.depth, lanes=mm.lanes,
            gemm_command=gemm_load, table_width=hw.data_width)
        self._scratchpad = ScratchpadArbiter(depth=mm.depth, lanes=mm.lanes, memories=mm.memories,
                                             offset_bits=mm.offset_bits)
        self._fetcher = WeightFetcher(
            word_shape=g.word_shapes[GemmTarget.WEIGHT], depth=params.stream_words,
            burst_beats=params.burst_beats, max_outstanding=params.max_outstanding,
            tile_words=hw.array_rows, max_words=params.gemm_capacity["weight"])
        super().__init__({
            "load": In(stream.Signature(self._load_layout)),
            "axi": Out(self._fetcher.signature.members["axi"].signature),
            "job": In(stream.Signature(unsigned(1))),
            "done": Out(1),
            "error": Out(1),
            "read_addr": In(range(mm.depth)),
            "read_data": Out(vector),
            "trace_addr": In(range(self._program_depth)),
            "trace_data": Out(COUNTER_WIDTH),
            "cycles": Out(COUNTER_WIDTH),
            "opcode_cycles": Out(data.ArrayLayout(unsigned(COUNTER_WIDTH), len(Opcode))),
        })

    # ---- what drivers need without elaborating ---------------------------------------------
    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    @property
    def params(self) -> EngineParams:
        """The derived parameters the engine is built from."""
        return self._params

    @property
    def memory_map(self) -> LayerMemoryMap:
        return self._params.memory_map

    @property
    def gemm(self) -> GemmCore:
        return self._gemm

    @property
    def softmax(self) -> Softmax:
        return self._softmax

    @property
    def layernorm(self) -> LayerNorm:
        return self._layernorm

    @property
    def constants_layout(self) -> data.StructLayout:
        return self._constants_layout

    @property
    def load_layout(self) -> data.StructLayout:
        return self._load_layout

    @property
    def affine_beats(self) -> int:
        """Writes of one LayerNorm gamma / beta set (set ``s`` starts at ``s * affine_beats``)."""
        return self._affine_beats

    @property
    def program_depth(self) -> int:
        return self._program_depth

    def elaborate(self, platform):
        m = Module()
        mm, cfg = self._params.memory_map, self._config
        hw = cfg.hardware
        c = mm.lanes
        m.submodules.gemm = gemm = self._gemm
        m.submodules.softmax = softmax = self._softmax
        m.submodules.layernorm = layernorm = self._layernorm
        m.submodules.loader = loader = self._loader
        m.submodules.scratchpad = scratchpad = self._scratchpad
        m.submodules.fetcher = fetcher = self._fetcher
        wiring.connect(m, fetcher.axi, wiring.flipped(self.axi))
        wiring.connect(m, fetcher.o, gemm.weight_stream)
        m.d.comb += [gemm.stream_tile_ready.eq(fetcher.tile_ready),
                     fetcher.claim.eq(gemm.stream_claim)]
        m.d.comb += [scratchpad.readback.addr.eq(self.read_addr),
                     self.read_data.eq(scratchpad.readback.data)]
        wiring.connect(m, wiring.flipped(self.load), loader.load)
        wiring.connect(m, loader.scratch, scratchpad.load)
        constants = loader.constants
        m.submodules.trace = trace = Memory(shape=unsigned(COUNTER_WIDTH),
                                            depth=self._program_depth, init=[])
        trace_read, trace_write = trace.read_port(), trace.write_port()
        m.d.comb += [trace_read.addr.eq(self.trace_addr), self.trace_data.eq(trace_read.data)]

        # ---- units around the scratchpad ---------------------------------------------------
        lengths = {Owner.LAYERNORM: mm.hidden, Owner.SOFTMAX: mm.keys}
        units = {Owner.LAYERNORM: layernorm, Owner.SOFTMAX: softmax}
        readers, writers = {}, {}
        for owner in ROW_UNITS:
            unit, name = units[owner], owner.name.lower()
            shape = unit.signature.members["i"].signature.members["payload"].shape.elem_shape
            readers[owner] = m.submodules[f"{name}_reader"] = reader = RowReader(
                vector_lanes=c, lanes=unit.lanes, out_shape=shape, max_rows=mm.tokens,
                max_length=lengths[owner], depth=mm.depth)
            shape = unit.signature.members["o"].signature.members["payload"].shape.elem_shape
            writers[owner] = m.submodules[f"{name}_writer"] = writer = RowWriter(
                vector_lanes=c, lanes=unit.lanes, in_shape=shape, max_rows=mm.tokens,
                max_length=lengths[owner], depth=mm.depth)
            wiring.connect(m, reader.o, unit.i)
            wiring.connect(m, unit.o, writer.i)
            wiring.connect(m, reader.scratch, scratchpad.client(owner).read_a)
            wiring.connect(m, writer.scratch, scratchpad.client(owner).write)
        g = self._gemm_geometry
        m.submodules.stager = stager = WeightStager(
            lanes=c, block_rows=hw.block_rows, block_cols=hw.block_cols, keys=mm.keys,
            head_dim=mm.head_dim, data_width=hw.data_width, max_rows=mm.tokens,
            depth=mm.depth, weight_depth=g.weight_memory_depth)
        wiring.connect(m, stager.scratch, scratchpad.stager)
        m.submodules.gather_stage = gather_stage = GatherStage(cfg, depth=mm.depth, lanes=c)
        wiring.connect(m, gather_stage.scratch, scratchpad.client(Owner.GATHER))
        port = scratchpad.client(Owner.GEMM)           # the GEMM's operands are narrower
        act_lanes = Signal(gemm.signature.members["act_data"].shape)
        for lane in range(hw.array_rows):
            width = act_lanes[lane].shape().width
            m.d.comb += act_lanes[lane].eq(port.read_a.data[lane][:width])
        m.d.comb += [gemm.act_data.eq(act_lanes), port.read_a.addr.eq(gemm.act_addr)]
        # the GEMM's outputs reach the scratchpad through the epilogue, which reads port b
        m.submodules.epilogue = epilogue = GemmEpilogue.from_config(cfg)
        m.d.comb += [epilogue.out_addr.eq(gemm.out_addr), epilogue.out_data.eq(gemm.out_data),
                     epilogue.out_en.eq(gemm.out_en),
                     epilogue.table_addr.eq(loader.table_addr),
                     epilogue.table_data.eq(loader.table_data),
                     epilogue.table_en.eq(loader.table_en)]
        wiring.connect(m, epilogue.skip, port.read_b)
        wiring.connect(m, epilogue.write, port.write)
        m.d.comb += softmax.constants.eq(constants.softmax)

        # ---- sequencer -----------------------------------------------------------------------
        m.submodules.sequencer = sequencer = Sequencer(
            params=self._params, program_depth=self._program_depth,
            affine_beats=self._affine_beats, constants_layout=self._constants_layout,
            readers=readers, writers=writers, stager=stager, gather=gather_stage, gemm=gemm)
        wiring.connect(m, wiring.flipped(self.job), sequencer.job)
        wiring.connect(m, sequencer.gemm_job, gemm.job)
        for owner in ROW_UNITS:
            drive(m, readers[owner], getattr(sequencer, f"{owner.name.lower()}_reader"))
            drive(m, writers[owner], getattr(sequencer, f"{owner.name.lower()}_writer"))
        drive(m, stager, sequencer.stager)
        drive(m, gather_stage, sequencer.gather)
        m.d.comb += [
            self.done.eq(sequencer.done), self.error.eq(sequencer.error),
            self.cycles.eq(sequencer.cycles), self.opcode_cycles.eq(sequencer.opcode_cycles),
            loader.running.eq(sequencer.running), loader.program_addr.eq(sequencer.pc),
            sequencer.instruction.eq(loader.instruction), sequencer.constants.eq(constants),
            scratchpad.owner.eq(sequencer.owner), scratchpad.staging.eq(sequencer.staging),
            trace_write.addr.eq(sequencer.trace_addr), trace_write.data.eq(sequencer.trace_data),
            trace_write.en.eq(sequencer.trace_en),
            sequencer.rows_finished.eq(writers[Owner.LAYERNORM].finished
                                       | writers[Owner.SOFTMAX].finished),
            sequencer.stager_finished.eq(stager.finished),
            sequencer.gather_finished.eq(gather_stage.finished),
            sequencer.gemm_done.eq(gemm.done),
            fetcher.start.eq(sequencer.fetch_start), fetcher.base.eq(sequencer.fetch_base),
            fetcher.words.eq(sequencer.fetch_words),
            # the current LAYERNORM / residual epilogue's constants; gamma / beta streamed from
            # the loader
            epilogue.mode.eq(sequencer.epilogue), epilogue.skip_offset.eq(sequencer.skip_offset),
            epilogue.constants.eq(constants.residual[sequencer.residual_set]),
            layernorm.constants.eq(constants.layernorm[sequencer.layernorm_set]),
            loader.affine_addr.eq(sequencer.affine_addr),
            layernorm.affine.payload.eq(loader.affine_data),
            layernorm.affine.valid.eq(sequencer.affine_valid),
        ]
        # every head's CLS probability row goes into the token scores as it is written
        softmax_writer = writers[Owner.SOFTMAX]
        m.d.comb += [gather_stage.add.eq((sequencer.owner == Owner.SOFTMAX)
                                         & softmax_writer.scratch.en
                                         & (softmax_writer.row == 0)),
                     gather_stage.first.eq(sequencer.current.arg == 0),
                     gather_stage.add_word.eq(softmax_writer.word),
                     gather_stage.add_data.eq(softmax_writer.scratch.data)]

        # GEMM load port: the loader while idle, the stager while staging
        with m.If(sequencer.staging):
            m.d.comb += [gemm.load.payload.target.eq(GemmTarget.WEIGHT),
                         gemm.load.payload.addr.eq(stager.weight_addr),
                         gemm.load.payload.data.eq(stager.weight_data),
                         gemm.load.valid.eq(stager.weight_en)]
        with m.Else():
            m.d.comb += [gemm.load.payload.eq(loader.gemm.payload),
                         gemm.load.valid.eq(loader.gemm.valid)]
        return m
