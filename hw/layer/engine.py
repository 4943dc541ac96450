# amaranth: UnusedElaboratable=no
"""The encoder-layer engine: runs a layer program over a scratchpad with all the units.

One generated top holds the block-sparse GEMM engine (``hw.gemm.gemm_core``), the softmax,
GELU and LayerNorm units (``hw.units``), the residual-add unit, the weight stager that turns a
head's keys and values into GEMM weights, a scratchpad of vectors holding every buffer of the
program (``hw.layer.memory_map``), and a sequencer that fetches the program's instructions
(``sw.image.program``) and runs them one after the other. The head-skip control is the
program itself: the exporter emits attention instructions for the kept heads only, and the
Q, K, V weights hold the kept heads' rows only, so nothing of a removed head is fetched or
computed.

Timing is specified by ``sw.cycle_model.layer_engine`` (its docstring is the timeline); the
co-simulation checks every instruction's cycles against it. Per instruction the sequencer
records its cycles in a trace memory, and per opcode it keeps a busy counter.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.gemm.gemm_core import GemmCore
from hw.gemm.geometry import GemmGeometry, LoadTarget as GemmTarget
from hw.layer.gather_stage import GatherStage
from hw.layer.loading import KEYS, TENSORS, VALUES, gemm_capacity
from hw.layer.memory_map import LANE_WIDTH, LayerMemoryMap
from hw.layer.residual_add import ResidualAdd, residual_constants_layout
from hw.layer.row_reader import RowReader
from hw.layer.row_writer import RowWriter
from hw.layer.weight_stager import WeightStager
from hw.units.gelu import Gelu
from hw.units.layernorm import LayerNorm
from hw.units.softmax import Softmax
from sw.config import AcceleratorConfig
from sw.golden.encoder_layer import RESIDUAL_BITS
from sw.image.program import Buffer, Opcode, layer_program

#: Width of the cycle counters and trace entries.
COUNTER_WIDTH = 32

#: Width of one write of the constants register.
CONSTANT_CHUNK = 32


class EngineTarget(enum.Enum, shape=3):
    """Memory written by a load command of the layer engine."""

    SCRATCH = 0     #: scratchpad vector ``addr``
    PROGRAM = 1     #: instruction ``addr`` (64 bits, ``sw.image.program`` encoding)
    GEMM = 2        #: a load command of the GEMM engine, packed in ``data``
    CONSTANTS = 3   #: bits ``32 * addr ..`` of the constants register
    AFFINE = 4      #: LayerNorm gamma / beta write ``addr`` (set ``addr // beats``)


def program_capacity(config: AcceleratorConfig) -> int:
    """Instructions the program memory holds: the dense layer's program with a gather."""
    m = config.model
    return len(layer_program(range(m.num_heads), tokens=m.tokens, token_keep=1)) + 1


def instruction_layout() -> data.StructLayout:
    """An instruction as the 64-bit little-endian word of ``sw.image.program``."""
    return data.StructLayout({"opcode": unsigned(8), "dst": unsigned(8), "src_a": unsigned(8),
                              "src_b": unsigned(8), "arg": unsigned(16), "arg2": unsigned(16)})


def engine_gemm_geometry(config: AcceleratorConfig) -> GemmGeometry:
    """The GEMM engine of a layer engine: memories sized for the densest layer's weights."""
    from dataclasses import replace
    capacity = gemm_capacity(config)
    mm = LayerMemoryMap.from_config(config)
    base = GemmGeometry.from_config(config)
    return replace(base, act_depth=mm.depth, out_depth=mm.depth,
                   weight_depth=capacity["weight"], row_ptr_depth=capacity["row_ptr"],
                   quant_depth=capacity["quant"], max_inner=max(base.max_inner, mm.keys),
                   max_outer=max(base.max_outer, mm.keys))


