"""The layer program: the instruction list the accelerator's controller runs for one layer.

Version 1 is a straight-line list of fixed-size instructions over named on-chip buffers. The
exporter writes :func:`layer_program`; :func:`sw.golden.layer_program.run_layer_program` defines
what each instruction computes (with the golden kernels), and ``docs/image-format.md`` lists the
encoding. One instruction is 8 bytes: ``opcode`` (u8), ``dst``, ``src_a``, ``src_b`` (u8 buffer
ids, ``0xff`` = unused), ``arg``, ``arg2`` (u16).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sw.packing import ByteReader, ByteWriter, ImageFormatError

__all__ = ["PROGRAM_VERSION", "PROGRAM_FIELDS", "INSTRUCTION_FIELDS", "UNUSED", "Opcode",
           "Buffer", "Instruction", "layer_program", "gather_arg2", "gather_fields",
           "encode_program", "decode_program", "check_program"]

#: Version of the instruction set; a reader accepts only the versions it knows.
PROGRAM_VERSION = 1

#: Start of a PROGRAM section; ``instruction_count`` instructions follow.
PROGRAM_FIELDS = (("program_version", "u32"), ("instruction_count", "u32"))

INSTRUCTION_FIELDS = (("opcode", "u8"), ("dst", "u8"), ("src_a", "u8"), ("src_b", "u8"),
                      ("arg", "u16"), ("arg2", "u16"))

#: Buffer operand an instruction does not use.
UNUSED = 0xFF

#: ``arg`` of LAYERNORM / RESIDUAL: which of the layer's two constant sets it uses.
FIRST, SECOND = 0, 1


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


def gather_arg2(protected: int, fuse: bool) -> int:
    """``arg2`` of TOKEN_GATHER: the protected leading tokens (bits 0..7) and the fuse flag
    (bit 8)."""
    if not 1 <= protected <= 0xFF:
        raise ValueError(f"Protected tokens must lie in 1..255, not {protected}")
    return protected | (int(bool(fuse)) << 8)


def gather_fields(arg2: int) -> tuple[int, bool]:
    """``(protected, fuse)`` of a TOKEN_GATHER ``arg2``."""
    return arg2 & 0xFF, bool(arg2 >> 8 & 1)


def layer_program(kept_heads, *, tokens: int, token_keep: int, protected: int = 1,
                  fuse: bool = True) -> tuple[Instruction, ...]:
    """The program of a layer keeping ``kept_heads`` (original indices, increasing).

    ``GEMM``'s ``arg`` is the tensor id (0..5 = q, k, v, o, fc1, fc2). The attention runs head
    by head over the kept heads only: slot ``j`` is ``kept_heads[j]``, whose Q/K/V columns are
    ``j*head_dim .. (j+1)*head_dim - 1`` of the compacted buffers. ``TOKEN_GATHER`` appears only
    when ``token_keep < tokens``: it keeps ``token_keep`` rows, the first ``protected`` tokens,
    ``token_keep - protected - fuse`` candidates by CLS attention and, with ``fuse``, the fused
    token of the dropped ones (``sw.golden.token_select``); ``arg2`` holds ``protected`` and
    ``fuse`` (:func:`gather_arg2`).
    """
    i = Instruction
    program = [
        i(Opcode.LAYERNORM, Buffer.LN1, Buffer.INPUT, arg=FIRST),
        i(Opcode.GEMM, Buffer.Q, Buffer.LN1, arg=0),
        i(Opcode.GEMM, Buffer.K, Buffer.LN1, arg=1),
        i(Opcode.GEMM, Buffer.V, Buffer.LN1, arg=2),
    ]
    for slot, head in enumerate(kept_heads):
        program += [
            i(Opcode.ATTENTION_SCORES, Buffer.SCORES, Buffer.Q, Buffer.K, arg=slot, arg2=head),
            i(Opcode.SOFTMAX, Buffer.PROBS, Buffer.SCORES, arg=slot, arg2=head),
            i(Opcode.ATTENTION_CONTEXT, Buffer.CONTEXT, Buffer.PROBS, Buffer.V, arg=slot,
              arg2=head),
        ]
    program += [
        i(Opcode.GEMM, Buffer.ATTN, Buffer.CONTEXT, arg=3),
        i(Opcode.RESIDUAL, Buffer.RESIDUAL1, Buffer.INPUT, Buffer.ATTN, arg=FIRST),
    ]
    if token_keep < tokens:
        program.append(i(Opcode.TOKEN_GATHER, Buffer.RESIDUAL1, Buffer.RESIDUAL1,
                         arg=token_keep, arg2=gather_arg2(protected, fuse)))
    program += [
        i(Opcode.LAYERNORM, Buffer.LN2, Buffer.RESIDUAL1, arg=SECOND),
        i(Opcode.GEMM, Buffer.FC1, Buffer.LN2, arg=4),
        i(Opcode.GELU, Buffer.GELU, Buffer.FC1),
        i(Opcode.GEMM, Buffer.FC2, Buffer.GELU, arg=5),
        i(Opcode.RESIDUAL, Buffer.OUTPUT, Buffer.RESIDUAL1, Buffer.FC2, arg=SECOND),
        i(Opcode.END),
    ]
    return tuple(program)


def encode_program(program) -> bytes:
    """The PROGRAM section: version, count, then 8 bytes per instruction."""
    writer = ByteWriter()
    writer.fields(PROGRAM_FIELDS, {"program_version": PROGRAM_VERSION,
                                   "instruction_count": len(program)})
    for instruction in program:
        writer.fields(INSTRUCTION_FIELDS, {
            "opcode": int(instruction.opcode), "dst": int(instruction.dst),
            "src_a": int(instruction.src_a), "src_b": int(instruction.src_b),
            "arg": instruction.arg, "arg2": instruction.arg2})
    return writer.getvalue()


def decode_program(reader: ByteReader) -> tuple[Instruction, ...]:
    """Read a PROGRAM section written by :func:`encode_program`.

    Raises
    ------
    ImageFormatError
        If the version is unknown, the bytes run out, or an opcode is unknown.
    """
    start = reader.position
    head = reader.fields(PROGRAM_FIELDS, "program header")
    if head["program_version"] != PROGRAM_VERSION:
        raise ImageFormatError(f"program version {head['program_version']} at offset {start} "
                               f"is not supported (this build reads {PROGRAM_VERSION})")
    count = head["instruction_count"]
    size = count * 8
    if size > reader.remaining:
        raise ImageFormatError(f"{count} instructions need {size} bytes at offset "
                               f"{reader.position}, only {reader.remaining} left")
    program = []
    for index in range(count):
        offset = reader.position
        fields = reader.fields(INSTRUCTION_FIELDS, "instruction")
        if fields["opcode"] not in Opcode._value2member_map_:
            raise ImageFormatError(f"instruction {index} at offset {offset} has unknown opcode "
                                   f"{fields['opcode']}")
        program.append(Instruction(Opcode(fields["opcode"]), fields["dst"], fields["src_a"],
                                   fields["src_b"], fields["arg"], fields["arg2"]))
    return tuple(program)


def check_program(program, *, kept_heads, tokens: int, token_keep: int) -> None:
    """Version 1 accepts exactly :func:`layer_program`'s program for the layer.

    Raises
    ------
    ValueError
        Naming the first instruction that differs (or the length difference).
    """
    gathers = [i for i in program if i.opcode == Opcode.TOKEN_GATHER]
    protected, fuse = gather_fields(gathers[0].arg2) if gathers else (1, True)
    expected = layer_program(kept_heads, tokens=tokens, token_keep=token_keep,
                             protected=max(protected, 1), fuse=fuse)
    for index, (found, wanted) in enumerate(zip(program, expected)):
        if found != wanted:
            raise ValueError(f"instruction {index} is {found}, expected {wanted}")
    if len(program) != len(expected):
        raise ValueError(f"{len(program)} instructions, expected {len(expected)}")
