# amaranth: UnusedElaboratable=no
"""The layer engine's sequencer: fetches each instruction, starts its unit, waits for its end.

Per instruction: a fetch cycle (the program memory's registered read of ``pc``), a decode cycle
in which the instruction's unit is started and given the scratchpad ports (``owner``), then the
unit's own work until its last write, in which the next fetch is decided. The cycles of every
instruction go into the trace (``trace_*``), the sum per opcode into ``opcode_cycles``.
``sw.cycle_model.layer_engine`` is the timeline this must keep, cycle for cycle.

The sequencer drives the control inputs of the units it starts through ports that mirror them
(same names, same shapes: :func:`control_signature`); the engine ties each to its unit.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.layer.loader import instruction_layout
from hw.layer.scratchpad import Owner
from sw.cycle_model.layer_engine import EPILOGUE_LATENCY
from sw.engine_params import KEYS, VALUES, EngineParams
from sw.isa import EPILOGUE_BITS, GATHER_PROTECTED_BITS, Epilogue, Opcode

__all__ = ["COUNTER_WIDTH", "ROW_UNITS", "ROW_CONTROL", "STAGER_CONTROL", "GATHER_CONTROL",
           "control_signature", "Sequencer"]

#: Width of the cycle counters and trace entries.
COUNTER_WIDTH = 32

#: The units that run from scratchpad rows to scratchpad rows, by their :class:`Owner`.
ROW_UNITS = (Owner.LAYERNORM, Owner.SOFTMAX)

#: Control inputs of a row reader / writer, the weight stager, the gather.
ROW_CONTROL = ("start", "base", "stride", "rows", "length")
STAGER_CONTROL = ("start", "transpose", "src_base", "stride", "tokens", "dst")
GATHER_CONTROL = ("start", "tokens", "keep", "protected", "fuse", "src_base", "dst_base",
                  "stride")


def control_signature(unit: wiring.Component, names) -> wiring.Signature:
    """Outputs that drive ``unit``'s inputs ``names``, each of the input's shape."""
    members = unit.signature.members
    return wiring.Signature({name: Out(members[name].shape) for name in names})


def drive(m: Module, unit: wiring.Component, control) -> None:
    """Tie ``unit``'s inputs to the ``control`` port made by :func:`control_signature`."""
    for name in control.signature.members:
        m.d.comb += getattr(unit, name).eq(getattr(control, name))


