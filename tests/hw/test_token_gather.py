# amaranth: UnusedElaboratable=no
"""Elaboration-level tests of TokenGather: widths follow the config and the golden contract,
bad parameters are refused with exact messages, the back-pressure LFSR model is what the
simulation top builds (the co-simulation in sim/test_token_gather.py checks behaviour)."""

import pytest

from hw.tokens import TokenGather, TokenGatherGeometry
from hw.tokens.token_gather_bench import LFSR_SEED, ReadyPattern, ready_sequence
from sw.config import load_config
from sw.golden.token_select import FUSION_MAX_WEIGHT_SUM, FUSION_RECIP_BITS


def test_geometry_of_the_tiny_config():
    g = TokenGatherGeometry.from_config(load_config("tiny"))
    assert (g.tokens, g.width, g.heads) == (17, 64, 4)
    assert g.score_width == 10 and g.weight_width == 10       # 4 * 255 + 1 = 1021
    assert g.index_width == 5 and g.element_width == 16
    assert g.recip_width == FUSION_RECIP_BITS + 1
    assert g.row_layout.size == 64 * 16
    assert (17 * 1021) < 2 ** g.sum_width <= FUSION_MAX_WEIGHT_SUM + 1


def test_every_preset_stays_within_the_golden_fusion_range():
    for name in ("tiny", "deit_t16", "deit_s16", "deit_b16"):
        g = TokenGatherGeometry.from_config(load_config(name))
        assert g.tokens * (g.heads * 255 + 1) <= FUSION_MAX_WEIGHT_SUM, name


def test_bad_parameters():
    with pytest.raises(ValueError, match="Tokens must be a positive integer, not 0"):
        TokenGatherGeometry(tokens=0, width=4, heads=1)
    with pytest.raises(TypeError, match="Config must be an AcceleratorConfig"):
        TokenGather("tiny")


def test_ready_patterns():
    assert ready_sequence(ReadyPattern.ALWAYS, 5) == [True] * 5
    half = ready_sequence(ReadyPattern.HALF, 4000)
    quarter = ready_sequence(ReadyPattern.QUARTER, 4000)
    assert half[0] == bool(LFSR_SEED & 1)
    assert 0.45 < sum(half) / 4000 < 0.55 and 0.2 < sum(quarter) / 4000 < 0.3
    assert all(h for h, q in zip(half, quarter) if q)          # quarter-ready implies half-ready
