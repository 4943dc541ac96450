"""Cycle model of the layer engine (``hw.layer.engine``): every instruction of a layer program.

The sequencer runs instructions one after the other. Each costs two cycles to fetch and decode
(the program memory read and the decode, in which the instruction's unit is started), then its
own work until the cycle its last result is written, in which the next fetch is decided.
Counted from the fetch cycle to that last cycle, inclusive (the engine's trace entry):

=====================  ====================================================================
instruction            cycles
=====================  ====================================================================
LAYERNORM              ``2 + B + 3 + layernorm.total``: ``B = ceil(d / L)`` gamma / beta
                       writes of the instruction's set into the unit, one more cycle to start
                       the row reader, whose first beat comes ``FIRST_BEAT_DELAY`` (3) cycles
                       after its start; the unit's ``total`` (``sw.cycle_model.units``)
                       counts from that beat to its last output, written in the same cycle
SOFTMAX                ``2 + 2 + softmax.total`` (reader started in the decode cycle); the
                       rows are the tokens' scores
GEMM                   ``2 + 2 + gemm.total + E``: the job is accepted the cycle after decode,
                       ``gemm.total`` ends with the GEMM's last output, ``done`` is seen the
                       cycle after; the epilogue (``hw.layer.gemm_epilogue``: GELU, residual
                       add or nothing) writes each output ``E = EPILOGUE_LATENCY`` (5) cycles
                       after the GEMM gives it, so the instruction ends ``E`` cycles after
                       ``done``; the linears' weights stream from external memory, so
                       ``gemm.total`` is ``sw.cycle_model.weight_stream``'s (the resident
                       ``sw.cycle_model.gemm`` timeline plus the waits for the memory)
ATTENTION_SCORES /     ``2 + tiles * (2C + 1) + 2 + gemm.total + E``: the weight stager writes
ATTENTION_CONTEXT      the head's keys (transposed) or values as dense GEMM weight tiles
                       (``hw.layer.weight_stager``), then the GEMM of the head runs
TOKEN_GATHER           ``2 + T + (T * W + 1) + 1 + gather.total + W``: the ``T`` summed CLS
                       scores into the unit, the ``T`` rows of ``W = d / C`` vectors (the last
                       row is complete a cycle after its last read), the job, the unit's
                       ``total`` (``sw.cycle_model.token_gather``; the unit's output is taken
                       one cycle in ``W``, as each row is written back as ``W`` vectors), and
                       the last row's ``W`` vectors; later instructions see ``arg`` rows
END                    ``2``: fetch and decode; ``done`` rises the next cycle
=====================  ====================================================================

The engine's ``cycles`` counter is the sum over the program, END included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sw.config import AcceleratorConfig
from sw.engine_params import EngineParams
from sw.cycle_model.gemm import gemm_cycles
from sw.cycle_model.token_gather import EMIT_LATENCY, TokenGatherJob, token_gather_cycles
from sw.cycle_model.weight_stream import (AXI_RAM, MemoryTiming, StreamParams,
                                          streamed_gemm_cycles)
from sw.cycle_model.units import layernorm_cycles, softmax_cycles, unit_timings
from sw.isa import TENSOR_ROLES, Opcode, gather_fields

#: Fetch and decode of every instruction.
DISPATCH_CYCLES = 2
#: Cycles from a row reader's start to its first beat (``hw.layer.row_reader``).
FIRST_BEAT_DELAY = 3
#: Cycles from a GEMM output to its write through the epilogue (``hw.layer.gemm_epilogue``:
#: the skip operand's read, the products, their sum, the rounding shift, the output register),
#: every epilogue.
EPILOGUE_LATENCY = 5
#: From the GEMM job's acceptance, one cycle after decode, to the cycle ``done`` is seen, past
#: the GEMM's own ``total``.
GEMM_HANDSHAKE_CYCLES = 2

__all__ = ["DISPATCH_CYCLES", "FIRST_BEAT_DELAY", "EPILOGUE_LATENCY", "InstructionCycles",
           "LayerShapes", "stage_tile_cycles", "program_cycles", "unit_totals",
           "gather_cycles", "UNIT_OF"]


def stage_tile_cycles(lanes: int) -> int:
    """Cycles the weight stager spends on one ``lanes x lanes`` tile: reads, one, writes."""
    return 2 * lanes + 1


@dataclass(frozen=True)
class LayerShapes:
    """What the cycle count of a layer depends on besides the program.

    ``masks``: the stored-block mask of each linear (``q k v o fc1 fc2``) in the config's
    block shape; ``tokens``: rows entering the layer; ``ffn``: kept FFN width; ``keys``:
    tokens padded for the key / value weights (``EngineParams.keys``).
    """

    tokens: int
    ffn: int
    keys: int
    masks: dict


@dataclass(frozen=True)
class InstructionCycles:
    """One instruction, the name of the unit it runs on, its cycles, its MACs and the token
    rows it works on."""

    index: int
    opcode: Opcode
    unit: str
    cycles: int
    macs: int = 0
    rows: int = 0


#: Report name of each instruction (GEMMs by tensor).
UNIT_OF = {Opcode.LAYERNORM: "layernorm", Opcode.ATTENTION_SCORES: "attention_scores",
           Opcode.SOFTMAX: "softmax", Opcode.ATTENTION_CONTEXT: "attention_context",
           Opcode.END: "control",
           Opcode.TOKEN_GATHER: "token_gather"}


def program_cycles(config: AcceleratorConfig, program, shapes: LayerShapes,
                   memory: MemoryTiming = AXI_RAM) -> list:
    """Cycles of every instruction of ``program`` on ``config``'s layer engine, END included,
    with the linears' weights streamed from ``memory``.

    Raises
    ------
    ValueError
        If the program holds an instruction the engine does not run.
    """
    m, hw = config.model, config.hardware
    params = EngineParams.from_config(config)
    rows_, cols_ = hw.array_rows, hw.array_cols
    softmax_t, _, layernorm_t = unit_timings(config)
    head_dim = m.head_dim

    def gemm(mask, tokens):
        return gemm_cycles(array_rows=rows_, array_cols=cols_, block_rows=hw.block_rows,
                           block_cols=hw.block_cols, tokens=tokens, block_mask=mask)

    def streamed_gemm(mask, tokens):
        return streamed_gemm_cycles(
            array_rows=rows_, array_cols=cols_, block_rows=hw.block_rows,
            block_cols=hw.block_cols, tokens=tokens, block_mask=mask,
            stream=StreamParams.of(params), memory=memory)

    tokens = shapes.tokens
    dense_keys = np.ones((shapes.keys // hw.block_rows, head_dim // hw.block_cols), bool)
    dense_values = np.ones((head_dim // hw.block_rows, shapes.keys // hw.block_cols), bool)
    stage = (shapes.keys * head_dim // (rows_ * cols_)) * stage_tile_cycles(cols_)
    result = []
    for index, instruction in enumerate(program):
        op = instruction.opcode
        macs, rows = 0, tokens
        if op == Opcode.END:
            cycles, unit = DISPATCH_CYCLES, "control"
        elif op == Opcode.LAYERNORM:
            beats = math.ceil(m.hidden_size / layernorm_t.lanes)
            total = layernorm_cycles(layernorm_t, rows=tokens, length=m.hidden_size).total
            cycles = DISPATCH_CYCLES + beats + 1 + (FIRST_BEAT_DELAY - 1) + total
            unit = f"layernorm{instruction.arg + 1}"
        elif op == Opcode.SOFTMAX:
            total = softmax_cycles(softmax_t, rows=tokens, length=tokens).total
            cycles, unit = DISPATCH_CYCLES + FIRST_BEAT_DELAY - 1 + total, "softmax"
        elif op == Opcode.GEMM:
            role = TENSOR_ROLES[instruction.arg]
            job = streamed_gemm(shapes.masks[role], tokens)
            cycles = DISPATCH_CYCLES + GEMM_HANDSHAKE_CYCLES + job.total + EPILOGUE_LATENCY
            unit, macs = role, job.macs
        elif op in (Opcode.ATTENTION_SCORES, Opcode.ATTENTION_CONTEXT):
            scores = op == Opcode.ATTENTION_SCORES
            job = gemm(dense_keys if scores else dense_values, tokens)
            cycles = DISPATCH_CYCLES + stage + GEMM_HANDSHAKE_CYCLES + job.total \
                + EPILOGUE_LATENCY
            unit = UNIT_OF[op]
            macs = tokens * tokens * head_dim          # the useful ones, padding excluded
        elif op == Opcode.TOKEN_GATHER:
            total, vectors = gather_cycles(config, instruction, tokens)
            cycles = DISPATCH_CYCLES + tokens + tokens * vectors + 1 + 1 + total + vectors
            unit, tokens = "token_gather", instruction.arg
        else:
            raise ValueError(f"instruction {index} ({op.name}) is not run by the layer engine")
        result.append(InstructionCycles(index=index, opcode=op, unit=unit, cycles=cycles,
                                        macs=macs, rows=rows))
        if op == Opcode.END:
            break
    return result


def gather_cycles(config: AcceleratorConfig, instruction, tokens: int) -> tuple[int, int]:
    """``(total, W)`` of a TOKEN_GATHER on ``tokens`` rows: the unit's cycles with its output
    taken one cycle in ``W = hidden / C`` (the stage writes each row back as ``W`` vectors)."""
    m = config.model
    protected, fuse = gather_fields(instruction.arg2)
    dropped = tokens > instruction.arg
    job = TokenGatherJob(tokens=tokens, keep=instruction.arg - protected - int(fuse and dropped),
                         protected=protected, fuse=fuse)
    vectors = EngineParams.from_config(config).hidden_vectors
    plain = token_gather_cycles(job, heads=m.num_heads, width=m.hidden_size)
    first = plain.emit_start + EMIT_LATENCY
    ready = [True] * (first + 1) + ([False] * (vectors - 1) + [True]) * job.output_rows
    total = token_gather_cycles(job, heads=m.num_heads, width=m.hidden_size, ready=ready).total
    return total, vectors


def unit_totals(instructions) -> dict:
    """Cycles per unit name, in first-use order."""
    totals: dict = {}
    for entry in instructions:
        totals[entry.unit] = totals.get(entry.unit, 0) + entry.cycles
    return totals
