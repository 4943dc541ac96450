# amaranth: UnusedElaboratable=no
"""The layer engine's load port and instruction store: load commands in, instructions out.

While the engine is idle, each ``load`` command writes one word of the memory its
:class:`EngineTarget` names: a scratchpad vector (passed on to the scratchpad arbiter), an
instruction of the program memory, a command of the GEMM engine's own load port (passed on), a
32-bit chunk of the constants register, a LayerNorm gamma / beta word or an entry of the GEMM
epilogue's GELU table (``hw.layer.gemm_epilogue``). The sequencer reads
the program memory (registered: the instruction at ``program_addr`` a cycle later, laid out by
:func:`instruction_layout`, the hardware view of ``sw.isa``'s field table) and the gamma / beta
memory, and the units see the constants register.
"""

from amaranth.hdl import Module, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.layer.scratchpad import ScratchWrite
from sw.isa import FIELDS

__all__ = ["CONSTANT_CHUNK", "EngineTarget", "instruction_layout", "EngineLoader"]

#: Width of one write of the constants register.
CONSTANT_CHUNK = 32


class EngineTarget(enum.Enum, shape=3):
    """Memory written by a load command of the layer engine."""

    SCRATCH = 0     #: scratchpad vector ``addr``
    PROGRAM = 1     #: instruction ``addr`` (64 bits, ``sw.isa`` encoding)
    GEMM = 2        #: a load command of the GEMM engine, packed in ``data``
    CONSTANTS = 3   #: bits ``32 * addr ..`` of the constants register
    AFFINE = 4      #: LayerNorm gamma / beta write ``addr`` (set ``addr // beats``)
    GELU_TABLE = 5  #: GELU table entry ``addr`` (the input's two's-complement bits)


def instruction_layout() -> data.StructLayout:
    """An instruction as the little-endian word of ``sw.isa``: one field per ``sw.isa.FIELDS``
    entry, at its offset.

    >>> layout = instruction_layout()
    >>> layout.size, layout["arg"].offset, layout["arg"].shape
    (64, 32, unsigned(16))
    """
    layout = data.StructLayout({field.name: unsigned(field.bits) for field in FIELDS})
    assert all(layout[field.name].offset == field.offset for field in FIELDS)
    return layout


class EngineLoader(wiring.Component):
    """The load port's decoder, the program memory, the gamma / beta memory, the constants.

    Parameters
    ----------
    load_layout : StructLayout
        A load command: ``target`` (:class:`EngineTarget`), ``addr``, ``data``.
    constants_layout : Layout
        The constants register.
    program_depth : int
        Instructions of the program memory.
    affine_shape : ShapeLike
        One gamma / beta word; ``affine_depth`` of them are stored.
    affine_depth : int
    scratch_depth, lanes : int
        Shape of the scratchpad the ``scratch`` writes go to.
    gemm_command : Layout
        A load command of the GEMM engine.
    table_width : int
        Width of a GELU table entry (and of its address).

    Members
    -------
    load : In(stream.Signature(load_layout))
        Ready while ``running`` is low.
    running : In(1)
    scratch : Out(ScratchWrite)
        SCRATCH commands.
    gemm : Out(stream.Signature(gemm_command))
        GEMM commands (never waits for ``ready``: the GEMM engine takes loads while idle).
    program_addr : In(range(program_depth))
    instruction : Out(instruction_layout())
        Instruction ``program_addr`` of the cycle before.
    affine_addr : In(range(affine_depth))
    affine_data : Out(affine_shape)
        Registered like ``instruction``.
    constants : Out(constants_layout)
    table_addr, table_data, table_en : Out
        GELU_TABLE commands.
    """

    def __init__(self, *, load_layout, constants_layout, program_depth: int, affine_shape,
                 affine_depth: int, scratch_depth: int, lanes: int, gemm_command,
                 table_width: int):
        self._program_depth, self._affine_depth = program_depth, affine_depth
        self._affine_shape = affine_shape
        super().__init__({
            "load": In(stream.Signature(load_layout)),
            "running": In(1),
            "scratch": Out(ScratchWrite(depth=scratch_depth, lanes=lanes)),
            "gemm": Out(stream.Signature(gemm_command)),
            "program_addr": In(range(program_depth)),
            "instruction": Out(instruction_layout()),
            "affine_addr": In(range(affine_depth)),
            "affine_data": Out(affine_shape),
            "constants": Out(constants_layout),
            "table_addr": Out(table_width), "table_data": Out(table_width),
            "table_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.program = program = Memory(shape=instruction_layout(),
                                                depth=self._program_depth, init=[])
        program_read, program_write = program.read_port(), program.write_port()
        m.submodules.affine = affine = Memory(shape=self._affine_shape,
                                              depth=self._affine_depth, init=[])
        affine_read, affine_write = affine.read_port(), affine.write_port()
        m.d.comb += [program_read.addr.eq(self.program_addr),
                     self.instruction.eq(program_read.data),
                     affine_read.addr.eq(self.affine_addr), self.affine_data.eq(affine_read.data)]

        command = self.load.payload
        loading = self.load.valid & self.load.ready
        m.d.comb += self.load.ready.eq(~self.running)

        def writes(target):
            return loading & (command.target == target)

        m.d.comb += [program_write.addr.eq(command.addr), program_write.data.eq(command.data),
                     program_write.en.eq(writes(EngineTarget.PROGRAM)),
                     affine_write.addr.eq(command.addr), affine_write.data.eq(command.data),
                     affine_write.en.eq(writes(EngineTarget.AFFINE)),
                     self.scratch.addr.eq(command.addr), self.scratch.data.eq(command.data),
                     self.scratch.en.eq(writes(EngineTarget.SCRATCH)),
                     self.table_addr.eq(command.addr), self.table_data.eq(command.data),
                     self.table_en.eq(writes(EngineTarget.GELU_TABLE)),
                     self.gemm.payload.eq(command.data),
                     self.gemm.valid.eq(writes(EngineTarget.GEMM))]
        raw_constants = self.constants.as_value()
        with m.If(writes(EngineTarget.CONSTANTS)):
            with m.Switch(command.addr):
                for chunk in range(-(-len(raw_constants) // CONSTANT_CHUNK)):
                    with m.Case(chunk):
                        part = raw_constants[chunk * CONSTANT_CHUNK:(chunk + 1) * CONSTANT_CHUNK]
                        m.d.sync += part.eq(command.data)
        return m
