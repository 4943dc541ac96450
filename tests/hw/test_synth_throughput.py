"""Cycles into microseconds, rates and GOP/s at a measured Fmax."""

import json
from pathlib import Path

import pytest

from hw.synth.throughput import (EngineClock, at_fmax, engine_clock, measured_fmax,
                                 missing_clock)


def test_latency_rate_and_effective_throughput():
    # 1,000,000 cycles at 50 MHz: 20 ms, 50 a second; 10^9 dense MACs in 20 ms = 100 GOP/s
    assert at_fmax(1_000_000, 50.0, dense_macs=10**9, dsp=100) == {
        "fmax_mhz": 50.0, "latency_us": 20000.0, "per_second": 50.0,
        "effective_gops": 100.0, "gops_per_dsp": 1.0}
    assert at_fmax(4_813, 48.37) == {"fmax_mhz": 48.37, "latency_us": 99.504,
                                     "per_second": 10049.86}   # 48.37e6 / 4813


@pytest.mark.parametrize("cycles, fmax, message", [
    (0, 50.0, "cycles must be a positive integer, not 0"),
    (1.5, 50.0, "cycles must be a positive integer, not 1.5"),
    (10, 0, "Fmax must be a positive number of MHz, not 0"),
    (10, None, "Fmax must be a positive number of MHz, not None"),
])
def test_bad_arguments(cycles, fmax, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        at_fmax(cycles, fmax)


def test_measured_fmax_only_from_a_placed_report(tmp_path):
    report = tmp_path / "layer_engine.json"
    assert measured_fmax(report) is None
    report.write_text(json.dumps({"generator": "hw.synth", "placed": True, "fmax_mhz": 48.37,
                                  "dsp": 8}))
    assert measured_fmax(report) == (48.37, 8)
    report.write_text(json.dumps({"generator": "hw.synth", "placed": False, "fmax_mhz": None}))
    assert measured_fmax(report) is None
    report.write_text(json.dumps({"generator": "someone else", "placed": True, "fmax_mhz": 9}))
    assert measured_fmax(report) is None


FIXTURES = Path(__file__).parent / "synth_fixtures"
PLACED = FIXTURES / "layer_engine.placed.json"         # 50 MHz, 100 MULT18X18D
OVERFLOW = FIXTURES / "layer_engine.overflow.json"     # the tiny engine: 164 > 156 multipliers


def test_the_engine_clock_of_a_placed_report():
    clock = engine_clock(PLACED)
    assert clock == EngineClock(50.0, measured=True, source=str(PLACED), dsp=100)
    assert clock.describe() == (f"50 MHz, measured: the placed and routed layer engine "
                                f"({PLACED})")
    # 2,000,000 cycles at 50 MHz: 40 ms; 10^9 dense MACs in 40 ms = 50 GOP/s, 0.5 per block
    assert clock.at(2_000_000, dense_macs=10**9) == {
        "fmax_mhz": 50.0, "latency_us": 40000.0, "per_second": 25.0,
        "effective_gops": 50.0, "gops_per_dsp": 0.5}
    assert clock.to_dict() == {"fmax_mhz": 50.0, "measured": True, "source": str(PLACED),
                               "dsp": 100}


def test_no_engine_clock_without_a_placed_report(tmp_path):
    assert engine_clock(OVERFLOW) is None
    assert engine_clock(tmp_path / "layer_engine.json") is None
    assert missing_clock(tmp_path / "layer_engine.json", "make synth CONFIG=tiny") == (
        f"no time at Fmax: no synthesis report of the layer engine "
        f"({tmp_path / 'layer_engine.json'}); measure it with `make synth CONFIG=tiny`")
    assert missing_clock(OVERFLOW, "make synth CONFIG=tiny") == (
        f"no time at Fmax: {OVERFLOW}: the layer engine does not fit LFE5U-85F speed 6 "
        f"(MULT18X18D 164 > 156), so it was not placed and routed; measure it with "
        f"`make synth CONFIG=tiny`")
    unplaced = tmp_path / "unplaced.json"
    unplaced.write_text(json.dumps({"generator": "hw.synth", "placed": False, "overflows": [],
                                    "fmax_mhz": None, "dsp": 6}))
    assert missing_clock(unplaced, "make synth CONFIG=tiny") == (
        f"no time at Fmax: {unplaced}: synthesised but not placed and routed; measure it "
        f"with `make synth CONFIG=tiny`")


def test_a_given_clock_is_labelled_given_and_keeps_the_reports_multipliers(tmp_path):
    clock = engine_clock(OVERFLOW, given_mhz=100)
    assert clock == EngineClock(100.0, measured=False, source="--fmax-mhz", dsp=164)
    assert clock.describe() == "100 MHz, given (--fmax-mhz), not measured"
    assert "gops_per_dsp" in clock.at(1000, dense_macs=10**6)
    # a given clock wins over a measured one; without a report there is no GOP/s per block
    assert engine_clock(PLACED, given_mhz=75.5).fmax_mhz == 75.5
    alone = engine_clock(tmp_path / "none.json", given_mhz=75.5)
    assert alone.dsp is None and "gops_per_dsp" not in alone.at(1000, dense_macs=10**6)


@pytest.mark.parametrize("given", [0, -5.0, float("nan"), float("inf"), True, "100"])
def test_a_given_clock_must_be_a_positive_number(given):
    with pytest.raises(ValueError, match="^Fmax must be a positive number of MHz, not "):
        engine_clock(PLACED, given_mhz=given)