def build_layer_engine(config: AcceleratorConfig) -> "LayerEngine":
    """The layer engine of ``config``, after checking that the config can hold one (so a bad
    config raises ``LayerEngineError`` before any component exists)."""
    LayerMemoryMap.from_config(config)
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
        self._map = mm = LayerMemoryMap.from_config(config)
        self._gemm_geometry = g = engine_gemm_geometry(config)
        self._gemm = GemmCore(g, act_width=config.hardware.data_width + 1)
        self._softmax = Softmax.from_config(config)
        self._gelu = Gelu.from_config(config)
        self._layernorm = LayerNorm.from_config(config)
        self._program_depth = program_capacity(config)
        hw = config.hardware
        vector = data.ArrayLayout(signed(LANE_WIDTH), mm.lanes)
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
            }), len(TENSORS)),
        })
        widths = [vector.size, 64, data.Layout.cast(gemm_load).size, CONSTANT_CHUNK,
                  data.Layout.cast(affine).size]
        self._load_layout = data.StructLayout({
            "target": EngineTarget,
            "addr": range(max(mm.depth, 2 * self._affine_beats, self._program_depth, 1 << 8)),
            "data": unsigned(max(widths))})
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
    def memory_map(self) -> LayerMemoryMap:
        return self._map

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
        mm, cfg = self._map, self._config
        hw = cfg.hardware
        c = mm.lanes
        regions = mm.regions
        m.submodules.gemm = gemm = self._gemm
        m.submodules.softmax = softmax = self._softmax
        m.submodules.gelu = gelu = self._gelu
        m.submodules.layernorm = layernorm = self._layernorm

        # ---- memories ----------------------------------------------------------------------
        vector = data.ArrayLayout(signed(LANE_WIDTH), c)
        m.submodules.scratch = scratch = Memory(shape=vector, depth=mm.depth, init=[])
        read_a, read_b = scratch.read_port(), scratch.read_port()
        write = scratch.write_port()
        readback = scratch.read_port()
        m.d.comb += [readback.addr.eq(self.read_addr), self.read_data.eq(readback.data)]
        m.submodules.program = program = Memory(shape=instruction_layout(),
                                                depth=self._program_depth, init=[])
        program_read, program_write = program.read_port(), program.write_port()
        m.submodules.trace = trace = Memory(shape=unsigned(COUNTER_WIDTH),
                                            depth=self._program_depth, init=[])
        trace_read, trace_write = trace.read_port(), trace.write_port()
        m.d.comb += [trace_read.addr.eq(self.trace_addr), self.trace_data.eq(trace_read.data)]
        affine_shape = layernorm.signature.members["affine"].signature.members["payload"].shape
        m.submodules.affine = affine_mem = Memory(shape=affine_shape,
                                                  depth=2 * self._affine_beats, init=[])
        affine_read, affine_write = affine_mem.read_port(), affine_mem.write_port()
        constants = Signal(self._constants_layout)

        # ---- load port ---------------------------------------------------------------------
        running = Signal()
        command = self.load.payload
        loading = self.load.valid & self.load.ready
        m.d.comb += self.load.ready.eq(~running)
        m.d.comb += [program_write.addr.eq(command.addr), program_write.data.eq(command.data),
                     program_write.en.eq(loading & (command.target == EngineTarget.PROGRAM)),
                     affine_write.addr.eq(command.addr), affine_write.data.eq(command.data),
                     affine_write.en.eq(loading & (command.target == EngineTarget.AFFINE))]
        raw_constants = constants.as_value()
        with m.If(loading & (command.target == EngineTarget.CONSTANTS)):
            with m.Switch(command.addr):
                for chunk in range(-(-len(raw_constants) // CONSTANT_CHUNK)):
                    with m.Case(chunk):
                        part = raw_constants[chunk * CONSTANT_CHUNK:(chunk + 1) * CONSTANT_CHUNK]
                        m.d.sync += part.eq(command.data)

        # ---- units around the scratchpad ---------------------------------------------------
        def reader(name, unit, max_length):
            shape = unit.signature.members["i"].signature.members["payload"].shape.elem_shape
            r = RowReader(vector_lanes=c, lanes=unit.lanes, out_shape=shape,
                          max_rows=mm.tokens, max_length=max_length, depth=mm.depth)
            m.submodules[f"{name}_reader"] = r
            m.d.comb += [unit.i.payload.eq(r.o.payload), unit.i.valid.eq(r.o.valid),
                         r.o.ready.eq(unit.i.ready)]
            return r

        def writer(name, unit, max_length):
            shape = unit.signature.members["o"].signature.members["payload"].shape.elem_shape
            w = RowWriter(vector_lanes=c, lanes=unit.lanes, in_shape=shape,
                          max_rows=mm.tokens, max_length=max_length, depth=mm.depth)
            m.submodules[f"{name}_writer"] = w
            m.d.comb += [w.i.payload.eq(unit.o.payload), w.i.valid.eq(unit.o.valid),
                         unit.o.ready.eq(w.i.ready)]
            return w

        readers = {"layernorm": reader("layernorm", layernorm, mm.hidden),
                   "softmax": reader("softmax", softmax, mm.keys),
                   "gelu": reader("gelu", gelu, mm.ffn)}
        writers = {"layernorm": writer("layernorm", layernorm, mm.hidden),
                   "softmax": writer("softmax", softmax, mm.keys),
                   "gelu": writer("gelu", gelu, mm.ffn)}
        m.submodules.residual = residual = ResidualAdd(
            vector_lanes=c, in_width=RESIDUAL_BITS, out_width=RESIDUAL_BITS,
            multiplier_width=hw.multiplier_width, max_rows=mm.tokens,
            max_words=mm.regions[Buffer.INPUT].stride, depth=mm.depth)
        g = self._gemm_geometry
        m.submodules.stager = stager = WeightStager(
            lanes=c, block_rows=hw.block_rows, block_cols=hw.block_cols, keys=mm.keys,
            head_dim=mm.head_dim, data_width=hw.data_width, max_rows=mm.tokens,
            depth=mm.depth, weight_depth=g.weight_depth)

        m.d.comb += [softmax.constants.eq(constants.softmax), gelu.constants.eq(constants.gelu)]
        m.submodules.gather_stage = gather_stage = GatherStage(cfg, depth=mm.depth, lanes=c)

        # ---- sequencer ---------------------------------------------------------------------
        pc = Signal(range(self._program_depth + 1))
        instruction = Signal(instruction_layout())
        rows = Signal(range(mm.tokens + 1))          # token rows of the current buffers
        instruction_cycles = Signal(COUNTER_WIDTH)
        op_done = Signal()                            # comb: the instruction's last cycle
        m.d.comb += program_read.addr.eq(pc)

        bases = data.ArrayLayout(range(mm.depth + 1), len(Buffer))
        strides = data.ArrayLayout(range(max(r.stride for r in regions.values()) + 1),
                                   len(Buffer))
        base_of = Signal(bases, init=[regions[b].base for b in Buffer])
        stride_of = Signal(strides, init=[regions[b].stride for b in Buffer])

        def base(buffer):
            return base_of[buffer]

        def stride(buffer):
            return stride_of[buffer]

        op = instruction.opcode
        slot_offset = instruction.arg * (mm.head_dim // c)
        layernorm_set = Signal()
        residual_set = Signal()
        m.d.comb += [residual.constants.eq(constants.residual[residual_set])]
        m.d.comb += layernorm.constants.eq(constants.layernorm[layernorm_set])

        # GEMM job fields of the current instruction
        tensor_index = Signal(range(len(TENSORS)))
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

        # scratchpad port sharing: whichever unit runs owns the ports
        owner = Signal(range(7))       # 0 none, 1 gemm, 2 layernorm, 3 softmax, 4 gelu,
        #                                5 residual, 6 gather; the stager reads port a too
        staging = Signal()
        act_lanes = Signal(gemm.signature.members["act_data"].shape)
        for lane in range(hw.array_rows):
            width = act_lanes[lane].shape().width
            m.d.comb += act_lanes[lane].eq(read_a.data[lane][:width])
        m.d.comb += gemm.act_data.eq(act_lanes)
        with m.If(staging):
            m.d.comb += read_a.addr.eq(stager.mem_addr)
        with m.Else():
            with m.Switch(owner):
                with m.Case(0):        # idle: the load port writes
                    m.d.comb += [write.addr.eq(command.addr), write.data.eq(command.data),
                                 write.en.eq(loading & (command.target == EngineTarget.SCRATCH))]
                with m.Case(1):
                    m.d.comb += [read_a.addr.eq(gemm.act_addr), write.addr.eq(gemm.out_addr),
                                 write.en.eq(gemm.out_en)]
                    for lane in range(c):
                        m.d.comb += write.data[lane].eq(gemm.out_data[lane])
                for index, name in ((2, "layernorm"), (3, "softmax"), (4, "gelu")):
                    with m.Case(index):
                        m.d.comb += [read_a.addr.eq(readers[name].mem_addr),
                                     write.addr.eq(writers[name].mem_addr),
                                     write.data.eq(writers[name].mem_data),
                                     write.en.eq(writers[name].mem_en)]
                with m.Case(6):
                    m.d.comb += [read_a.addr.eq(gather_stage.mem_addr),
                                 write.addr.eq(gather_stage.write_addr),
                                 write.data.eq(gather_stage.write_data),
                                 write.en.eq(gather_stage.write_en)]
                with m.Case(5):
                    m.d.comb += [read_a.addr.eq(residual.a_addr),
                                 read_b.addr.eq(residual.b_addr),
                                 write.addr.eq(residual.mem_addr),
                                 write.data.eq(residual.mem_data),
                                 write.en.eq(residual.mem_en)]
        for name in readers:
            m.d.comb += readers[name].mem_data.eq(read_a.data)
        m.d.comb += [gather_stage.mem_data.eq(read_a.data)]
        # every head's CLS probability row goes into the token scores as it is written
        softmax_writer = writers["softmax"]
        m.d.comb += [gather_stage.add.eq((owner == 3) & softmax_writer.mem_en
                                         & (softmax_writer.row == 0)),
                     gather_stage.first.eq(instruction.arg == 0),
                     gather_stage.add_word.eq(softmax_writer.word),
                     gather_stage.add_data.eq(softmax_writer.mem_data)]
        m.d.comb += [stager.mem_data.eq(read_a.data), residual.a_data.eq(read_a.data),
                     residual.b_data.eq(read_b.data)]

        # GEMM load port: the driver while idle, the stager while staging
        gemm_command = gemm.load.payload
        with m.If(staging):
            m.d.comb += [gemm_command.target.eq(GemmTarget.WEIGHT),
                         gemm_command.addr.eq(stager.weight_addr),
                         gemm_command.data.eq(stager.weight_data),
                         gemm.load.valid.eq(stager.weight_en)]
        with m.Else():
            m.d.comb += [gemm_command.eq(command.data),
                         gemm.load.valid.eq(loading & (command.target == EngineTarget.GEMM))]

        # affine set streaming into LayerNorm
        affine_index = Signal(range(self._affine_beats + 1))
        affine_streaming = Signal()
        affine_valid = Signal()
        m.d.comb += affine_read.addr.eq(layernorm_set * self._affine_beats + affine_index)
        m.d.sync += affine_valid.eq(affine_streaming)
        m.d.comb += [layernorm.affine.payload.eq(affine_read.data),
                     layernorm.affine.valid.eq(affine_valid)]

        def start_rows(name, src, dst, count, length):
            r, w = readers[name], writers[name]
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
                word = program_read.data
                m.d.sync += instruction.eq(word)
                m.d.sync += [layernorm_set.eq(word.arg[0]), residual_set.eq(word.arg[0])]
                with m.Switch(word.opcode):
                    with m.Case(Opcode.END):
                        m.d.sync += [running.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                    with m.Case(Opcode.LAYERNORM):
                        m.d.sync += [affine_index.eq(0), affine_streaming.eq(1),
                                     owner.eq(2)]
                        m.next = "AFFINE"
                    with m.Case(Opcode.GEMM):
                        m.d.sync += [tensor_index.eq(word.arg), gemm_raw.eq(0),
                                     gemm_act_base.eq(base(word.src_a)),
                                     gemm_act_stride.eq(stride(word.src_a)),
                                     gemm_out_base.eq(base(word.dst)),
                                     gemm_out_stride.eq(stride(word.dst)),
                                     gemm_tokens.eq(rows), owner.eq(1)]
                        m.next = "GEMM_ISSUE"
                    with m.Case(Opcode.ATTENTION_SCORES, Opcode.ATTENTION_CONTEXT):
                        scores = word.opcode == Opcode.ATTENTION_SCORES
                        offset = word.arg * (mm.head_dim // c)
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
                        start_rows("softmax", word.src_a, word.dst, rows, rows)
                        m.d.sync += owner.eq(3)
                        m.next = "ROWS"
                    with m.Case(Opcode.GELU):
                        start_rows("gelu", word.src_a, word.dst, rows, constants.ffn)
                        m.d.sync += owner.eq(4)
                        m.next = "ROWS"
                    with m.Case(Opcode.RESIDUAL):
                        m.d.comb += [residual.start.eq(1), residual.a_base.eq(base(word.src_a)),
                                     residual.b_base.eq(base(word.src_b)),
                                     residual.out_base.eq(base(word.dst)),
                                     residual.stride.eq(stride(word.dst)),
                                     residual.rows.eq(rows),
                                     residual.words.eq(mm.hidden // c)]
                        m.d.sync += owner.eq(5)
                        m.next = "ROWS"
                    with m.Case(Opcode.TOKEN_GATHER):
                        protected, fuse = word.arg2[:8], word.arg2[8]
                        dropped = rows != word.arg
                        m.d.comb += [gather_stage.start.eq(1), gather_stage.tokens.eq(rows),
                                     gather_stage.keep.eq(word.arg - protected
                                                          - (fuse & dropped)),
                                     gather_stage.protected.eq(protected),
                                     gather_stage.fuse.eq(fuse),
                                     gather_stage.src_base.eq(base(word.src_a)),
                                     gather_stage.dst_base.eq(base(word.dst)),
                                     gather_stage.stride.eq(stride(word.dst))]
                        m.d.sync += owner.eq(6)
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
                start_rows("layernorm", instruction.src_a, instruction.dst, rows, mm.hidden)
                m.next = "ROWS"
            with m.State("ROWS"):
                finished = (writers["layernorm"].finished | writers["softmax"].finished
                            | writers["gelu"].finished | residual.finished)
                with m.If(finished):
                    m.d.comb += op_done.eq(1)
                    m.d.sync += owner.eq(0)
                    m.next = "FETCH"
            with m.State("GATHER"):
                with m.If(gather_stage.finished):
                    m.d.comb += op_done.eq(1)
                    m.d.sync += [owner.eq(0), rows.eq(instruction.arg)]
                    m.next = "FETCH"
            with m.State("STAGE"):
                with m.If(stager.finished):
                    m.d.sync += [staging.eq(0), owner.eq(1)]
                    m.next = "GEMM_ISSUE"
            with m.State("GEMM_ISSUE"):
                m.d.comb += gemm.job.valid.eq(1)
                with m.If(gemm.job.ready):
                    m.next = "GEMM_WAIT"
            with m.State("GEMM_WAIT"):
                with m.If(gemm.done):
                    m.d.comb += op_done.eq(1)
                    m.d.sync += owner.eq(0)
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
        return m
