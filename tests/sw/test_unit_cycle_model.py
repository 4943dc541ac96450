"""Tests of the special-function units' cycle model (``sw.cycle_model.units``); the RTL's
counters are checked against it in ``sim/test_row_units.py`` and ``sim/test_gelu.py``."""

import pytest

from sw.config import load_config
from sw.cycle_model.units import (GELU_LATENCY, GeluTiming, LayerNormTiming, SoftmaxTiming,
                                  gelu_cycles, layernorm_cycles, softmax_cycles, unit_timings)


def test_gelu_streams_one_beat_per_cycle():
    cycles = gelu_cycles(GeluTiming(4), 197 * 3072)
    assert cycles.beats == 197 * 3072 // 4
    assert cycles.total == cycles.beats + GELU_LATENCY
    assert gelu_cycles(GeluTiming(3), 256).beats == 86          # a partial last beat


def test_a_lone_row_goes_through_three_passes():
    timing = SoftmaxTiming(1, 17)
    one = softmax_cycles(timing, rows=1, length=17)
    # fill 17, sum 17 (+1 decision), reciprocal, emit 17 (+1 decision), emit latency
    assert one.total == 17 + 1 + 17 + timing.sum_latency + 1 + 17 + timing.emit_latency
    assert one.latency == one.total - 17


def test_rows_of_deit_b16_overlap_to_one_beat_per_cycle():
    softmax, _, layernorm = unit_timings(load_config("deit_b16"))
    assert (softmax.max_len, layernorm.max_len, layernorm.in_width) == (197, 768, 16)
    many = softmax_cycles(softmax, rows=197, length=197)
    assert many.beats == 197 * -(-197 // softmax.lanes)
    assert many.beats <= many.total <= many.beats + 2 * many.latency
    assert many.elements_per_cycle_per_lane >= 0.95
    rows = layernorm_cycles(layernorm, rows=197, length=768)
    assert rows.elements_per_cycle_per_lane >= 0.95


def test_slots_cover_a_full_length_row_stay():
    for lanes, length in ((1, 17), (4, 197), (3, 5)):
        timing = SoftmaxTiming(lanes, length)
        beats = timing.max_beats
        steady = softmax_cycles(timing, rows=40, length=length)
        # after the first row, each further row costs exactly its beats
        first = softmax_cycles(timing, rows=1, length=length)
        assert steady.total - first.total == 39 * beats
    timing = LayerNormTiming(4, 768, 16, 12)
    assert timing.slots == 3
    assert (layernorm_cycles(timing, rows=10, length=768).total
            - layernorm_cycles(timing, rows=9, length=768).total) == 192


def test_short_rows_are_limited_by_the_slots():
    timing = SoftmaxTiming(1, 17)
    short = softmax_cycles(timing, rows=50, length=1)
    assert short.total > 50 * 1 * 2         # a one-score row cannot hide the reciprocal


def test_rejects_rows_longer_than_the_unit():
    with pytest.raises(ValueError, match=r"Row length \(18\) exceeds the unit's longest row"):
        softmax_cycles(SoftmaxTiming(1, 17), rows=1, length=18)
    with pytest.raises(ValueError, match="Lanes must be a positive integer, not 0"):
        GeluTiming(0)
