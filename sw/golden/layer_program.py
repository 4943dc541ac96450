"""Golden semantics of the layer program: run a layer's instructions with the golden kernels.

What each :class:`~sw.isa.Opcode` computes is defined here and nowhere else; every
arithmetic step is a call of ``sw.golden.gemm``, ``sw.golden.kernels`` or ``sw.numerics``, the
same calls ``sw.golden.encoder_layer.encoder_layer_int`` makes, so running
:func:`~sw.image.program.layer_program` gives exactly ``encoder_layer_int``'s output (tested).
"""

from __future__ import annotations

import numpy as np

from sw.golden.encoder_layer import IntegerEncoderLayer
from sw.golden.gemm import linear_int
from sw.golden.kernels import gelu_int, layernorm_int, residual_add_int, softmax_int
from sw.golden.token_select import TokenPruning, gather_by_scores
from sw.golden.encoder_layer import RESIDUAL_BITS
from sw.isa import TENSOR_ROLES, Buffer, Epilogue, Opcode, gather_fields, gemm_fields
from sw.numerics import exact_matmul, requantize

__all__ = ["run_layer_program"]


class ProgramError(ValueError):
    """The program reads a buffer nothing wrote, or asks for something this model cannot do."""


def run_layer_program(program, layer: IntegerEncoderLayer, x, *, kept_tokens=None,
                      trace: dict | None = None, preload: dict | None = None,
                      result: Buffer = Buffer.OUTPUT) -> np.ndarray:
    """Run ``program`` on the int16 layer input ``x`` ``(..., T, hidden)``; return OUTPUT (or
    the ``result`` buffer).

    ``preload``: ``{Buffer: rows}`` holding before the program starts, besides INPUT (the
    embedding program's patch rows and position table, ``sw.golden.model_stages``).

    A TOKEN_GATHER keeps its ``arg`` rows as the token-gather unit chooses them
    (``sw.golden.token_select``): the ``protected`` leading tokens, the candidates with the
    highest CLS score summed over the heads the SOFTMAX instructions ran, and with ``fuse`` the
    fused token. ``kept_tokens`` instead gives the kept rows explicitly. ``trace``, if given,
    receives every buffer by name after the program ends, and each GEMM's output before its
    epilogue by its tensor role (``"q"`` ... ``"fc2"``: ``"o"`` and ``"fc1"`` are what the
    residual add and GELU were applied to).

    Raises
    ------
    ProgramError
        If an instruction reads a buffer no earlier instruction wrote, or a TOKEN_GATHER's
        counts do not fit the rows it gathers.
    """
    buffers = {Buffer.INPUT: np.asarray(x, dtype=np.int64)}
    buffers.update({Buffer(key): np.asarray(rows, dtype=np.int64)
                    for key, rows in (preload or {}).items()})
    head_dim = layer.head_dim
    layernorms = (layer.ln1, layer.ln2)
    residuals = (layer.residual1, layer.residual2)

    def read(buffer: int) -> np.ndarray:
        if buffer not in buffers:
            raise ProgramError(f"buffer {Buffer(buffer).name} is read before it is written")
        return buffers[buffer]

    def head(buffer: int, slot: int) -> np.ndarray:
        return read(buffer)[..., slot * head_dim:(slot + 1) * head_dim]

    cls_scores = None                       # CLS rows of the probabilities, summed over heads
    linear_outputs = {}                     # each GEMM's output before its epilogue
    for instruction in program:
        op, dst, arg = instruction.opcode, instruction.dst, instruction.arg
        if op == Opcode.END:
            break
        if op == Opcode.LAYERNORM:
            buffers[dst] = layernorm_int(read(instruction.src_a), layernorms[arg])
        elif op == Opcode.GEMM:
            linear = getattr(layer, TENSOR_ROLES[arg])
            y = linear_outputs[TENSOR_ROLES[arg]] = linear_int(
                read(instruction.src_a), linear.weight, linear.bias, linear.multiplier,
                linear.shift)
            epilogue, residual_set = gemm_fields(instruction.arg2)
            if epilogue == Epilogue.GELU:
                y = gelu_int(y, layer.gelu)
            elif epilogue == Epilogue.RESIDUAL:     # the skip operand is the sum's first
                y = residual_add_int(read(instruction.src_b), y, residuals[residual_set])
            buffers[dst] = y
        elif op == Opcode.ATTENTION_SCORES:
            buffers[dst] = exact_matmul(head(instruction.src_a, arg),
                                        np.swapaxes(head(instruction.src_b, arg), -1, -2))
        elif op == Opcode.SOFTMAX:
            buffers[dst] = softmax_int(read(instruction.src_a), layer.softmax)
            row = buffers[dst][..., 0, :]
            cls_scores = row if cls_scores is None else cls_scores + row
        elif op == Opcode.ATTENTION_CONTEXT:
            values = read(instruction.src_b)
            if dst not in buffers:
                buffers[dst] = np.zeros(values.shape, dtype=np.int64)
            context = exact_matmul(read(instruction.src_a), head(instruction.src_b, arg))
            buffers[dst][..., arg * head_dim:(arg + 1) * head_dim] = requantize(
                context, layer.context_multiplier, layer.context_shift)
        elif op == Opcode.TOKEN_GATHER:
            rows = read(instruction.src_a)
            if kept_tokens is not None:
                buffers[dst] = np.take(rows, np.asarray(kept_tokens), axis=-2)
                continue
            protected, fuse = gather_fields(instruction.arg2)
            dropped = rows.shape[-2] - arg
            keep = arg - protected - int(fuse and dropped > 0)
            if cls_scores is None or keep < 1 or dropped < 0:
                raise ProgramError(f"TOKEN_GATHER cannot keep {arg} of {rows.shape[-2]} rows "
                                   f"with {protected} protected (fuse {fuse}) here")
            buffers[dst] = gather_by_scores(rows, cls_scores,
                                            TokenPruning(keep=keep, protected=protected,
                                                         fuse=fuse), out_width=RESIDUAL_BITS)
    if trace is not None:
        trace.update({Buffer(key).name.lower(): value for key, value in buffers.items()})
        trace.update(linear_outputs)
    return read(result)
