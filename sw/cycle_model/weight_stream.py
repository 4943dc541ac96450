"""Cycle model of a GEMM whose weights stream from external memory (``hw.memory``).

The layer engine's linears read their weight words over AXI4 (``hw.memory.weight_fetcher``):
the fetcher asks for bursts of ``burst_beats`` words in order, at most ``max_outstanding`` in
flight, and only while the stream buffer (``buffer_words``) has room for every word asked for;
the GEMM core (``hw.gemm.gemm_core``) schedules a non-zero tile only once the tile's ``R``
words have arrived. Everything else is ``sw.cycle_model.gemm``'s timeline; what changes is that
a tile boundary may wait for the memory. Cycles count from the job's acceptance (cycle 0),
which is also the fetcher's start:

* **Fetcher.** In every cycle in which no burst is presented, or the presented one is granted,
  the fetcher decides whether to present the next one in the following cycle: some words are
  left to ask for, fewer than ``max_outstanding`` bursts are in flight (a burst is in flight
  from its grant to its last beat) and the words arrived but not yet taken by the array, plus
  those asked for but not arrived, plus the burst fit the buffer. Counts are those after the
  cycle's grant, beat and take. The start cycle decides on the job's words already, so the
  first burst is presented in cycle 1.
* **Memory** (:class:`MemoryTiming`). A burst presented in cycle ``a`` is granted in ``a`` (the
  memory is always ready for an address). Its first beat arrives ``latency`` cycles after the
  grant, or one beat time after the previous burst's last beat if that is later; the rest
  follow one beat time apart. A beat time is ``word_bytes / bytes_per_cycle`` cycles (at least
  one: the bus is one word wide); beat ``n`` arrives in cycle ``ceil`` of its time.
* **Tiles.** The first descriptor is taken at cycle ``STARTUP_CYCLES - 2`` and tile ``j+1``'s
  at tile ``j``'s first issue; each takes place in the first cycle, from then on, in which the
  words that have arrived in earlier cycles and are not yet claimed number at least ``R``
  (zero tiles and the end mark do not wait and claim nothing). The first tile's words are
  taken by the array in the ``R`` cycles after its claim, and its first row issues two cycles
  after the claim; tile ``j+1``'s words are taken from ``weight_load_offset`` cycles after
  tile ``j``'s first issue on, and tile ``j+1`` issues its first row one period ``P`` after
  tile ``j``'s, or later if its own boundary waits for the next tile's words.

With a memory that keeps up, the only cycles added to ``sw.cycle_model.gemm`` are the first
tile's wait: the fetch latency of its ``R`` words, exposed. ``streamed_gemm_cycles`` follows
the rules above burst by burst and tile by tile, not cycle by cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from sw.cycle_model.gemm import STARTUP_CYCLES, GemmCycles, GemmTiming, gemm_cycles

__all__ = ["MemoryTiming", "AXI_RAM", "StreamParams", "tile_sequence", "streamed_gemm_cycles"]


@dataclass(frozen=True)
class MemoryTiming:
    """An external memory: cycles from a burst's grant to its first beat, and its bandwidth.

    ``bytes_per_cycle`` of ``None`` means one word per cycle (the bus's own width)."""

    latency: int
    bytes_per_cycle: float | None = None


#: cocotbext-axi's ``AxiRamRead`` as the co-simulation attaches it (no pauses): measured by
#: ``sim/test_layer_engine.py``, whose cycle counts are exact with it.
AXI_RAM = MemoryTiming(latency=2)


@dataclass(frozen=True)
class StreamParams:
    """The fetcher and buffer of one engine (``sw.engine_params.EngineParams``'s fields)."""

    word_bytes: int
    burst_beats: int
    max_outstanding: int
    buffer_words: int

    @classmethod
    def of(cls, params) -> "StreamParams":
        return cls(word_bytes=params.word_bytes, burst_beats=params.burst_beats,
                   max_outstanding=params.max_outstanding, buffer_words=params.stream_words)


def tile_sequence(block_mask, *, out_tiles: int, in_tiles: int) -> list[bool]:
    """For every tile the GEMM streams, in order: whether it is non-zero (reads weights)."""
    mask = np.asarray(block_mask, dtype=bool)
    tiles = []
    for row in mask:
        stored = int(row.sum())
        if stored:
            tiles += [True] * (out_tiles * stored * in_tiles)
        else:
            tiles += [False] * out_tiles
    return tiles


class _Fetcher:
    """The fetcher and the memory, burst by burst (see the module docstring).

    Burst ``b`` (words ``b * B ..``) is decided in the first cycle ``d_b`` from the previous
    burst's grant (from cycle 0 for the first) in which three conditions hold, each of which
    stays true once true: burst ``b - max_outstanding`` has had its last beat (``<= d_b``), and
    the array has taken word ``b * B + length - buffer_words - 1`` (``<= d_b``; words asked for
    but not taken never exceed the buffer). It is presented and granted in ``d_b + 1``. The
    word the credit condition waits for belongs to a tile before any tile whose words are in
    burst ``b`` (the buffer holds a tile and a burst), so its take time is known when burst
    ``b`` is needed.
    """

    def __init__(self, words: int, stream: StreamParams, memory: MemoryTiming, r: int):
        self.stream, self.memory, self.r, self.words = stream, memory, r, words
        self.interval = Fraction(1) if memory.bytes_per_cycle is None else \
            max(Fraction(1), Fraction(stream.word_bytes) / Fraction(memory.bytes_per_cycle))
        self.grants: list[int] = []          # grant cycle of each burst
        self.firsts: list[Fraction] = []     # time of each burst's first beat
        self.last_beats: list[int] = []      # cycle of each burst's last beat
        self.take_starts: list[int] = []     # first take cycle of each streamed tile

    def _take(self, word: int) -> int:
        return self.take_starts[word // self.r] + word % self.r

    def _burst(self) -> None:
        b, s = len(self.grants), self.stream
        first_word = b * s.burst_beats
        length = min(s.burst_beats, self.words - first_word)
        decided = 0 if b == 0 else self.grants[b - 1]
        if b >= s.max_outstanding:
            decided = max(decided, self.last_beats[b - s.max_outstanding])
        waited = first_word + length - s.buffer_words - 1
        if waited >= 0:
            decided = max(decided, self._take(waited))
        grant = decided + 1
        first = Fraction(grant + self.memory.latency)
        if self.firsts:
            first = max(first, self.firsts[-1] + (s.burst_beats - 1) * self.interval
                        + self.interval)
        self.grants.append(grant)
        self.firsts.append(first)
        self.last_beats.append(math.ceil(first + (length - 1) * self.interval))

    def arrival(self, word: int) -> int:
        """The cycle in which word ``word`` arrives."""
        burst, index = divmod(word, self.stream.burst_beats)
        while len(self.grants) <= burst:
            self._burst()
        return math.ceil(self.firsts[burst] + index * self.interval)


def streamed_gemm_cycles(*, array_rows: int, array_cols: int, block_rows: int,
                         block_cols: int, tokens: int, block_mask, stream: StreamParams,
                         memory: MemoryTiming = AXI_RAM) -> GemmCycles:
    """Cycles of one job whose weights stream from ``memory`` (see the module docstring): the
    resident job's :class:`GemmCycles` with ``total`` (and ``stall``) grown by the waits."""
    resident = gemm_cycles(array_rows=array_rows, array_cols=array_cols, block_rows=block_rows,
                           block_cols=block_cols, tokens=tokens, block_mask=block_mask)
    timing = GemmTiming(array_rows, array_cols)
    tiles = tile_sequence(block_mask, out_tiles=block_rows // array_cols,
                          in_tiles=block_cols // array_rows)
    r = array_rows
    words = sum(tiles) * r
    fetcher = _Fetcher(words, stream, memory, r)
    period, offset = resident.tile_period, timing.weight_load_offset
    claimed = 0

    def ready(nominal: int, nonzero: bool) -> int:
        """The first cycle from ``nominal`` in which a tile may be taken."""
        nonlocal claimed
        if not nonzero:
            return nominal
        cycle = max(nominal, fetcher.arrival(claimed + r - 1) + 1)
        claimed += r
        return cycle

    def take(first: int) -> None:
        fetcher.take_starts.append(first)

    gate = ready(STARTUP_CYCLES - 2, tiles[0])
    if tiles[0]:
        take(gate + 1)
    start = gate + 2                               # the first tile's first issue, nominally
    for j in range(len(tiles)):
        following = tiles[j + 1] if j + 1 < len(tiles) else False
        start = ready(start, following)
        if following:
            take(start + offset)
        if j + 1 < len(tiles):
            start += period
    last_start = start
    total = last_start + tokens - 1 + timing.drain_cycles
    waited = total - resident.total
    return replace(resident, total=total, stall=resident.stall + waited)
