"""The layer engine's instruction set: opcodes, buffer ids and the one instruction field table.

Everything that encodes, decodes or executes an instruction derives from this module: the byte
encoding of a PROGRAM section (``sw.image.program``: :data:`INSTRUCTION_FIELDS`), the hardware's
instruction layout (``hw.layer.loader.instruction_layout``: an Amaranth ``StructLayout``
built from :data:`FIELDS`), the golden semantics (``sw.golden.layer_program``) and the cycle model
(``sw.cycle_model.layer_engine``). Fields are little-endian and packed in table order, so the
first field is the lowest byte of the 64-bit instruction word::

    >>> [(field.name, field.offset) for field in FIELDS]
    [('opcode', 0), ('dst', 8), ('src_a', 16), ('src_b', 24), ('arg', 32), ('arg2', 48)]
    >>> INSTRUCTION_BITS, INSTRUCTION_BYTES
    (64, 8)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["PROGRAM_VERSION", "PROGRAM_FIELDS", "Field", "FIELDS", "INSTRUCTION_FIELDS",
           "INSTRUCTION_BITS", "INSTRUCTION_BYTES", "UNUSED", "FIRST", "SECOND",
           "GATHER_PROTECTED_BITS", "TENSOR_ROLES", "Opcode", "Buffer", "Instruction",
           "gather_arg2", "gather_fields"]

#: Version of the instruction set; a reader accepts only the versions it knows.
PROGRAM_VERSION = 1

#: Start of a PROGRAM section; ``instruction_count`` instructions follow.
PROGRAM_FIELDS = (("program_version", "u32"), ("instruction_count", "u32"))


@dataclass(frozen=True)
class Field:
    """One field of an instruction: ``bits`` wide, from bit ``offset`` of the word."""

    name: str
    bits: int
    offset: int

    @property
    def kind(self) -> str:
        """``sw.packing`` field kind of the byte encoding (``"u8"``, ``"u16"``)."""
        return f"u{self.bits}"


def _fields(*named_widths) -> tuple:
    table, offset = [], 0
    for name, bits in named_widths:
        table.append(Field(name, bits, offset))
        offset += bits
    return tuple(table)


#: THE field table: name and width of every instruction field, lowest bits first.
FIELDS = _fields(("opcode", 8), ("dst", 8), ("src_a", 8), ("src_b", 8), ("arg", 16),
                 ("arg2", 16))

#: The byte encoding of one instruction (``sw.packing`` fields), from :data:`FIELDS`.
INSTRUCTION_FIELDS = tuple((field.name, field.kind) for field in FIELDS)

#: Bits and bytes of one instruction.
INSTRUCTION_BITS = sum(field.bits for field in FIELDS)
INSTRUCTION_BYTES = INSTRUCTION_BITS // 8

#: Linears of a layer by tensor id, the ``arg`` of GEMM (also the image's ``tensor`` field).
TENSOR_ROLES = ("q", "k", "v", "o", "fc1", "fc2")

#: Buffer operand an instruction does not use.
UNUSED = 0xFF

#: ``arg`` of LAYERNORM / RESIDUAL: which of the layer's two constant sets it uses.
FIRST, SECOND = 0, 1

#: TOKEN_GATHER ``arg2``: protected leading tokens in bits ``0 .. GATHER_PROTECTED_BITS - 1``,
#: the fuse flag in the bit above.
GATHER_PROTECTED_BITS = 8


class Opcode(enum.IntEnum):
    """What one instruction does (semantics: ``sw.golden.layer_program``)."""

    END = 0                 #: end of the layer
    LAYERNORM = 1           #: dst = LayerNorm(src_a) with constants ln1 (arg 0) / ln2 (arg 1)
    GEMM = 2                #: dst = linear(src_a) with the weights of tensor ``arg``
    ATTENTION_SCORES = 3    #: SCORES = Q_h K_h^T (int32) for head slot ``arg`` (original ``arg2``)
    SOFTMAX = 4             #: PROBS = softmax(SCORES), head slot ``arg``
    ATTENTION_CONTEXT = 5   #: CONTEXT[:, slot] = requantize(PROBS V_h), head slot ``arg``
    RESIDUAL = 6            #: dst = src_a + src_b rescaled, constants residual1 (0) / 2 (1)
    GELU = 7                #: dst = GELU(src_a)
    TOKEN_GATHER = 8        #: keep ``arg`` rows of dst (== src_a): protected, top-k, fused


class Buffer(enum.IntEnum):
    """On-chip buffers the instructions read and write (rows are tokens)."""

    INPUT = 0        #: layer input, int16 residual stream, tokens x hidden
    LN1 = 1          #: int8, tokens x hidden
    Q = 2            #: int8, tokens x (kept heads x head_dim)
    K = 3
    V = 4
    SCORES = 5       #: int32, tokens x tokens, one head
    PROBS = 6        #: unsigned Q0.8, tokens x tokens, one head
    CONTEXT = 7      #: int8, tokens x (kept heads x head_dim)
    ATTN = 8         #: int8, tokens x hidden
    RESIDUAL1 = 9    #: int16, tokens x hidden
    LN2 = 10         #: int8
    FC1 = 11         #: int8, tokens x kept FFN neurons
    GELU = 12        #: int8, tokens x kept FFN neurons
    FC2 = 13         #: int8, tokens x hidden
    OUTPUT = 14      #: int16 residual stream, the layer output


@dataclass(frozen=True)
class Instruction:
    """One instruction; unused buffer operands are :data:`UNUSED`."""

    opcode: Opcode
    dst: int = UNUSED
    src_a: int = UNUSED
    src_b: int = UNUSED
    arg: int = 0
    arg2: int = 0

    def __str__(self) -> str:
        def name(buffer: int) -> str:
            return Buffer(buffer).name if buffer in Buffer._value2member_map_ else str(buffer)
        sources = ", ".join(name(b) for b in (self.src_a, self.src_b) if b != UNUSED)
        text = self.opcode.name
        if self.dst != UNUSED:
            text += f" {name(self.dst)} <- {sources}"
        return text + f" (arg {self.arg}, arg2 {self.arg2})"

    def fields(self) -> dict:
        """``{field name: int}`` of every field of :data:`FIELDS`."""
        return {field.name: int(getattr(self, field.name)) for field in FIELDS}


def gather_arg2(protected: int, fuse: bool) -> int:
    """``arg2`` of TOKEN_GATHER: the protected leading tokens (bits 0..7) and the fuse flag
    (bit 8)."""
    limit = (1 << GATHER_PROTECTED_BITS) - 1
    if not 1 <= protected <= limit:
        raise ValueError(f"Protected tokens must lie in 1..{limit}, not {protected}")
    return protected | (int(bool(fuse)) << GATHER_PROTECTED_BITS)


def gather_fields(arg2: int) -> tuple[int, bool]:
    """``(protected, fuse)`` of a TOKEN_GATHER ``arg2``."""
    return (arg2 & ((1 << GATHER_PROTECTED_BITS) - 1),
            bool(arg2 >> GATHER_PROTECTED_BITS & 1))
