"""Cycle model of the special-function units (``hw.units``): GELU, softmax and LayerNorm.

The single source of the units' pipeline depths and cycle counts: the RTL builds its pipelines
from the constants and timing classes here, and the co-simulation checks its cycle counters
against :func:`gelu_cycles`, :func:`softmax_cycles` and :func:`layernorm_cycles`.

A unit has ``L`` lanes; a row of ``n`` elements arrives as ``b = ceil(n / L)`` *beats* (lane
``j`` of beat ``k`` holds element ``k * L + j``; the lanes past ``n`` in the last beat are
ignored on input and read as 0 on output). Cycle 0 is the first cycle the input stream offers
data; ``total`` counts cycles 0 .. the last output transfer, inclusive. The model assumes
ungated streams (input valid and output ready on every cycle); with idle input cycles or
back-pressure the RTL takes at least ``total`` and at most ``total`` plus the gated cycles.

**GELU** is one pipeline of :data:`GELU_LATENCY` register stages: beat ``k`` enters at cycle
``k`` and leaves at ``k + GELU_LATENCY``, so ``total = beats + GELU_LATENCY``.

**Row units** keep ``S`` row *slots* (a row buffer each, per lane) and three row walkers that
each visit one row at a time, in order, one beat per cycle:

* ``A`` (fill) writes a row's beats into a free slot as they arrive and keeps the row's
  statistics (softmax: the maximum; LayerNorm: ``sum x`` and ``sum x**2``).
* softmax only, ``B`` (exponent sum) reads the slot back, computes ``e`` per element and sums
  the row; the sum goes through the pipelined reciprocal (``2**K // sum``).
  LayerNorm instead sends its statistics through the variance, square-root and reciprocal
  pipeline as soon as ``A`` ends.
* ``C`` (emit) reads the slot again and streams the results out; the slot is free again once
  the row's last output has left.

A walker decides to start a row in the cycle its previous row's last beat goes (or any later
cycle) and begins one cycle after the decision; it may start only once the event it waits for
(a free slot, a filled row, a row's reciprocal) is at least one cycle old, because those are
counted in registers. With ``fa/la`` the first and last beat cycles of A (and likewise
``fb/lb``, ``fc/lc``), ``fr`` the cycle of a row's last output transfer and ``-inf`` for rows
before the first::

    fa[0] = 0                               (A waits for the first row with a free slot)
    fa[i] = max(la[i-1], fr[i-S] + 1) + 1   la[i] = fa[i] + b - 1
    fb[i] = max(lb[i-1], la[i] + 1) + 1     lb[i] = fb[i] + b - 1            (softmax)
    ready[i] = lb[i] + SOFTMAX_SUM_LATENCY   (softmax: reciprocal of row i stored)
    ready[i] = la[i] + LAYERNORM_STATS_LATENCY   (LayerNorm: std and reciprocal stored)
    fc[i] = max(lc[i-1], ready[i] + 1) + 1  lc[i] = fc[i] + b - 1
    fr[i] = lc[i] + EMIT_LATENCY            total = fr[rows-1] + 1

Rows of full length overlap completely once ``S`` slots cover a row's stay (about three row
times plus the latencies for softmax, two for LayerNorm); ``SoftmaxTiming.slots`` and
``LayerNormTiming.slots`` pick ``S`` for the longest row so that such rows stream at one beat
per cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Cycles from a registered memory read address to its data.
MEMORY_READ_LATENCY = 1

#: Register stages of the i-exp pipeline: the distance ``d = max - x``; product ``d * m``;
#: round, shift, saturate to ``u``; square of ``poly_b - r``; add ``poly_c`` and shift right by
#: ``z``.
IEXP_LATENCY = 5

#: Register stages of the GELU pipeline: clip; ``q * erf_multiplier``; round/shift/saturate to
#: ``t``; ``min(|t|, erf_b) - erf_b``; square; ``h``; ``q * h``; ``* multiplier``;
#: round/shift/saturate.
GELU_LATENCY = 9

#: Numerator bit positions of the softmax reciprocal ``2**K // sum`` (``K`` is at most 62); the
#: pipelined divider has one stage per position.
SOFTMAX_RECIPROCAL_BITS = 63

#: Register stages of the softmax emit path after the read: i-exp, ``e * recip``, round/shift.
SOFTMAX_EMIT_LATENCY = MEMORY_READ_LATENCY + IEXP_LATENCY + 2

#: Register stages of the LayerNorm statistics before the square root: the row's ``sum(x)`` and
#: ``sum(x**2)``; ``d * sum(x**2)`` and ``sum(x)**2``; their difference (the variance).
LAYERNORM_VARIANCE_LATENCY = 3

#: Register stages of the LayerNorm emit path after the read: centre; times the reciprocal;
#: remainder; correction; ``* gamma + beta``; ``* multiplier``; the rounding offset added;
#: shift and saturate.
LAYERNORM_EMIT_LATENCY = MEMORY_READ_LATENCY + 8


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _check_positive(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value


def isqrt_stages(operand_width: int) -> int:
    """Register stages of the digit-by-digit square root of an ``operand_width``-bit operand
    (one result bit per stage)."""
    return _ceil_div(operand_width, 2)


@dataclass(frozen=True)
class GeluTiming:
    """Timing of a GELU unit of ``lanes`` lanes."""

    lanes: int

    def __post_init__(self):
        _check_positive(self.lanes, "Lanes")

    @property
    def latency(self) -> int:
        """Cycles from a beat's input transfer to its output transfer."""
        return GELU_LATENCY


