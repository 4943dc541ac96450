# amaranth: UnusedElaboratable=no
"""The encoder-layer engine: runs a layer program over a scratchpad with all the units.

One generated top holds the block-sparse GEMM engine (``hw.gemm.gemm_core``), the softmax,
GELU and LayerNorm units (``hw.units``), the residual-add unit, the weight stager that turns a
head's keys and values into GEMM weights, and three parts of its own: the load port and
instruction store (``hw.layer.loader``), the scratchpad holding every buffer of the program
with the arbiter that gives its ports to the running unit (``hw.layer.scratchpad``), and the
sequencer here, which fetches the program's instructions (``sw.isa``) and runs them one after
the other. Every size comes from ``sw.engine_params.EngineParams``. The head-skip control is
the program itself: the exporter emits attention instructions for the kept heads only, and
the Q, K, V weights hold the kept heads' rows only, so nothing of a removed head is fetched or
computed.

Timing is specified by ``sw.cycle_model.layer_engine`` (its docstring is the timeline); the
co-simulation checks every instruction's cycles against it. Per instruction the sequencer
records its cycles in a trace memory, and per opcode it keeps a busy counter.
"""

from dataclasses import replace

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.gemm.gemm_core import GemmCore
from hw.gemm.geometry import GemmGeometry, LoadTarget as GemmTarget
from hw.layer.gather_stage import GatherStage
from hw.layer.loader import CONSTANT_CHUNK, EngineLoader, EngineTarget, instruction_layout
from hw.layer.residual_add import ResidualAdd, residual_constants_layout
from hw.layer.row_reader import RowReader
from hw.layer.row_writer import RowWriter
from hw.layer.scratchpad import Owner, ScratchpadArbiter, vector_layout
from hw.layer.weight_stager import WeightStager
from hw.units.gelu import Gelu
from hw.units.layernorm import LayerNorm
from hw.units.softmax import Softmax
from sw.config import AcceleratorConfig
from sw.engine_params import ENGINE_TENSORS, KEYS, VALUES, EngineParams, LayerMemoryMap
from sw.golden.encoder_layer import RESIDUAL_BITS
from sw.isa import GATHER_PROTECTED_BITS, INSTRUCTION_BITS, Buffer, Opcode

__all__ = ["COUNTER_WIDTH", "CONSTANT_CHUNK", "EngineTarget", "program_capacity",
           "instruction_layout", "engine_gemm_geometry", "build_layer_engine", "LayerEngine"]

#: Width of the cycle counters and trace entries.
COUNTER_WIDTH = 32

#: The units that run from scratchpad rows to scratchpad rows, by their :class:`Owner`.
ROW_UNITS = (Owner.LAYERNORM, Owner.SOFTMAX, Owner.GELU)


def program_capacity(config: AcceleratorConfig) -> int:
    """Instructions the program memory holds (``EngineParams.program_capacity``)."""
    return EngineParams.from_config(config).program_capacity


def engine_gemm_geometry(config: AcceleratorConfig) -> GemmGeometry:
    """The GEMM engine of a layer engine: memories sized for the densest layer's weights."""
    params = EngineParams.from_config(config)
    capacity, mm = params.gemm_capacity, params.memory_map
    base = GemmGeometry.from_config(config)
    return replace(base, act_depth=mm.depth, out_depth=mm.depth,
                   weight_depth=capacity["weight"], row_ptr_depth=capacity["row_ptr"],
                   quant_depth=capacity["quant"], max_inner=max(base.max_inner, mm.keys),
                   max_outer=max(base.max_outer, mm.keys))


def build_layer_engine(config: AcceleratorConfig) -> "LayerEngine":
    """The layer engine of ``config``, after checking that the config can hold one (so a bad
    config raises ``LayerEngineError`` before any component exists)."""
    EngineParams.from_config(config)
    return LayerEngine(config)


