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
           "GATHER_PROTECTED_BITS", "EPILOGUE_BITS", "TENSOR_ROLES", "Opcode", "Buffer", "Epilogue",
           "Instruction", "gather_arg2", "gather_fields", "gemm_arg2", "gemm_fields"]

#: Version of the instruction set; a reader accepts only the versions it knows. Version 2
#: moved GELU and the residual add into the GEMM's epilogue (:class:`Epilogue`): version 1's
#: RESIDUAL and GELU opcodes and its ATTN, FC1 and FC2 buffers are gone, and the remaining
#: opcodes and buffers are numbered without gaps (TOKEN_GATHER is 6; RESIDUAL1 .. OUTPUT 8 .. 11).
PROGRAM_VERSION = 2

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

#: ``arg`` of LAYERNORM, and the residual set of a GEMM's RESIDUAL epilogue: which of the
#: layer's two constant sets it uses.
FIRST, SECOND = 0, 1

#: TOKEN_GATHER ``arg2``: protected leading tokens in bits ``0 .. GATHER_PROTECTED_BITS - 1``,
#: the fuse flag in the bit above.
GATHER_PROTECTED_BITS = 8


class Opcode(enum.IntEnum):
    """What one instruction does (semantics: ``sw.golden.layer_program``)."""

    END = 0                 #: end of the layer
    LAYERNORM = 1           #: dst = LayerNorm(src_a) with constants ln1 (arg 0) / ln2 (arg 1)
    GEMM = 2                #: dst = epilogue(linear(src_a)) with the weights of tensor
    #: ``arg``; ``arg2`` names the epilogue (:func:`gemm_arg2`), whose skip operand is src_b
    ATTENTION_SCORES = 3    #: SCORES = Q_h K_h^T (int32) for head slot ``arg`` (original ``arg2``)
    SOFTMAX = 4             #: PROBS = softmax(SCORES), head slot ``arg``
    ATTENTION_CONTEXT = 5   #: CONTEXT[:, slot] = requantize(PROBS V_h), head slot ``arg``
    TOKEN_GATHER = 6        #: keep ``arg`` rows of dst (== src_a): protected, top-k, fused


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
    RESIDUAL1 = 8    #: int16, tokens x hidden: INPUT + attention, O's GEMM epilogue
    LN2 = 9          #: int8
    GELU = 10        #: int8, tokens x kept FFN neurons: GELU(FC1), FC1's GEMM epilogue
    OUTPUT = 11      #: int16 residual stream, the layer output: RESIDUAL1 + FC2's GEMM


class Epilogue(enum.IntEnum):
    """What a GEMM does to each requantized output before writing it (``arg2`` bits 0..1)."""

    NONE = 0        #: write the output
    GELU = 1        #: write GELU(output), the layer's GELU constants
    RESIDUAL = 2    #: write the residual add of src_b (the skip) and the output


#: GEMM ``arg2``: the :class:`Epilogue` in bits ``0 .. EPILOGUE_BITS - 1``, the residual
#: constant set (:data:`FIRST` / :data:`SECOND`) in the bit above.
EPILOGUE_BITS = 2


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


def gemm_arg2(epilogue: Epilogue = Epilogue.NONE, residual_set: int = FIRST) -> int:
    """``arg2`` of GEMM: the epilogue (bits 0..1) and, for RESIDUAL, the constant set (bit 2)."""
    if residual_set not in (FIRST, SECOND):
        raise ValueError(f"Residual set must be {FIRST} or {SECOND}, not {residual_set}")
    return int(Epilogue(epilogue)) | (residual_set << EPILOGUE_BITS)


def gemm_fields(arg2: int) -> tuple[Epilogue, int]:
    """``(epilogue, residual set)`` of a GEMM ``arg2``.

    Raises
    ------
    ValueError
        If the epilogue bits name no :class:`Epilogue`.
    """
    return Epilogue(arg2 & ((1 << EPILOGUE_BITS) - 1)), arg2 >> EPILOGUE_BITS & 1