@dataclass(frozen=True)
class SoftmaxTiming:
    """Timing of a softmax unit: ``lanes`` lanes, rows of at most ``max_len`` scores."""

    lanes: int
    max_len: int

    def __post_init__(self):
        _check_positive(self.lanes, "Lanes")
        _check_positive(self.max_len, "Longest row")

    @property
    def max_beats(self) -> int:
        return _ceil_div(self.max_len, self.lanes)

    @property
    def sum_latency(self) -> int:
        """Cycles from B's last read of a row to the cycle its reciprocal is stored."""
        return MEMORY_READ_LATENCY + IEXP_LATENCY + SOFTMAX_RECIPROCAL_BITS

    @property
    def emit_latency(self) -> int:
        return SOFTMAX_EMIT_LATENCY

    @property
    def slots(self) -> int:
        """Row buffers: three row times plus the latencies, for rows of ``max_len``."""
        return 3 + _ceil_div(self.sum_latency + self.emit_latency + 4, self.max_beats)


@dataclass(frozen=True)
class LayerNormTiming:
    """Timing of a LayerNorm unit: ``lanes`` lanes, rows of at most ``max_len`` values of
    ``in_width`` bits, ``norm_bits`` fraction bits of the normalised value."""

    lanes: int
    max_len: int
    in_width: int
    norm_bits: int

    def __post_init__(self):
        _check_positive(self.lanes, "Lanes")
        _check_positive(self.max_len, "Longest row")
        _check_positive(self.in_width, "Input width")
        if not isinstance(self.norm_bits, int) or self.norm_bits < 0:
            raise ValueError(f"Norm bits must be a non-negative integer, not {self.norm_bits!r}")

    @property
    def max_beats(self) -> int:
        return _ceil_div(self.max_len, self.lanes)

    @property
    def length_bits(self) -> int:
        """Bits of the row length ``d`` (``d < 2**length_bits``)."""
        return self.max_len.bit_length()

    @property
    def variance_width(self) -> int:
        """Bits of ``d * sum(x**2) - sum(x)**2 = d**2 * sigma**2 < (d * 2**in_width)**2``."""
        return 2 * (self.length_bits + self.in_width)

    @property
    def reciprocal_shift(self) -> int:
        """``k``: the reciprocal is ``2**k // std``;
        ``|c << P| < d * 2**(in_width + P) <= 2**k``."""
        return self.length_bits + self.in_width + self.norm_bits

    @property
    def stats_latency(self) -> int:
        """Cycles from A's last beat of a row to the cycle its std and reciprocal are stored."""
        return (LAYERNORM_VARIANCE_LATENCY + isqrt_stages(self.variance_width)
                + self.reciprocal_shift + 1)

    @property
    def emit_latency(self) -> int:
        return LAYERNORM_EMIT_LATENCY

    @property
    def slots(self) -> int:
        """Row buffers: two row times plus the latencies, for rows of ``max_len``."""
        return 2 + _ceil_div(self.stats_latency + self.emit_latency + 4, self.max_beats)


