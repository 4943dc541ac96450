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
the rules above one event at a time (words and tiles, not cycles).
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
    """The fetcher and the memory, advanced cycle by cycle on demand (see the docstring)."""

    def __init__(self, words: int, stream: StreamParams, memory: MemoryTiming):
        self.stream, self.memory = stream, memory
        interval = Fraction(1) if memory.bytes_per_cycle is None else \
            max(Fraction(1), Fraction(stream.word_bytes) / Fraction(memory.bytes_per_cycle))
        self.interval = interval
        self.to_request, self.outstanding, self.inflight, self.held = words, 0, 0, 0
        self.presented = 0               # words of the burst presented this cycle (0: none)
        self.last_beat = None            # time (Fraction) of the latest scheduled beat
        self.beats: list[tuple[int, bool]] = []   # (cycle, last) of scheduled beats, in order
        self.next_beat = 0
        self.arrivals: list[int] = []    # cycle of each word's arrival, in order
        self.cycle = 0                   # the next cycle to simulate
        self.takes: dict[int, int] = {}  # cycle -> words the array takes then
        self.step()                      # the start cycle decides on the first burst

    def _schedule(self, grant: int, length: int) -> None:
        first = Fraction(grant + self.memory.latency)
        if self.last_beat is not None:
            first = max(first, self.last_beat + self.interval)
        for n in range(length):
            time = first + n * self.interval
            self.beats.append((math.ceil(time), n == length - 1))
        self.last_beat = first + (length - 1) * self.interval

    def step(self) -> None:
        """Simulate one cycle."""
        c, s = self.cycle, self.stream
        if self.presented:                                   # granted at once
            granted = self.presented
            self._schedule(c, granted)
            self.to_request -= granted
            self.outstanding += 1
            self.inflight += granted
        received = last = False
        if self.next_beat < len(self.beats) and self.beats[self.next_beat][0] == c:
            received, last = True, self.beats[self.next_beat][1]
            self.next_beat += 1
            self.arrivals.append(c)
            self.outstanding -= last
            self.inflight -= 1
            self.held += 1
        self.held -= self.takes.pop(c, 0)
        length = min(s.burst_beats, self.to_request)
        present = (self.to_request > 0 and self.outstanding < s.max_outstanding
                   and self.held + self.inflight + length <= s.buffer_words)
        self.presented = length if present else 0
        self.cycle = c + 1

    def _advance(self, limit: int | None) -> bool:
        """Simulate the next cycle that matters, skipping cycles in which nothing can change (no
        burst presented, so no decision changes until a beat or a take); never past ``limit``.
        False when nothing will ever change again."""
        if self.presented:
            self.step()
            return True
        pending = [self.beats[self.next_beat][0]] if self.next_beat < len(self.beats) else []
        pending += [t for t in self.takes if t >= self.cycle]
        if not pending:
            if limit is not None:
                self.cycle = max(self.cycle, limit)
            return False
        self.cycle = max(self.cycle, min(pending) if limit is None else min(min(pending), limit))
        if limit is None or self.cycle < limit:
            self.step()
        return True

    def run_to(self, cycle: int) -> None:
        """Simulate every cycle before ``cycle``."""
        while self.cycle < cycle:
            if not self._advance(cycle):
                return

    def word_arrival(self, index: int) -> int:
        """The cycle in which word ``index`` arrives (simulating as far as needed)."""
        while len(self.arrivals) <= index:
            if not self._advance(None):
                raise RuntimeError(f"the fetcher stops before word {index} arrives")
        return self.arrivals[index]


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
    fetcher = _Fetcher(words, stream, memory)
    period, offset = resident.tile_period, timing.weight_load_offset
    claimed = 0

    def ready(nominal: int, nonzero: bool) -> int:
        """The first cycle from ``nominal`` in which a tile may be taken."""
        nonlocal claimed
        if not nonzero:
            return nominal
        cycle = max(nominal, fetcher.word_arrival(claimed + r - 1) + 1)
        claimed += r
        return cycle

    def take(first: int) -> None:
        for k in range(r):
            fetcher.takes[first + k] = fetcher.takes.get(first + k, 0) + 1

    gate = ready(STARTUP_CYCLES - 2, tiles[0])
    fetcher.run_to(gate)
    if tiles[0]:
        take(gate + 1)
    start = gate + 2                               # the first tile's first issue, nominally
    for j in range(len(tiles)):
        following = tiles[j + 1] if j + 1 < len(tiles) else False
        fetcher.run_to(start)
        start = ready(start, following)
        if following:
            take(start + offset)
        if j + 1 < len(tiles):
            start += period
    last_start = start
    total = last_start + tokens - 1 + timing.drain_cycles
    waited = total - resident.total
    return replace(resident, total=total, stall=resident.stall + waited)