class LayerEngine(wiring.Component):
    """Runs one layer program (see the module docstring).

    Usage: while idle, load the scratchpad's INPUT rows, the program, the GEMM memories, the
    constants and LayerNorm's gamma / beta through ``load`` (``hw.layer.loading`` says what);
    send a ``job``; wait for ``done``; read any scratchpad vector through ``read_addr`` /
    ``read_data``, each instruction's cycles through ``trace_addr`` / ``trace_data`` and the
    per-opcode counters.

    Members
    -------
    load : In(stream.Signature(StructLayout({"target", "addr", "data"})))
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
        self._gelu = Gelu.from_config(config)
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
            "gelu": self._gelu.signature.members["constants"].shape,
            "residual": data.ArrayLayout(residual_constants_layout(hw.multiplier_width), 2),
            "tensors": data.ArrayLayout(data.StructLayout({
                "row_ptr_base": range(g.depths[GemmTarget.ROW_PTR]),
                "quant_base": range(g.quant_depth),
                "weight_base": range(g.weight_depth),
                "in_tiles": range(g.max_inner // g.array_rows + 1),
                "out_block_rows": range(g.max_block_rows + 1),
            }), len(ENGINE_TENSORS)),
        })
        widths = [vector.size, INSTRUCTION_BITS, data.Layout.cast(gemm_load).size,
                  CONSTANT_CHUNK, data.Layout.cast(affine).size]
        self._load_layout = data.StructLayout({
            "target": EngineTarget,
            "addr": range(max(mm.depth, 2 * self._affine_beats, self._program_depth, 1 << 8)),
            "data": unsigned(max(widths))})
        self._loader = EngineLoader(
            load_layout=self._load_layout, constants_layout=self._constants_layout,
            program_depth=self._program_depth, affine_shape=affine,
            affine_depth=2 * self._affine_beats, scratch_depth=mm.depth, lanes=mm.lanes,
            gemm_command=gemm_load)
        self._scratchpad = ScratchpadArbiter(depth=mm.depth, lanes=mm.lanes)
        super().__init__({
            "load": In(stream.Signature(self._load_layout)),
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
    def gelu(self) -> Gelu:
        return self._gelu

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
        m.submodules.gelu = gelu = self._gelu
        m.submodules.layernorm = layernorm = self._layernorm
        m.submodules.loader = loader = self._loader
        m.submodules.scratchpad = scratchpad = self._scratchpad
        running = Signal()
        m.d.comb += [loader.running.eq(running),
                     scratchpad.readback.addr.eq(self.read_addr),
                     self.read_data.eq(scratchpad.readback.data)]
        wiring.connect(m, wiring.flipped(self.load), loader.load)
        wiring.connect(m, loader.scratch, scratchpad.load)
        constants = loader.constants
        m.submodules.trace = trace = Memory(shape=unsigned(COUNTER_WIDTH),
                                            depth=self._program_depth, init=[])
        trace_read, trace_write = trace.read_port(), trace.write_port()
        m.d.comb += [trace_read.addr.eq(self.trace_addr), self.trace_data.eq(trace_read.data)]

        # ---- units around the scratchpad ---------------------------------------------------
        lengths = {Owner.LAYERNORM: mm.hidden, Owner.SOFTMAX: mm.keys, Owner.GELU: mm.ffn}
        units = {Owner.LAYERNORM: layernorm, Owner.SOFTMAX: softmax, Owner.GELU: gelu}
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
        m.submodules.residual = residual = ResidualAdd(
            vector_lanes=c, in_width=RESIDUAL_BITS, out_width=RESIDUAL_BITS,
            multiplier_width=hw.multiplier_width, max_rows=mm.tokens,
            max_words=mm.regions[Buffer.INPUT].stride, depth=mm.depth)
        wiring.connect(m, residual.scratch, scratchpad.client(Owner.RESIDUAL))
        g = self._gemm_geometry
        m.submodules.stager = stager = WeightStager(
            lanes=c, block_rows=hw.block_rows, block_cols=hw.block_cols, keys=mm.keys,
            head_dim=mm.head_dim, data_width=hw.data_width, max_rows=mm.tokens,
            depth=mm.depth, weight_depth=g.weight_depth)
        wiring.connect(m, stager.scratch, scratchpad.stager)
        m.submodules.gather_stage = gather_stage = GatherStage(cfg, depth=mm.depth, lanes=c)
        wiring.connect(m, gather_stage.scratch, scratchpad.client(Owner.GATHER))
        port = scratchpad.client(Owner.GEMM)           # the GEMM's operands are narrower
        act_lanes = Signal(gemm.signature.members["act_data"].shape)
        for lane in range(hw.array_rows):
            width = act_lanes[lane].shape().width
            m.d.comb += act_lanes[lane].eq(port.read_a.data[lane][:width])
        m.d.comb += [gemm.act_data.eq(act_lanes), port.read_a.addr.eq(gemm.act_addr),
                     port.write.addr.eq(gemm.out_addr), port.write.en.eq(gemm.out_en)]
        for lane in range(c):
            m.d.comb += port.write.data[lane].eq(gemm.out_data[lane])
        m.d.comb += [softmax.constants.eq(constants.softmax), gelu.constants.eq(constants.gelu)]

        # GEMM load port: the loader while idle, the stager while staging
        staging = Signal()
        m.d.comb += scratchpad.staging.eq(staging)
        with m.If(staging):
            m.d.comb += [gemm.load.payload.target.eq(GemmTarget.WEIGHT),
                         gemm.load.payload.addr.eq(stager.weight_addr),
                         gemm.load.payload.data.eq(stager.weight_data),
                         gemm.load.valid.eq(stager.weight_en)]
        with m.Else():
            m.d.comb += [gemm.load.payload.eq(loader.gemm.payload),
                         gemm.load.valid.eq(loader.gemm.valid)]

        self._sequence(m, running=running, staging=staging, trace_write=trace_write,
                       readers=readers, writers=writers, residual=residual, stager=stager,
                       gather_stage=gather_stage)
        return m

    def _sequence(self, m, *, running, staging, trace_write, readers, writers, residual, stager,
                  gather_stage):
        """The sequencer: fetch, decode, start the instruction's unit, wait for its end; and
        the cycle counters."""
        params, mm = self._params, self._params.memory_map
        regions = mm.regions
        loader, scratchpad, gemm = self._loader, self._scratchpad, self._gemm
        layernorm, residual_unit = self._layernorm, residual
        constants = loader.constants
        pc = Signal(range(self._program_depth + 1))
        instruction = Signal(instruction_layout())
        rows = Signal(range(mm.tokens + 1))          # token rows of the current buffers
        instruction_cycles = Signal(COUNTER_WIDTH)
        op_done = Signal()                            # comb: the instruction's last cycle
        owner = Signal(Owner)
        m.d.comb += [loader.program_addr.eq(pc), scratchpad.owner.eq(owner)]

        buffers = list(regions)
        bases = data.ArrayLayout(range(mm.depth + 1), len(buffers))
        strides = data.ArrayLayout(range(mm.max_stride + 1), len(buffers))
        base_of = Signal(bases, init=[regions[b].base for b in buffers])
        stride_of = Signal(strides, init=[regions[b].stride for b in buffers])

        def base(buffer):
            return base_of[buffer]

        def stride(buffer):
            return stride_of[buffer]

        op = instruction.opcode
        layernorm_set = Signal()
        residual_set = Signal()
        m.d.comb += [residual_unit.constants.eq(constants.residual[residual_set]),
                     layernorm.constants.eq(constants.layernorm[layernorm_set])]

        # GEMM job fields of the current instruction
        tensor_index = Signal(range(len(ENGINE_TENSORS)))
        tensor = constants.tensors[tensor_index]
        job = gemm.job.payload
        gemm_raw = Signal()
        gemm_act_base, gemm_act_stride = Signal(range(mm.depth)), Signal.like(stride_of[0])
        gemm_out_base, gemm_out_stride = Signal(range(mm.depth)), Signal.like(stride_of[0])
        gemm_tokens = Signal.like(rows)
        m.d.comb += [job.tokens.eq(gemm_tokens), job.in_tiles.eq(tensor.in_tiles),
                     job.out_block_rows.eq(tensor.out_block_rows),
                     job.row_ptr_base.eq(tensor.row_ptr_base),
                     job.quant_base.eq(tensor.quant_base), job.raw.eq(gemm_raw),
                     job.act_base.eq(gemm_act_base), job.act_stride.eq(gemm_act_stride),
                     job.out_base.eq(gemm_out_base), job.out_stride.eq(gemm_out_stride)]

        # every head's CLS probability row goes into the token scores as it is written
        softmax_writer = writers[Owner.SOFTMAX]
        m.d.comb += [gather_stage.add.eq((owner == Owner.SOFTMAX) & softmax_writer.scratch.en
                                         & (softmax_writer.row == 0)),
                     gather_stage.first.eq(instruction.arg == 0),
                     gather_stage.add_word.eq(softmax_writer.word),
                     gather_stage.add_data.eq(softmax_writer.scratch.data)]

        # affine set streaming into LayerNorm
        affine_index = Signal(range(self._affine_beats + 1))
        affine_streaming = Signal()
        affine_valid = Signal()
        m.d.comb += loader.affine_addr.eq(layernorm_set * self._affine_beats + affine_index)
        m.d.sync += affine_valid.eq(affine_streaming)
        m.d.comb += [layernorm.affine.payload.eq(loader.affine_data),
                     layernorm.affine.valid.eq(affine_valid)]

        def start_rows(unit, src, dst, count, length):
            r, w = readers[unit], writers[unit]
            m.d.comb += [r.start.eq(1), w.start.eq(1),
                         r.base.eq(base(src)), r.stride.eq(stride(src)),
                         w.base.eq(base(dst)), w.stride.eq(stride(dst)),
                         r.rows.eq(count), w.rows.eq(count),
                         r.length.eq(length), w.length.eq(length)]

        with m.FSM(name="sequencer"):
            with m.State("IDLE"):
                m.d.comb += self.job.ready.eq(1)
                with m.If(self.job.valid):
                    m.d.sync += [running.eq(1), self.done.eq(0), self.error.eq(0), pc.eq(0),
                                 rows.eq(constants.tokens), self.cycles.eq(0),
                                 instruction_cycles.eq(0),
                                 self.opcode_cycles.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.next = "DECODE"
            with m.State("DECODE"):
                word = loader.instruction
                m.d.sync += instruction.eq(word)
                m.d.sync += [layernorm_set.eq(word.arg[0]), residual_set.eq(word.arg[0])]
                with m.Switch(word.opcode):
                    with m.Case(Opcode.END):
                        m.d.sync += [running.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                    with m.Case(Opcode.LAYERNORM):
                        m.d.sync += [affine_index.eq(0), affine_streaming.eq(1),
                                     owner.eq(Owner.LAYERNORM)]
                        m.next = "AFFINE"
                    with m.Case(Opcode.GEMM):
                        m.d.sync += [tensor_index.eq(word.arg), gemm_raw.eq(0),
                                     gemm_act_base.eq(base(word.src_a)),
                                     gemm_act_stride.eq(stride(word.src_a)),
                                     gemm_out_base.eq(base(word.dst)),
                                     gemm_out_stride.eq(stride(word.dst)),
                                     gemm_tokens.eq(rows), owner.eq(Owner.GEMM)]
                        m.next = "GEMM_ISSUE"
                    with m.Case(Opcode.ATTENTION_SCORES, Opcode.ATTENTION_CONTEXT):
                        scores = word.opcode == Opcode.ATTENTION_SCORES
                        offset = word.arg * params.head_vectors
                        m.d.comb += [stager.start.eq(1), stager.transpose.eq(scores),
                                     stager.src_base.eq(base(word.src_b) + offset),
                                     stager.stride.eq(stride(word.src_b)),
                                     stager.tokens.eq(rows),
                                     stager.dst.eq(Mux(scores,
                                                       constants.tensors[KEYS].weight_base,
                                                       constants.tensors[VALUES].weight_base))]
                        m.d.sync += [staging.eq(1),
                                     tensor_index.eq(Mux(scores, KEYS, VALUES)),
                                     gemm_raw.eq(scores),
                                     gemm_act_base.eq(base(word.src_a) + Mux(scores, offset, 0)),
                                     gemm_act_stride.eq(stride(word.src_a)),
                                     gemm_out_base.eq(base(word.dst) + Mux(scores, 0, offset)),
                                     gemm_out_stride.eq(stride(word.dst)),
                                     gemm_tokens.eq(rows)]
                        m.next = "STAGE"
                    with m.Case(Opcode.SOFTMAX):
                        start_rows(Owner.SOFTMAX, word.src_a, word.dst, rows, rows)
                        m.d.sync += owner.eq(Owner.SOFTMAX)
                        m.next = "ROWS"
                    with m.Case(Opcode.GELU):
                        start_rows(Owner.GELU, word.src_a, word.dst, rows, constants.ffn)
                        m.d.sync += owner.eq(Owner.GELU)
                        m.next = "ROWS"
                    with m.Case(Opcode.RESIDUAL):
                        m.d.comb += [residual_unit.start.eq(1),
                                     residual_unit.a_base.eq(base(word.src_a)),
                                     residual_unit.b_base.eq(base(word.src_b)),
                                     residual_unit.out_base.eq(base(word.dst)),
                                     residual_unit.stride.eq(stride(word.dst)),
                                     residual_unit.rows.eq(rows),
                                     residual_unit.words.eq(params.hidden_vectors)]
                        m.d.sync += owner.eq(Owner.RESIDUAL)
                        m.next = "ROWS"
                    with m.Case(Opcode.TOKEN_GATHER):
                        protected = word.arg2[:GATHER_PROTECTED_BITS]
                        fuse = word.arg2[GATHER_PROTECTED_BITS]
                        dropped = rows != word.arg
                        m.d.comb += [gather_stage.start.eq(1), gather_stage.tokens.eq(rows),
                                     gather_stage.keep.eq(word.arg - protected
                                                          - (fuse & dropped)),
                                     gather_stage.protected.eq(protected),
                                     gather_stage.fuse.eq(fuse),
                                     gather_stage.src_base.eq(base(word.src_a)),
                                     gather_stage.dst_base.eq(base(word.dst)),
                                     gather_stage.stride.eq(stride(word.dst))]
                        m.d.sync += owner.eq(Owner.GATHER)
                        m.next = "GATHER"
                    with m.Default():          # not an instruction this engine runs
                        m.d.sync += [running.eq(0), self.done.eq(1), self.error.eq(1)]
                        m.next = "IDLE"
            with m.State("AFFINE"):
                with m.If(affine_index == self._affine_beats - 1):
                    m.d.sync += affine_streaming.eq(0)
                    m.next = "AFFINE_LAST"
                with m.Else():
                    m.d.sync += affine_index.eq(affine_index + 1)
            with m.State("AFFINE_LAST"):
                start_rows(Owner.LAYERNORM, instruction.src_a, instruction.dst, rows, mm.hidden)
                m.next = "ROWS"
            with m.State("ROWS"):
                finished = (writers[Owner.LAYERNORM].finished | writers[Owner.SOFTMAX].finished
                            | writers[Owner.GELU].finished | residual_unit.finished)
                with m.If(finished):
                    m.d.comb += op_done.eq(1)
                    m.d.sync += owner.eq(Owner.LOAD)
                    m.next = "FETCH"
            with m.State("GATHER"):
                with m.If(gather_stage.finished):
                    m.d.comb += op_done.eq(1)
                    m.d.sync += [owner.eq(Owner.LOAD), rows.eq(instruction.arg)]
                    m.next = "FETCH"
            with m.State("STAGE"):
                with m.If(stager.finished):
                    m.d.sync += [staging.eq(0), owner.eq(Owner.GEMM)]
                    m.next = "GEMM_ISSUE"
            with m.State("GEMM_ISSUE"):
                m.d.comb += gemm.job.valid.eq(1)
                with m.If(gemm.job.ready):
                    m.next = "GEMM_WAIT"
            with m.State("GEMM_WAIT"):
                with m.If(gemm.done):
                    m.d.comb += op_done.eq(1)
                    m.d.sync += owner.eq(Owner.LOAD)
                    m.next = "FETCH"

        # ---- counters and trace --------------------------------------------------------------
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(op_done):
            m.d.sync += [pc.eq(pc + 1), instruction_cycles.eq(0)]
            m.d.comb += [trace_write.addr.eq(pc), trace_write.data.eq(instruction_cycles + 1),
                         trace_write.en.eq(1)]
            for code in Opcode:
                with m.If(op == code):
                    m.d.sync += self.opcode_cycles[code].eq(
                        self.opcode_cycles[code] + instruction_cycles + 1)
        with m.Elif(running):
            m.d.sync += instruction_cycles.eq(instruction_cycles + 1)
