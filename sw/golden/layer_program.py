"""Golden semantics of the layer program: run a layer's instructions with the golden kernels.

What each :class:`~sw.image.program.Opcode` computes is defined here and nowhere else; every
arithmetic step is a call of ``sw.golden.gemm``, ``sw.golden.kernels`` or ``sw.numerics``, the
same calls ``sw.golden.encoder_layer.encoder_layer_int`` makes, so running
:func:`~sw.image.program.layer_program` gives exactly ``encoder_layer_int``'s output (tested).
"""

from __future__ import annotations

import numpy as np

from sw.golden.encoder_layer import IntegerEncoderLayer
from sw.golden.gemm import linear_int
from sw.golden.kernels import gelu_int, layernorm_int, residual_add_int, softmax_int
from sw.image.format import TENSOR_ROLES
from sw.image.program import Buffer, Opcode
from sw.numerics import exact_matmul, requantize

__all__ = ["run_layer_program"]


class ProgramError(ValueError):
    """The program reads a buffer nothing wrote, or asks for something this model cannot do."""


def run_layer_program(program, layer: IntegerEncoderLayer, x, *, kept_tokens=None,
                      trace: dict | None = None) -> np.ndarray:
    """Run ``program`` on the int16 layer input ``x`` ``(..., T, hidden)``; return OUTPUT.

    ``kept_tokens``: the token rows a TOKEN_GATHER keeps (its ``arg`` of them); the choice is
    the token-gather unit's (EViT top-k on CLS attention), not modelled here. ``trace``, if
    given, receives every buffer by name after the program ends.

    Raises
    ------
    ProgramError
        If an instruction reads a buffer no earlier instruction wrote, or a TOKEN_GATHER keeps
        fewer rows than there are and no ``kept_tokens`` are given.
    """
    buffers = {Buffer.INPUT: np.asarray(x, dtype=np.int64)}
    head_dim = layer.head_dim
    layernorms = (layer.ln1, layer.ln2)
    residuals = (layer.residual1, layer.residual2)

    def read(buffer: int) -> np.ndarray:
        if buffer not in buffers:
            raise ProgramError(f"buffer {Buffer(buffer).name} is read before it is written")
        return buffers[buffer]

    def head(buffer: int, slot: int) -> np.ndarray:
        return read(buffer)[..., slot * head_dim:(slot + 1) * head_dim]

    for instruction in program:
        op, dst, arg = instruction.opcode, instruction.dst, instruction.arg
        if op == Opcode.END:
            break
        if op == Opcode.LAYERNORM:
            buffers[dst] = layernorm_int(read(instruction.src_a), layernorms[arg])
        elif op == Opcode.GEMM:
            linear = getattr(layer, TENSOR_ROLES[arg])
            buffers[dst] = linear_int(read(instruction.src_a), linear.weight, linear.bias,
                                      linear.multiplier, linear.shift)
        elif op == Opcode.ATTENTION_SCORES:
            buffers[dst] = exact_matmul(head(instruction.src_a, arg),
                                        np.swapaxes(head(instruction.src_b, arg), -1, -2))
        elif op == Opcode.SOFTMAX:
            buffers[dst] = softmax_int(read(instruction.src_a), layer.softmax)
        elif op == Opcode.ATTENTION_CONTEXT:
            values = read(instruction.src_b)
            if dst not in buffers:
                buffers[dst] = np.zeros(values.shape, dtype=np.int64)
            context = exact_matmul(read(instruction.src_a), head(instruction.src_b, arg))
            buffers[dst][..., arg * head_dim:(arg + 1) * head_dim] = requantize(
                context, layer.context_multiplier, layer.context_shift)
        elif op == Opcode.RESIDUAL:
            buffers[dst] = residual_add_int(read(instruction.src_a), read(instruction.src_b),
                                            residuals[arg])
        elif op == Opcode.GELU:
            buffers[dst] = gelu_int(read(instruction.src_a), layer.gelu)
        elif op == Opcode.TOKEN_GATHER:
            rows = read(instruction.src_a)
            if kept_tokens is None:
                if arg < rows.shape[-2]:
                    raise ProgramError(f"TOKEN_GATHER keeps {arg} of {rows.shape[-2]} tokens; "
                                       "pass kept_tokens (the gather unit's choice)")
                kept_tokens = np.arange(rows.shape[-2])
            buffers[dst] = np.take(rows, np.asarray(kept_tokens), axis=-2)
    if trace is not None:
        trace.update({Buffer(key).name.lower(): value for key, value in buffers.items()})
    return read(Buffer.OUTPUT)
