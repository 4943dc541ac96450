"""Cycles into time at a measured clock: latency, rate and dense-equivalent throughput."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

#: The design whose placed Fmax turns a layer's or an image's cycles into time.
ENGINE_TOP = "layer_engine"


def at_fmax(cycles: int, fmax_mhz: float, *, dense_macs: int | None = None,
            dsp: int | None = None) -> dict:
    """What ``cycles`` of one job (a layer, an image) take at ``fmax_mhz``.

    ``latency_us`` = cycles / Fmax; ``per_second`` = jobs per second, one after another;
    ``effective_gops`` = 2 x ``dense_macs`` (the dense model's multiply-accumulates, one
    multiply and one add each) per second of the sparse run, in 10^9; ``gops_per_dsp`` divides
    that by the ``dsp`` multiplier blocks.

    Raises
    ------
    ValueError
        If ``cycles`` is not positive or ``fmax_mhz`` is not a positive number.
    """
    if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles <= 0:
        raise ValueError(f"cycles must be a positive integer, not {cycles!r}")
    if not isinstance(fmax_mhz, (int, float)) or isinstance(fmax_mhz, bool) or not fmax_mhz > 0:
        raise ValueError(f"Fmax must be a positive number of MHz, not {fmax_mhz!r}")
    seconds = cycles / (fmax_mhz * 1e6)
    result = {"fmax_mhz": fmax_mhz, "latency_us": round(seconds * 1e6, 3),
              "per_second": round(1 / seconds, 2)}
    if dense_macs is not None:
        gops = 2 * dense_macs / seconds / 1e9
        result["effective_gops"] = round(gops, 3)
        if dsp:
            result["gops_per_dsp"] = round(gops / dsp, 4)
    return result


def _synth_report(report: Path) -> dict | None:
    """The ``hw.synth`` report at ``report``; None if absent, unreadable or someone else's."""
    try:
        document = json.loads(Path(report).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(document, dict) or document.get("generator") != "hw.synth":
        return None
    return document


def measured_fmax(report: Path) -> tuple[float, int] | None:
    """Fmax (MHz) and multiplier blocks of a placed ``hw.synth`` report; None if not placed
    or absent."""
    document = _synth_report(report)
    if document is None:
        return None
    fmax = document.get("fmax_mhz")
    if not document.get("placed") or not isinstance(fmax, (int, float)):
        return None
    return float(fmax), int(document.get("dsp", 0))


@dataclass(frozen=True)
class EngineClock:
    """The clock that turns an engine's cycles into time: measured by place and route (a
    placed ``hw.synth`` report of its layer engine) or given by the user, never assumed.

    ``dsp``: the engine's multiplier blocks (MULT18X18D) from its synthesis report, None when
    it has none (then no GOP/s per DSP block).
    """

    fmax_mhz: float
    measured: bool
    source: str                  #: the report's path, or how the clock was given
    dsp: int | None = None

    def describe(self) -> str:
        """One line: the clock, and where it comes from."""
        if self.measured:
            return (f"{self.fmax_mhz:g} MHz, measured: the placed and routed layer engine "
                    f"({self.source})")
        return f"{self.fmax_mhz:g} MHz, given ({self.source}), not measured"

    def at(self, cycles: int, dense_macs: int | None = None) -> dict:
        """:func:`at_fmax` of ``cycles`` at this clock."""
        return at_fmax(cycles, self.fmax_mhz, dense_macs=dense_macs, dsp=self.dsp)

    def to_dict(self) -> dict:
        return {"fmax_mhz": self.fmax_mhz, "measured": self.measured, "source": self.source,
                "dsp": self.dsp}


def engine_clock(report: Path, *, given_mhz: float | None = None,
                 given_as: str = "--fmax-mhz") -> EngineClock | None:
    """The clock of the layer engine whose ``hw.synth`` report is ``report``
    (``hw.synth.report_path(config, ENGINE_TOP)``): ``given_mhz`` when given (labelled
    ``given_as``, not measured), else the report's placed Fmax; None when neither exists.

    Raises
    ------
    ValueError
        If ``given_mhz`` is not a positive number.
    """
    document = _synth_report(report) or {}
    dsp = document.get("dsp")
    dsp = dsp if isinstance(dsp, int) and not isinstance(dsp, bool) and dsp > 0 else None
    if given_mhz is not None:
        if (isinstance(given_mhz, bool) or not isinstance(given_mhz, (int, float))
                or not given_mhz > 0 or given_mhz == float("inf")):
            raise ValueError(f"Fmax must be a positive number of MHz, not {given_mhz!r}")
        return EngineClock(float(given_mhz), measured=False, source=given_as, dsp=dsp)
    measured = measured_fmax(report)
    if measured is None:
        return None
    return EngineClock(measured[0], measured=True, source=str(report), dsp=dsp)


def missing_clock(report: Path, command: str) -> str:
    """The one line a report prints instead of time when :func:`engine_clock` found no clock:
    why ``report`` gives none, and ``command``, the one that measures it."""
    document = _synth_report(report)
    if document is None:
        why = f"no synthesis report of the layer engine ({report})"
    elif document.get("overflows"):
        why = (f"{report}: the layer engine does not fit {document.get('device', 'the device')} "
               f"({', '.join(map(str, document['overflows']))}), so it was not placed and routed")
    else:
        why = f"{report}: synthesised but not placed and routed"
    return f"no time at Fmax: {why}; measure it with `{command}`"
