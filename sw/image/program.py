"""The layer program: the instruction list the accelerator's controller runs for one layer.

Version 2 is a straight-line list of fixed-size instructions over named on-chip buffers. The
exporter writes :func:`layer_program`; :func:`sw.golden.layer_program.run_layer_program` defines
what each instruction computes (with the golden kernels), and ``docs/image-format.md`` lists the
encoding. The instruction set itself (opcodes, buffer ids, the field table this module encodes
with) is ``sw.isa``; its names are re-exported here for the image package's users.
"""

from __future__ import annotations

from sw.isa import (FIRST, INSTRUCTION_BYTES, INSTRUCTION_FIELDS, PROGRAM_FIELDS,
                    PROGRAM_VERSION, SECOND, UNUSED, Buffer, Epilogue, Instruction, Opcode,
                    gather_arg2, gather_fields, gemm_arg2)
from sw.config import NORMS
from sw.packing import ByteReader, ByteWriter, ImageFormatError

__all__ = ["PROGRAM_VERSION", "PROGRAM_FIELDS", "INSTRUCTION_FIELDS", "UNUSED", "Opcode",
           "Buffer", "Instruction", "layer_program", "gather_arg2", "gather_fields",
           "Epilogue", "gemm_arg2", "EMBEDDING_SLOTS", "HEAD_SLOTS", "STAGE_SLOTS",
           "embedding_program", "head_program", "stage_slot", "stage_program",
           "embedding_layernorm_program", "pooler_program", "encode_program",
           "decode_program", "check_program", "check_stage_program"]


