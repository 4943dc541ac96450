"""The scratchpad's regions in a layer program: their live ranges, the first-fit allocation
that lets regions never live at the same time share memory, and an independent check that a
program never reads a vector another region overwrote.

A buffer is *live* from the instruction that first writes it to the last instruction that reads
it (inclusive: an instruction that reads one buffer while writing another needs both). INPUT is
written before the program starts (position -1, the load) and OUTPUT read after it ends
(position ``len(program)``, the read-back). Two regions may share memory only when their live
ranges are disjoint; ``sw.engine_params`` places the regions of each scratchpad memory with
:func:`first_fit` over the live ranges of :func:`program_of` (the densest program).
:func:`overwritten_reads` replays a program's writes and reads on the memory map, vector by
vector, without using the live ranges.

>>> from sw.image.program import layer_program
>>> ranges = live_ranges(layer_program([0, 1], tokens=17, token_keep=17))
>>> ranges[Buffer.INPUT], ranges[Buffer.SCORES], ranges[Buffer.OUTPUT]
(LiveRange(first=-1, last=10), LiveRange(first=4, last=8), LiveRange(first=13, last=15))
>>> offsets = first_fit({Buffer.LN1: 4, Buffer.LN2: 6, Buffer.GELU: 6}, ranges)
>>> {buffer.name: offset for buffer, offset in offsets.items()}     # LN1 fits under LN2
{'LN2': 0, 'GELU': 6, 'LN1': 0}
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from sw.config import AcceleratorConfig
from sw.image.program import layer_program
from sw.isa import UNUSED, Buffer, Instruction, Opcode

__all__ = ["LiveRange", "live_ranges", "disjoint_pairs", "peak_live", "first_fit",
           "program_of", "overwritten_reads", "intact_at_end"]


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


def first_fit(sizes: dict, ranges: dict) -> dict:
    """``{Buffer: offset}``: each buffer of ``sizes`` (any unit) at the lowest offset where it
    overlaps no region already placed whose live range (``ranges``) overlaps its own, the
    largest first (ties in buffer order). A buffer missing from ``ranges`` is live throughout."""
    always = LiveRange(-1 << 62, 1 << 62)
    offsets = {}
    for buffer in sorted(sizes, key=lambda b: (-sizes[b], b)):
        live = ranges.get(buffer, always)
        taken = sorted((offsets[other], offsets[other] + sizes[other]) for other in offsets
                       if ranges.get(other, always).overlaps(live))
        offset = 0
        for start, end in taken:
            if offset + sizes[buffer] <= start:
                break
            offset = max(offset, end)
        offsets[buffer] = offset
    return offsets


def program_of(config: AcceleratorConfig, norm: str = "pre"):
    """The densest ``norm`` program of ``config``'s engine (every head, a token gather). The
    pre-LN one is what ``EngineParams.program_capacity`` is sized for and the memory map is laid
    out by. A post-LN program (BERT) is as long and runs on the same memory map: its buffers'
    live ranges overlap only where the pre-LN program's do (``sw.image.program.layer_program``;
    ``sw.engine_params`` checks it with :func:`overwritten_reads` for every config), so an
    engine's memory map does not depend on ``config.model.norm``."""
    return layer_program(range(config.model.num_heads), tokens=config.model.tokens,
                         token_keep=1, norm=norm)


def _vectors(memory_map, buffer: Buffer, rows: int) -> tuple[int, slice]:
    region = memory_map.regions[buffer]
    index, offset = memory_map.split(region.base)
    return index, slice(offset, offset + rows * region.stride)


def _replay_owners(program, memory_map, loaded=(Buffer.INPUT,), result=Buffer.OUTPUT):
    """Replays ``program`` on a shadow of the scratchpad holding, per vector, the buffer that
    last wrote it (-1: nothing). Yields ``("read", position, instruction, buffer, owners)``
    before each read (the read-back of OUTPUT is position ``len(program)``, instruction None),
    ``("clobber", position, instruction, source, None)`` where an instruction's destination
    overlaps a source it reads while writing, and last ``("end", None, None, written,
    shadow)``, ``written`` the ``(memory, vectors)`` each buffer last wrote. Rows: every token
    until a TOKEN_GATHER, its ``arg`` after it."""
    shadow = [np.full(memory.depth, -1) for memory in memory_map.memories]
    rows = memory_map.tokens
    written = {}
    for buffer in loaded:                                  # the loads, in order
        index, vectors = written[buffer] = _vectors(memory_map, buffer, rows)
        shadow[index][vectors] = buffer
    for position, instruction in enumerate(program):
        sources = [Buffer(s) for s in (instruction.src_a, instruction.src_b) if s != UNUSED]
        read = {}
        for source in sources:
            read[source] = _vectors(memory_map, source, rows)
            index, vectors = read[source]
            yield "read", position, instruction, source, shadow[index][vectors]
        if instruction.opcode == Opcode.TOKEN_GATHER:
            rows = instruction.arg
        if instruction.dst == UNUSED:
            continue
        index, vectors = written[Buffer(instruction.dst)] = _vectors(
            memory_map, Buffer(instruction.dst), rows)
        for source, (s_index, s_vectors) in read.items():
            if source != instruction.dst and s_index == index and \
                    vectors.start < s_vectors.stop and s_vectors.start < vectors.stop:
                yield "clobber", position, instruction, source, None
        shadow[index][vectors] = instruction.dst
    index, vectors = _vectors(memory_map, result, rows)
    yield "read", len(program), None, result, shadow[index][vectors]
    yield "end", None, None, written, shadow


def overwritten_reads(program, memory_map, loaded=(Buffer.INPUT,),
                      result=Buffer.OUTPUT) -> list[str]:
    """Every read of ``program`` (and the read-back of ``result``, OUTPUT by default) that would find vectors another
    buffer wrote since the buffer's own write, one line each (empty: the memory map's sharing is
    safe for ``program``). Rows as the engine runs them (all tokens, then a gather's kept ones);
    a unit writing its destination over a source it still reads counts too (an in-place gather,
    destination and source one buffer, does not). ``loaded``: the buffers written before the
    program starts, in order (the embedding program's patch rows and position table)."""
    problems = []
    for event, position, instruction, buffer, owners in _replay_owners(program, memory_map,
                                                                       loaded, result):
        what = "the read-back" if instruction is None else \
            f"instruction {position} ({instruction})"
        if event == "clobber":
            problems.append(f"{what} reads {buffer.name}, but its destination "
                            f"{Buffer(instruction.dst).name} overwrites it")
        elif event == "read":
            foreign = owners[owners != buffer]
            if foreign.size:
                holders = ", ".join(Buffer(o).name if o >= 0 else "nothing"
                                    for o in sorted(set(foreign.tolist())))
                problems.append(f"{what} reads {buffer.name}, but {foreign.size} of its "
                                f"vectors hold {holders}")
    return problems


def intact_at_end(program, memory_map) -> set:
    """Buffers whose vectors still hold what they last wrote when ``program`` ends (all the rows
    they wrote): the ones a testbench can read back after the run."""
    *_, (_, _, _, written, shadow) = _replay_owners(program, memory_map)
    return {buffer for buffer, (index, vectors) in written.items()
            if (shadow[index][vectors] == buffer).all()}