@dataclass(frozen=True)
class UnitCycles:
    """Predicted cycles of one job of a unit."""

    total: int        #: cycles 0 .. the last output transfer, inclusive
    elements: int     #: elements processed
    beats: int        #: input beats (= output beats)
    lanes: int
    latency: int      #: a lone row's (GELU: a beat's) last input to last output transfer

    @property
    def elements_per_cycle_per_lane(self) -> float:
        return self.elements / (self.total * self.lanes)


def gelu_cycles(timing: GeluTiming, elements: int) -> UnitCycles:
    """Cycles of ``elements`` GELU inputs streamed as ``ceil(elements / lanes)`` beats."""
    _check_positive(elements, "Elements")
    beats = _ceil_div(elements, timing.lanes)
    return UnitCycles(total=beats + GELU_LATENCY, elements=elements, beats=beats,
                      lanes=timing.lanes, latency=GELU_LATENCY)


def _row_schedule(rows: int, beats: int, slots: int, ready_after_fill: int | None,
                  ready_after_sum: int | None, emit_latency: int) -> list[int]:
    """``fr[i]`` for every row (the recurrence of the module docstring)."""
    never = -(10 ** 18)
    la = lb = lc = never
    fr: list[int] = []
    for i in range(rows):
        fa = 0 if i == 0 else max(la, fr[i - slots] + 1 if i >= slots else never) + 1
        la = fa + beats - 1
        if ready_after_sum is not None:
            fb = max(lb, la + 1) + 1
            lb = fb + beats - 1
            ready = lb + ready_after_sum
        else:
            ready = la + ready_after_fill
        fc = max(lc, ready + 1) + 1
        lc = fc + beats - 1
        fr.append(lc + emit_latency)
    return fr


def _check_rows(rows: int, length: int, max_len: int) -> None:
    _check_positive(rows, "Rows")
    _check_positive(length, "Row length")
    if length > max_len:
        raise ValueError(f"Row length ({length}) exceeds the unit's longest row ({max_len})")


def softmax_cycles(timing: SoftmaxTiming, *, rows: int, length: int) -> UnitCycles:
    """Cycles of ``rows`` softmax rows of ``length`` scores each."""
    _check_rows(rows, length, timing.max_len)
    beats = _ceil_div(length, timing.lanes)
    args = dict(beats=beats, slots=timing.slots, ready_after_fill=None,
                ready_after_sum=timing.sum_latency, emit_latency=timing.emit_latency)
    fr = _row_schedule(rows, **args)
    lone = _row_schedule(1, **args)[0] - (beats - 1)
    return UnitCycles(total=fr[-1] + 1, elements=rows * length, beats=rows * beats,
                      lanes=timing.lanes, latency=lone)


def layernorm_cycles(timing: LayerNormTiming, *, rows: int, length: int) -> UnitCycles:
    """Cycles of ``rows`` LayerNorm rows of ``length`` values each."""
    _check_rows(rows, length, timing.max_len)
    beats = _ceil_div(length, timing.lanes)
    args = dict(beats=beats, slots=timing.slots, ready_after_fill=timing.stats_latency,
                ready_after_sum=None, emit_latency=timing.emit_latency)
    fr = _row_schedule(rows, **args)
    lone = _row_schedule(1, **args)[0] - (beats - 1)
    return UnitCycles(total=fr[-1] + 1, elements=rows * length, beats=rows * beats,
                      lanes=timing.lanes, latency=lone)


def unit_timings(config) -> tuple[SoftmaxTiming, GeluTiming, LayerNormTiming]:
    """The timings of the units an encoder layer of ``config`` needs: softmax over rows of up
    to ``tokens`` scores, GELU, LayerNorm over rows of ``hidden_size`` int16 residual values
    with the golden default norm bits (``hw.units.*.from_config`` builds the same units)."""
    from sw.golden.encoder_layer import RESIDUAL_BITS
    from sw.golden.kernels import layernorm_constants

    m, hw = config.model, config.hardware
    norm_bits = layernorm_constants([1.0, 1.0], [0.0, 0.0], 1.0).norm_bits
    return (SoftmaxTiming(hw.softmax_lanes, m.tokens), GeluTiming(hw.gelu_lanes),
            LayerNormTiming(hw.layernorm_lanes, m.hidden_size, RESIDUAL_BITS, norm_bits))
