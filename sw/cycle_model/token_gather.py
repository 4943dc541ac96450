"""Cycle model of the ``TokenGather`` unit (``hw/tokens/token_gather.py``): its timeline.

A job runs these phases one after the other; cycles count from the cycle after the job is
accepted to the cycle before ``done`` rises (the unit's ``total_cycles`` counter):

=============  ============================  =================================================
phase          cycles                        what happens
=============  ============================  =================================================
select         ``score_width``               radix select of the keep threshold ``tau``: one
                                             candidate bit per cycle, all scores compared and
                                             counted in parallel (largest ``tau`` with at least
                                             ``keep`` candidates scoring ``>= tau``)
ties           1                             count the candidates scoring ``> tau``; the rest
                                             of ``keep`` are taken among the ties, lowest index
                                             first
scan           ``tokens + 1``                one token per cycle in index order: a kept token's
                                             index is written at the running keep count (the
                                             prefix sum of the keep mask, i.e. compaction); a
                                             dropped token's row is read and accumulated, times
                                             its weight, into the fused sum (the last read
                                             lands one cycle later)
divide         ``FUSION_RECIP_BITS + 1``     restoring division ``2**K // sum(w)``, one quotient
                                             bit per cycle (only when a fused token is made)
multiply       ``width + MULTIPLY_LATENCY    the fused row, one lane per cycle on one
               - 1``                         multiplier, ``MULTIPLY_LATENCY`` stages: the
                                             lane's sum; times the reciprocal; rounded,
                                             saturated (idem)
emit           ``rows + 2`` + stalls         the index-driven gather: kept-index memory, then
                                             token-row memory (one read cycle each), one row per
                                             cycle on the output stream
emit fused     1 + stalls                    the fused row (when made)
=============  ============================  =================================================

In index mode (a job with ``indexed`` set, e.g. Swin's window partition) the indices come from
the load port and only ``emit`` runs. A cycle in which the output holds a valid row that the
consumer does not take is a stall: it freezes the emit pipeline and adds one cycle.
:func:`token_gather_cycles` takes the consumer's ready pattern (one bool per cycle) and gives
the exact count.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from sw.config import MAX_MODEL_SIZE
from sw.golden.token_select import FUSION_RECIP_BITS
from sw.image.program import gather_arg2

#: Maximum Q0.8 probability (``2**8 - 1``): a summed score is at most ``heads`` of these.
PROBABILITY_MAX = 255
#: Cycles of the reciprocal division (one quotient bit per cycle, ``K + 1`` bits).
DIVIDE_CYCLES = FUSION_RECIP_BITS + 1
#: Register stages of the fused-row multiply: the lane's sum; the product with the reciprocal;
#: rounded and saturated into the fused row.
MULTIPLY_LATENCY = 3
#: Read latency of the kept-index and token-row memories in the emit pipeline.
EMIT_LATENCY = 2


def score_width(heads: int) -> int:
    """Bits of a CLS score summed over ``heads`` heads of Q0.8 probabilities."""
    return (heads * PROBABILITY_MAX).bit_length()


@dataclass(frozen=True)
class TokenGatherJob:
    """One job of the unit.

    Attributes
    ----------
    tokens : int
        Rows of the input (``T``).
    keep : int
        Candidates kept (select mode), or rows gathered (index mode).
    protected : int
        Leading tokens always kept (select mode).
    fuse : bool
        Make the fused token of the dropped candidates (select mode).
    indexed : bool
        Index mode: gather the ``keep`` rows whose indices were loaded.
    """

    tokens: int
    keep: int
    protected: int = 1
    fuse: bool = True
    indexed: bool = False

    def __post_init__(self):
        if self.tokens < 1 or self.keep < 1:
            raise ValueError(f"A job needs at least one token and one kept row, not tokens "
                             f"{self.tokens}, keep {self.keep}")
        if not self.indexed and (self.protected < 1
                                 or self.protected + self.keep > self.tokens):
            raise ValueError(f"protected ({self.protected}) + keep ({self.keep}) must not "
                             f"exceed tokens ({self.tokens})")

    @property
    def kept_rows(self) -> int:
        """Rows of the index-driven gather."""
        return self.keep if self.indexed else self.protected + self.keep

    @property
    def fused(self) -> bool:
        """Whether a fused row is made (fusion on and at least one candidate dropped)."""
        return (not self.indexed and self.fuse
                and self.tokens > self.protected + self.keep)

    @property
    def output_rows(self) -> int:
        return self.kept_rows + int(self.fused)


@dataclass(frozen=True)
class TokenGatherCycles:
    """Cycles per phase of one job; ``total`` is the unit's ``total_cycles`` counter."""

    phases: dict
    stall: int

    @property
    def total(self) -> int:
        return sum(self.phases.values()) + self.stall

    @property
    def emit_start(self) -> int:
        """Cycle (from 0) in which the emit phase starts."""
        return sum(cycles for name, cycles in self.phases.items()
                   if name not in ("emit", "emit_fused"))


