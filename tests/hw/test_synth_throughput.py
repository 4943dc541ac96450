"""Cycles into microseconds, rates and GOP/s at a measured Fmax."""

import json

import pytest

from hw.synth.throughput import at_fmax, measured_fmax


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