class Sequencer(wiring.Component):
    """Runs a layer program, one instruction after the other (see the module docstring).

    Parameters
    ----------
    params : EngineParams
    program_depth : int
        Instructions of the program memory.
    affine_beats : int
        Gamma / beta words of one LayerNorm set.
    constants_layout : Layout
        The engine's constants register (``tokens``, ``ffn``, ``tensors``).
    readers, writers : dict of Owner to RowReader / RowWriter
        The row units' readers and writers (their control shapes).
    stager, gather, gemm : Component
        ``WeightStager``, ``GatherStage``, ``GemmCore`` (shapes only).

    Members
    -------
    job : In(stream.Signature(1))
        Start the program (ready while idle).
    done, error, running : Out(1)
    cycles : Out(COUNTER_WIDTH)
    opcode_cycles : Out(ArrayLayout(COUNTER_WIDTH, len(Opcode)))
    pc : Out
        Address of the instruction to fetch; ``instruction`` (In) is it a cycle later.
    current : Out(instruction_layout())
        The instruction being run.
    constants : In(constants_layout)
    owner : Out(Owner)
    staging : Out(1)
    layernorm_set, residual_set : Out(1)
        The constant set of the current LAYERNORM / the current GEMM's residual epilogue.
    epilogue : Out(EPILOGUE_BITS)
        The current GEMM's :class:`~sw.isa.Epilogue` (``NONE`` for the attention products).
    skip_offset : Out
        The current GEMM's skip buffer base minus its output base, modulo the address width.
    affine_addr, affine_valid : Out
        Gamma / beta word to read, and a word read the cycle before goes into LayerNorm.
    trace_addr, trace_data, trace_en : Out
        The write of an instruction's cycles into the trace.
    layernorm_reader, ..., softmax_writer, stager, gather : Out(control_signature)
    gemm_job : Out(stream.Signature(job layout of ``gemm``))
        A linear's job is ``streamed``: its weights come from external memory.
    fetch_start, fetch_base, fetch_words : Out
        Start the weight fetcher on the linear's words as its GEMM job is accepted.
    rows_finished, stager_finished, gather_finished, gemm_done : In(1)
    """

    def __init__(self, *, params: EngineParams, program_depth: int, affine_beats: int,
                 constants_layout, readers: dict, writers: dict, stager, gather, gemm):
        self._params, self._program_depth = params, program_depth
        self._affine_beats = affine_beats
        rows = {}
        for owner in ROW_UNITS:
            name = owner.name.lower()
            rows[f"{name}_reader"] = Out(control_signature(readers[owner], ROW_CONTROL))
            rows[f"{name}_writer"] = Out(control_signature(writers[owner], ROW_CONTROL))
        super().__init__({
            "job": In(stream.Signature(1)),
            "done": Out(1), "error": Out(1), "running": Out(1),
            "cycles": Out(COUNTER_WIDTH),
            "opcode_cycles": Out(data.ArrayLayout(COUNTER_WIDTH, len(Opcode))),
            "pc": Out(range(program_depth + 1)),
            "instruction": In(instruction_layout()),
            "current": Out(instruction_layout()),
            "constants": In(constants_layout),
            "owner": Out(Owner), "staging": Out(1),
            "layernorm_set": Out(1), "residual_set": Out(1),
            "epilogue": Out(EPILOGUE_BITS),
            "skip_offset": Out(Signal(range(params.memory_map.depth)).shape().width),
            "affine_addr": Out(range(2 * affine_beats)), "affine_valid": Out(1),
            "trace_addr": Out(range(program_depth)), "trace_data": Out(COUNTER_WIDTH),
            "trace_en": Out(1),
            **rows,
            "stager": Out(control_signature(stager, STAGER_CONTROL)),
            "gather": Out(control_signature(gather, GATHER_CONTROL)),
            # the GEMM's job port as its driver sees it
            "gemm_job": Out(gemm.signature.members["job"].signature.flip()),
            "fetch_start": Out(1),
            "fetch_base": Out(constants_layout["tensors"].shape.elem_shape["stream_base"].shape),
            "fetch_words": Out(
                constants_layout["tensors"].shape.elem_shape["stream_words"].shape),
            "rows_finished": In(1), "stager_finished": In(1), "gather_finished": In(1),
            "gemm_done": In(1),
        })

    def _row_control(self, owner: Owner, side: str):
        return getattr(self, f"{owner.name.lower()}_{side}")

    def elaborate(self, platform):
        m = Module()
        params = self._params
        mm = params.memory_map
        regions = mm.regions
        constants = self.constants
        running, staging, owner = self.running, self.staging, self.owner
        pc = self.pc
        instruction = self.current
        rows = Signal(range(mm.tokens + 1))          # token rows of the current buffers
        instruction_cycles = Signal(COUNTER_WIDTH)
        op_done = Signal()                            # comb: the instruction's last cycle
        draining = Signal(range(EPILOGUE_LATENCY))

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
        layernorm_set, residual_set = self.layernorm_set, self.residual_set

        # GEMM job fields of the current instruction
        tensor_index = Signal(range(len(constants.tensors)))
        tensor = constants.tensors[tensor_index]
        job = self.gemm_job.payload
        gemm_raw, gemm_streamed = Signal(), Signal()
        gemm_act_base, gemm_act_stride = Signal(range(mm.depth)), Signal.like(stride_of[0])
        gemm_out_base, gemm_out_stride = Signal(range(mm.depth)), Signal.like(stride_of[0])
        gemm_tokens = Signal.like(rows)
        m.d.comb += [job.tokens.eq(gemm_tokens), job.in_tiles.eq(tensor.in_tiles),
                     job.out_block_rows.eq(tensor.out_block_rows),
                     job.row_ptr_base.eq(tensor.row_ptr_base),
                     job.quant_base.eq(tensor.quant_base), job.raw.eq(gemm_raw),
                     job.streamed.eq(gemm_streamed),
                     self.fetch_base.eq(tensor.stream_base),
                     self.fetch_words.eq(tensor.stream_words),
                     job.act_base.eq(gemm_act_base), job.act_stride.eq(gemm_act_stride),
                     job.out_base.eq(gemm_out_base), job.out_stride.eq(gemm_out_stride)]

        # affine set streaming into LayerNorm
        affine_index = Signal(range(self._affine_beats + 1))
        affine_streaming = Signal()
        m.d.comb += self.affine_addr.eq(layernorm_set * self._affine_beats + affine_index)
        m.d.sync += self.affine_valid.eq(affine_streaming)

        def start_rows(unit, src, dst, count, length):
            r, w = self._row_control(unit, "reader"), self._row_control(unit, "writer")
            m.d.comb += [r.start.eq(1), w.start.eq(1),
                         r.base.eq(base(src)), r.stride.eq(stride(src)),
                         w.base.eq(base(dst)), w.stride.eq(stride(dst)),
                         r.rows.eq(count), w.rows.eq(count),
                         r.length.eq(length), w.length.eq(length)]

        stager, gather = self.stager, self.gather
        epilogue, skip_offset = self.epilogue, self.skip_offset
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
                word = self.instruction
                m.d.sync += instruction.eq(word)
                m.d.sync += [layernorm_set.eq(word.arg[0]),
                             residual_set.eq(word.arg2[EPILOGUE_BITS]),
                             epilogue.eq(Epilogue.NONE)]
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
                                     gemm_streamed.eq(1),
                                     gemm_act_base.eq(base(word.src_a)),
                                     gemm_act_stride.eq(stride(word.src_a)),
                                     gemm_out_base.eq(base(word.dst)),
                                     gemm_out_stride.eq(stride(word.dst)),
                                     gemm_tokens.eq(rows), owner.eq(Owner.GEMM),
                                     epilogue.eq(word.arg2[:EPILOGUE_BITS]),
                                     skip_offset.eq(base(word.src_b) - base(word.dst))]
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
                                     gemm_raw.eq(scores), gemm_streamed.eq(0),
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
                    with m.Case(Opcode.TOKEN_GATHER):
                        protected = word.arg2[:GATHER_PROTECTED_BITS]
                        fuse = word.arg2[GATHER_PROTECTED_BITS]
                        dropped = rows != word.arg
                        m.d.comb += [gather.start.eq(1), gather.tokens.eq(rows),
                                     gather.keep.eq(word.arg - protected - (fuse & dropped)),
                                     gather.protected.eq(protected),
                                     gather.fuse.eq(fuse),
                                     gather.src_base.eq(base(word.src_a)),
                                     gather.dst_base.eq(base(word.dst)),
                                     gather.stride.eq(stride(word.dst))]
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
                with m.If(self.rows_finished):
                    m.d.comb += op_done.eq(1)
                    m.d.sync += owner.eq(Owner.LOAD)
                    m.next = "FETCH"
            with m.State("GATHER"):
                with m.If(self.gather_finished):
                    m.d.comb += op_done.eq(1)
                    m.d.sync += [owner.eq(Owner.LOAD), rows.eq(instruction.arg)]
                    m.next = "FETCH"
            with m.State("STAGE"):
                with m.If(self.stager_finished):
                    m.d.sync += [staging.eq(0), owner.eq(Owner.GEMM)]
                    m.next = "GEMM_ISSUE"
            with m.State("GEMM_ISSUE"):
                m.d.comb += self.gemm_job.valid.eq(1)
                with m.If(self.gemm_job.ready):
                    m.d.comb += self.fetch_start.eq(gemm_streamed)
                    m.next = "GEMM_WAIT"
            with m.State("GEMM_WAIT"):
                with m.If(self.gemm_done):
                    m.d.sync += draining.eq(0)
                    m.next = "EPILOGUE"
            with m.State("EPILOGUE"):           # the last outputs pass through the epilogue
                m.d.sync += draining.eq(draining + 1)
                with m.If(draining == EPILOGUE_LATENCY - 1):
                    m.d.comb += op_done.eq(1)
                    m.d.sync += owner.eq(Owner.LOAD)
                    m.next = "FETCH"

        # ---- counters and trace --------------------------------------------------------------
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(op_done):
            m.d.sync += [pc.eq(pc + 1), instruction_cycles.eq(0)]
            m.d.comb += [self.trace_addr.eq(pc), self.trace_data.eq(instruction_cycles + 1),
                         self.trace_en.eq(1)]
            for code in Opcode:
                with m.If(op == code):
                    m.d.sync += self.opcode_cycles[code].eq(
                        self.opcode_cycles[code] + instruction_cycles + 1)
        with m.Elif(running):
            m.d.sync += instruction_cycles.eq(instruction_cycles + 1)
        return m
