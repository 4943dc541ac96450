"""Cycles into time at a measured clock: latency, rate and dense-equivalent throughput."""

from __future__ import annotations

import json
from pathlib import Path


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


def measured_fmax(report: Path) -> tuple[float, int] | None:
    """Fmax (MHz) and multiplier blocks of a placed ``hw.synth`` report; None if not placed
    or absent."""
    try:
        document = json.loads(Path(report).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(document, dict) or document.get("generator") != "hw.synth":
        return None
    fmax = document.get("fmax_mhz")
    if not document.get("placed") or not isinstance(fmax, (int, float)):
        return None
    return float(fmax), int(document.get("dsp", 0))
