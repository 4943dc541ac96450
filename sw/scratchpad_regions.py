"""What the scratchpad's regions need: their element widths, their bytes stored in 32-bit lanes
or packed by element width, and their live ranges in a layer program (the input of sharing
memory between regions that are never live at the same time).

Today every region stores one element per :data:`sw.engine_params.LANE_WIDTH`-bit lane
(``sw.engine_params``' module docstring). Packed, a 32-bit word holds ``32 // bits`` elements
(four int8, two int16, one int32), each row starting on a word.

A buffer is *live* from the instruction that first writes it to the last instruction that reads
it (inclusive: an instruction that reads one buffer while writing another needs both). INPUT is
written before the program starts (position -1, the load) and OUTPUT read after it ends
(position ``len(program)``, the read-back). Two regions may share memory only when their live
ranges are disjoint.

>>> from sw.image.program import layer_program
>>> ranges = live_ranges(layer_program([0, 1], tokens=17, token_keep=17))
>>> ranges[Buffer.INPUT], ranges[Buffer.SCORES], ranges[Buffer.OUTPUT]
(LiveRange(first=-1, last=11), LiveRange(first=4, last=8), LiveRange(first=16, last=18))
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from sw.config import AcceleratorConfig
from sw.engine_params import LANE_WIDTH, EngineParams
from sw.golden.encoder_layer import PROBABILITY_BITS, RESIDUAL_BITS
from sw.image.program import layer_program
from sw.isa import UNUSED, Buffer, Instruction

__all__ = ["LiveRange", "live_ranges", "disjoint_pairs", "peak_live", "element_bits",
           "region_bytes", "program_of"]

_RESIDUAL_STREAM = (Buffer.INPUT, Buffer.RESIDUAL1, Buffer.OUTPUT)


@dataclass(frozen=True)
class LiveRange:
    """Instruction positions ``first .. last`` (inclusive) during which a buffer is live."""

    first: int
    last: int

    def overlaps(self, other: "LiveRange") -> bool:
        return self.first <= other.last and other.first <= self.last


def live_ranges(program) -> dict:
    """``{Buffer: LiveRange}`` of every buffer ``program`` (``sw.isa.Instruction``\\ s) uses.

    Raises
    ------
    ValueError
        If an instruction reads a buffer before any instruction writes it (INPUT excepted).
    """
    first, last = {Buffer.INPUT: -1}, {}
    for position, instruction in enumerate(program):
        if not isinstance(instruction, Instruction):
            raise TypeError(f"Program entries must be Instructions, not {instruction!r}")
        for source in (instruction.src_a, instruction.src_b):
            if source == UNUSED:
                continue
            if Buffer(source) not in first:
                raise ValueError(f"Instruction {position} ({instruction}) reads "
                                 f"{Buffer(source).name} before anything writes it")
            last[Buffer(source)] = position
        if instruction.dst != UNUSED:
            first.setdefault(Buffer(instruction.dst), position)
            last[Buffer(instruction.dst)] = position
    if Buffer.OUTPUT in first:
        last[Buffer.OUTPUT] = len(program)
    return {buffer: LiveRange(first[buffer], last[buffer]) for buffer in Buffer
            if buffer in last}


def disjoint_pairs(ranges: dict) -> list:
    """Pairs ``(a, b)`` (``a < b``) of buffers whose live ranges do not overlap."""
    return [(a, b) for a, b in itertools.combinations(sorted(ranges), 2)
            if not ranges[a].overlaps(ranges[b])]


def peak_live(ranges: dict, sizes: dict) -> tuple[int, int]:
    """``(position, total)``: the most ``sizes`` (any unit, per buffer) live at one position,
    and the first position where it is reached: the least memory any sharing can get by with."""
    positions = range(min(r.first for r in ranges.values()),
                      max(r.last for r in ranges.values()) + 1)
    totals = [(sum(sizes[b] for b, r in ranges.items() if r.first <= p <= r.last), -p)
              for p in positions]
    total, position = max(totals)
    return -position, total


def element_bits(config: AcceleratorConfig) -> dict:
    """``{Buffer: bits of one element}`` (``sw.isa.Buffer``'s comments): int16 residual
    stream, int32 (``acc_width``) scores, ``PROBABILITY_BITS`` probabilities, int8
    (``data_width``) everything else."""
    hw = config.hardware
    bits = {buffer: hw.data_width for buffer in Buffer}
    bits.update({buffer: RESIDUAL_BITS for buffer in _RESIDUAL_STREAM})
    bits[Buffer.SCORES], bits[Buffer.PROBS] = hw.acc_width, PROBABILITY_BITS
    return bits


def region_bytes(config: AcceleratorConfig, *, packed: bool = False) -> dict:
    """``{Buffer: bytes of its region}``: ``rows x stride`` vectors of ``lanes x 32`` bits as
    the memory map lays them out today, or, ``packed``, each row's elements packed
    ``32 // bits`` to a 32-bit word (rows start on a word)."""
    params = EngineParams.from_config(config)
    mm, bits = params.memory_map, element_bits(config)
    word_bytes = LANE_WIDTH // 8
    result = {}
    for buffer, region in mm.regions.items():
        if packed:
            per_word = LANE_WIDTH // bits[buffer]
            elements = region.stride * mm.lanes        # a row's elements, padded to vectors
            result[buffer] = region.rows * math.ceil(elements / per_word) * word_bytes
        else:
            result[buffer] = region.rows * region.stride * mm.lanes * word_bytes
    return result


def program_of(config: AcceleratorConfig):
    """The densest program of ``config``'s engine (every head, a token gather): the one
    ``EngineParams.program_capacity`` is sized for."""
    return layer_program(range(config.model.num_heads), tokens=config.model.tokens,
                         token_keep=1)