def layer_program(kept_heads, *, tokens: int, token_keep: int, protected: int = 1,
                  fuse: bool = True, norm: str = "pre") -> tuple[Instruction, ...]:
    """The program of a ``norm`` layer (``"pre"``: DeiT, ViT; ``"post"``: BERT) keeping
    ``kept_heads`` (original indices, increasing).

    ``GEMM``'s ``arg`` is the tensor id (0..5 = q, k, v, o, fc1, fc2); the element-wise steps
    after a linear are its epilogue (``arg2``): O's output is added to the layer input and
    FC2's to RESIDUAL1 (the residual adds, skip operand ``src_b``), FC1's goes through GELU.
    The attention runs head
    by head over the kept heads only: slot ``j`` is ``kept_heads[j]``, whose Q/K/V columns are
    ``j*head_dim .. (j+1)*head_dim - 1`` of the compacted buffers. ``TOKEN_GATHER`` appears only
    when ``token_keep < tokens``: it keeps ``token_keep`` rows, the first ``protected`` tokens,
    ``token_keep - protected - fuse`` candidates by CLS attention and, with ``fuse``, the fused
    token of the dropped ones (``sw.golden.token_select``); ``arg2`` holds ``protected`` and
    ``fuse`` (:func:`gather_arg2`).

    A post-LN layer runs the same instructions in BERT's order: Q, K and V read the layer input
    (the previous LayerNorm's int8 output) directly; after the attention's residual add (and
    the gather), LayerNorm FIRST writes OUTPUT, which FC1 reads and FC2's residual add takes as
    its skip operand into RESIDUAL1; LayerNorm SECOND of that sum overwrites OUTPUT with the
    layer's output. The int8 LayerNorm outputs of a post-LN layer thus live in the residual
    stream's int16 buffers (INPUT, OUTPUT); LN1 and LN2 are unused. So one engine runs both
    kinds with the same memory map: these buffers' live ranges overlap where the pre-LN
    program's do (``sw.scratchpad_regions.program_of``).
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
    post = norm == "post"
    i = Instruction
    attention_input = Buffer.INPUT if post else Buffer.LN1
    program = [] if post else [i(Opcode.LAYERNORM, Buffer.LN1, Buffer.INPUT, arg=FIRST)]
    program += [i(Opcode.GEMM, buffer, attention_input, arg=tensor)
                for tensor, buffer in enumerate((Buffer.Q, Buffer.K, Buffer.V))]
    for slot, head in enumerate(kept_heads):
        program += [
            i(Opcode.ATTENTION_SCORES, Buffer.SCORES, Buffer.Q, Buffer.K, arg=slot, arg2=head),
            i(Opcode.SOFTMAX, Buffer.PROBS, Buffer.SCORES, arg=slot, arg2=head),
            i(Opcode.ATTENTION_CONTEXT, Buffer.CONTEXT, Buffer.PROBS, Buffer.V, arg=slot,
              arg2=head),
        ]
    program += [
        i(Opcode.GEMM, Buffer.RESIDUAL1, Buffer.CONTEXT, Buffer.INPUT, arg=3,
          arg2=gemm_arg2(Epilogue.RESIDUAL, FIRST)),
    ]
    if token_keep < tokens:
        program.append(i(Opcode.TOKEN_GATHER, Buffer.RESIDUAL1, Buffer.RESIDUAL1,
                         arg=token_keep, arg2=gather_arg2(protected, fuse)))
    if post:
        program += [
            i(Opcode.LAYERNORM, Buffer.OUTPUT, Buffer.RESIDUAL1, arg=FIRST),
            i(Opcode.GEMM, Buffer.GELU, Buffer.OUTPUT, arg=4, arg2=gemm_arg2(Epilogue.GELU)),
            i(Opcode.GEMM, Buffer.RESIDUAL1, Buffer.GELU, Buffer.OUTPUT, arg=5,
              arg2=gemm_arg2(Epilogue.RESIDUAL, SECOND)),
            i(Opcode.LAYERNORM, Buffer.OUTPUT, Buffer.RESIDUAL1, arg=SECOND),
        ]
    else:
        program += [
            i(Opcode.LAYERNORM, Buffer.LN2, Buffer.RESIDUAL1, arg=SECOND),
            i(Opcode.GEMM, Buffer.GELU, Buffer.LN2, arg=4, arg2=gemm_arg2(Epilogue.GELU)),
            i(Opcode.GEMM, Buffer.OUTPUT, Buffer.GELU, Buffer.RESIDUAL1, arg=5,
              arg2=gemm_arg2(Epilogue.RESIDUAL, SECOND)),
        ]
    return tuple(program) + (i(Opcode.END),)


#: The GEMM slots (tensor ids) a stage program may put its weight in, each with the buffers it
#: reads and writes as that slot's layer instruction does (so the memory map keeps them apart
#: for the stage as for the layer), in order of preference: the embedding as O (CONTEXT in,
#: attention width) or FC2 (GELU in, FFN width); the classifier as Q (LN1 in, Q out: classes up
#: to the attention width) or FC1 (LN2 in, GELU out: up to the FFN width).
EMBEDDING_SLOTS = {"o": (3, Buffer.CONTEXT), "fc2": (5, Buffer.GELU)}
HEAD_SLOTS = {"q": (0, Buffer.LN1, Buffer.Q), "fc1": (4, Buffer.LN2, Buffer.GELU)}
#: Each stage's slots, by the stage's name (``sw.image.format.STAGE_TENSORS``).
STAGE_SLOTS = {"embedding": EMBEDDING_SLOTS, "head": HEAD_SLOTS}
#: What messages call each stage's weight.
_STAGE_WEIGHTS = {"embedding": "patch embedding", "head": "classifier"}


def stage_slot(stage: str, shape, config) -> str:
    """The tensor slot a stage's GEMM uses on ``config``'s engine: the first of its slots
    (:data:`STAGE_SLOTS`) whose largest weight (``EngineParams.role_shapes``) holds the
    ``(out, in)`` ``shape``. The exporter and the loader both choose with it, so an image's
    stage programs follow from its config and weights.

    Raises
    ------
    ValueError
        If no slot holds the weight (the message names the config, the weight and the slots).
    """
    from sw.engine_params import EngineParams
    shapes = EngineParams.from_config(config).role_shapes
    out_features, in_features = shape
    for role in STAGE_SLOTS[stage]:
        if out_features <= shapes[role][0] and in_features <= shapes[role][1]:
            return role
    held = ", ".join(f"{role} {shapes[role][0]}x{shapes[role][1]}" for role in STAGE_SLOTS[stage])
    raise ValueError(f"{config.name}: the {_STAGE_WEIGHTS[stage]} weight {out_features}x"
                     f"{in_features} fits no tensor slot of the engine ({held})")


def stage_program(stage: str, role: str) -> tuple[Instruction, ...]:
    """:func:`embedding_program` or :func:`head_program` (``stage``) in tensor slot ``role``."""
    return embedding_program(role) if stage == "embedding" else head_program(role)


def embedding_program(role: str = "o") -> tuple[Instruction, ...]:
    """The patch embedding (``sw.golden.model_stages``): the patch rows (int8, loaded into the
    slot's input region, :data:`EMBEDDING_SLOTS`) through the patch linear in tensor slot
    ``role``, its residual epilogue adding the position table (int16, loaded into RESIDUAL1)
    with the first residual constants, into OUTPUT: INPUT's region, so the first layer's input.
    Rows: every token (the engine's row count is the constants' ``tokens``)."""
    tensor, rows = EMBEDDING_SLOTS[role]
    return (Instruction(Opcode.GEMM, Buffer.OUTPUT, rows, Buffer.RESIDUAL1, arg=tensor,
                        arg2=gemm_arg2(Epilogue.RESIDUAL, FIRST)),
            Instruction(Opcode.END))


def head_program(role: str = "q") -> tuple[Instruction, ...]:
    """The final LayerNorm (first set) of the last layer's output into the slot's input region
    and the classifier in tensor slot ``role`` from there into its output region (int8 logits;
    :data:`HEAD_SLOTS`). Run with a row count of 1, the class token's row
    (``sw.golden.model_stages``)."""
    tensor, normed, logits = HEAD_SLOTS[role]
    return (Instruction(Opcode.LAYERNORM, normed, Buffer.INPUT, arg=FIRST),
            Instruction(Opcode.GEMM, logits, normed, arg=tensor, arg2=gemm_arg2(Epilogue.NONE)),
            Instruction(Opcode.END))


def embedding_layernorm_program() -> tuple[Instruction, ...]:
    """BERT's embedding LayerNorm (first set) of the host's int16 embedding sum, loaded into
    RESIDUAL1, into OUTPUT: INPUT's region, so the first post-LN layer's int8 input (the pair a
    post-LN layer's ``LAYERNORM OUTPUT <- RESIDUAL1`` uses)."""
    return (Instruction(Opcode.LAYERNORM, Buffer.OUTPUT, Buffer.RESIDUAL1, arg=FIRST),
            Instruction(Opcode.END))


def pooler_program() -> tuple[Instruction, ...]:
    """BERT's pooler dense (Q's tensor slot, 0) on the last post-LN layer's int8 output in
    INPUT, into Q (int8), as a post-LN layer's Q reads INPUT; run with a row count of 1, the
    CLS row. Its tanh and the classifier stay on the host (``sw.golden.bert_int``)."""
    return (Instruction(Opcode.GEMM, Buffer.Q, Buffer.INPUT, arg=0,
                        arg2=gemm_arg2(Epilogue.NONE)),
            Instruction(Opcode.END))


def encode_program(program) -> bytes:
    """The PROGRAM section: version, count, then ``INSTRUCTION_BYTES`` (8) per instruction."""
    writer = ByteWriter()
    writer.fields(PROGRAM_FIELDS, {"program_version": PROGRAM_VERSION,
                                   "instruction_count": len(program)})
    for instruction in program:
        writer.fields(INSTRUCTION_FIELDS, instruction.fields())
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
    size = count * INSTRUCTION_BYTES
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
        program.append(Instruction(**{**fields, "opcode": Opcode(fields["opcode"])}))
    return tuple(program)


def check_program(program, *, kept_heads, tokens: int, token_keep: int,
                  norm: str = "pre") -> None:
    """Version 2 accepts exactly :func:`layer_program`'s program for the ``norm`` layer.

    Raises
    ------
    ValueError
        Naming the first instruction that differs (or the length difference).
    """
    gathers = [i for i in program if i.opcode == Opcode.TOKEN_GATHER]
    protected, fuse = gather_fields(gathers[0].arg2) if gathers else (1, True)
    expected = layer_program(kept_heads, tokens=tokens, token_keep=token_keep,
                             protected=max(protected, 1), fuse=fuse, norm=norm)
    _compare(program, expected)


def check_stage_program(program, stage: str, role: str) -> None:
    """A stage's PROGRAM section holds exactly :func:`stage_program` of its slot ``role``.

    Raises
    ------
    ValueError
        Naming the first instruction that differs (or the length difference).
    """
    _compare(program, stage_program(stage, role))


def _compare(program, expected) -> None:
    for index, (found, wanted) in enumerate(zip(program, expected)):
        if found != wanted:
            raise ValueError(f"instruction {index} is {found}, expected {wanted}")
    if len(program) != len(expected):
        raise ValueError(f"{len(program)} instructions, expected {len(expected)}")