def token_gather_cycles(job: TokenGatherJob, *, heads: int, width: int,
                        ready=None) -> TokenGatherCycles:
    """Cycles of ``job`` on a unit built for ``heads`` heads and rows of ``width`` elements.

    ``ready``: the output consumer's ready signal per cycle, counted from the first cycle after
    acceptance (a sequence of bools at least as long as the job; None: always ready).
    """
    phases = {}
    if not job.indexed:
        phases["select"] = score_width(heads)
        phases["ties"] = 1
        phases["scan"] = job.tokens + 1
        if job.fused:
            phases["divide"] = DIVIDE_CYCLES
            phases["multiply"] = width + MULTIPLY_LATENCY - 1
    start = sum(phases.values())
    phases["emit"] = job.kept_rows + EMIT_LATENCY
    if job.fused:
        phases["emit_fused"] = 1
    if ready is None:
        return TokenGatherCycles(phases=phases, stall=0)
    # Rows leave at the ready cycles from the first valid one on; the fused row after them.
    cycle, stall = start + EMIT_LATENCY, 0
    for _ in range(job.output_rows):
        while not ready[cycle]:
            cycle, stall = cycle + 1, stall + 1
        cycle += 1
    return TokenGatherCycles(phases=phases, stall=stall)


def _check_options(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` naming the first option out of its range: sizes within the config
    schema's bounds, ``protected`` within the 8-bit field of ``TOKEN_GATHER``'s ``arg2``."""
    for option, value in (("--heads", args.heads), ("--width", args.width)):
        if not 1 <= value <= MAX_MODEL_SIZE:
            raise ValueError(f"{option} must lie in 1..{MAX_MODEL_SIZE}, not {value}")
    if not 0 < args.keep_rate <= 1:
        raise ValueError(f"--keep-rate must lie in (0, 1], not {args.keep_rate:g}")
    try:
        gather_arg2(args.protected, not args.drop)
    except ValueError:
        raise ValueError(f"--protected must lie in 1..255, not {args.protected}") from None
    if not args.protected < args.tokens <= MAX_MODEL_SIZE:
        raise ValueError(f"--tokens must lie in {args.protected + 1}..{MAX_MODEL_SIZE} (more "
                         f"than --protected {args.protected}), not {args.tokens}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sw.cycle_model.token_gather",
                                     description="Cycles of one TokenGather job.")
    parser.add_argument("--tokens", type=int, default=197)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--width", type=int, default=768, help="row width (hidden size)")
    parser.add_argument("--keep-rate", type=float, default=0.7)
    parser.add_argument("--protected", type=int, default=1)
    parser.add_argument("--drop", action="store_true", help="no fused token")
    args = parser.parse_args(argv)
    from sw.golden.token_select import keep_count
    try:
        _check_options(args)
        job = TokenGatherJob(tokens=args.tokens, protected=args.protected, fuse=not args.drop,
                             keep=keep_count(args.tokens - args.protected, args.keep_rate))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    cycles = token_gather_cycles(job, heads=args.heads, width=args.width)
    print(f"{job.tokens} tokens -> {job.output_rows} rows: " + ", ".join(
        f"{name} {value}" for name, value in cycles.phases.items()) + f"; total {cycles.total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
