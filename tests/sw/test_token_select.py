"""Tests of the golden integer token selection and fusion (``sw.golden.token_select``)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sw.golden.encoder_layer import RESIDUAL_BITS, encoder_layer_int, quantize_encoder_layer
from sw.golden.token_select import (FUSION_MAX_WEIGHT_SUM, FUSION_RECIP_BITS, TokenPruning,
                                    cls_attention_scores, fuse_tokens, fusion_weights,
                                    gather_tokens, keep_count, keep_mask, select_tokens)
from sw.models import build_small_deit, small_deit_config
from sw.quantize.calibration import calibrate, encoder_layers
from sw.quantize.linear import quantize_tensor


def test_keep_count_is_the_ceiling_and_rounds_the_product_first():
    assert [keep_count(64, r) for r in (0.9, 0.7, 0.5, 1.0)] == [58, 45, 32, 64]
    assert keep_count(25, 0.28) == 7                 # 0.28 * 25 = 7.000000000000001
    assert keep_count(3, 0.01) == 1
    for bad, message in (((0, 0.5), "Candidate tokens must be a positive integer, not 0"),
                         ((4, 0.0), "Token keep rate must lie in (0, 1], not 0.0"),
                         ((4, 1.5), "Token keep rate must lie in (0, 1], not 1.5")):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                           .replace("[", r"\[")):
            keep_count(*bad)


def test_pruning_checks_its_fields_and_the_token_count():
    with pytest.raises(ValueError, match="Token pruning keep must be an integer >= 1, not 0"):
        TokenPruning(keep=0)
    with pytest.raises(ValueError, match="keeps 2 protected \\+ 5 tokens, more than the 6"):
        TokenPruning(keep=5, protected=2).check(6)
    assert TokenPruning(keep=3, protected=2).output_tokens(8) == 6
    assert TokenPruning(keep=3, protected=2, fuse=False).output_tokens(8) == 5
    assert TokenPruning(keep=6, protected=2).output_tokens(8) == 8     # nothing to fuse


def test_selection_keeps_protected_tokens_and_breaks_ties_towards_lower_indices():
    scores = np.array([0, 0, 7, 3, 7, 3, 3, 9])
    pruning = TokenPruning(keep=4, protected=2)
    # 9 (index 7), both 7s (2, 4), then the first of the three 3s (index 3)
    assert select_tokens(scores, pruning).tolist() == [0, 1, 2, 3, 4, 7]
    assert keep_mask(scores, pruning).tolist() == [True] * 5 + [False, False, True]
    assert select_tokens(np.zeros(6, dtype=int), TokenPruning(keep=2)).tolist() == [0, 1, 2]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=2, max_size=30), st.data())
def test_selection_equals_rank_counting(scores, data):
    """Candidate ``i`` is kept iff fewer than ``keep`` candidates outrank it, where ``j``
    outranks ``i`` when its score is higher, or equal with a lower index."""
    protected = data.draw(st.integers(1, len(scores) - 1))
    keep = data.draw(st.integers(1, len(scores) - protected))
    mask = keep_mask(np.array(scores), TokenPruning(keep=keep, protected=protected))
    expected = [True] * protected + [
        sum(scores[j] > scores[i] or (scores[j] == scores[i] and j < i)
            for j in range(protected, len(scores))) < keep
        for i in range(protected, len(scores))]
    assert mask.tolist() == expected


def test_cls_scores_sum_the_cls_row_over_heads():
    probs = np.zeros((2, 3, 3), dtype=np.int64)
    probs[0, 0] = [10, 20, 30]
    probs[1, 0] = [1, 2, 255]
    probs[1, 1] = [99, 99, 99]                       # other query rows do not count
    assert cls_attention_scores(probs).tolist() == [11, 22, 285]


def test_fused_token_worked_example():
    """Rows 2 and 3 dropped with scores 1 and 3: weights 2 and 4, ``(2 x2 + 4 x3) / 6``."""
    x = np.array([[5, 5], [6, 6], [-7, 100], [8, -3]])
    scores = np.array([0, 9, 1, 3])
    mask = np.array([True, True, False, False])
    assert fusion_weights(scores, mask).tolist() == [0, 0, 2, 4]
    # (2 * -7 + 4 * 8) / 6 = 3.0; (2 * 100 + 4 * -3) / 6 = 31.33
    assert fuse_tokens(x, scores, mask).tolist() == [3, 31]
    # a half rounds up, like requantize: (1 * -3 + 1 * 0) / 2 = -1.5 -> -1
    assert fuse_tokens(np.array([[0], [-3], [0]]), np.array([0, 0, 0]),
                       np.array([True, False, False])).tolist() == [-1]


def test_all_zero_scores_fuse_to_the_plain_mean():
    x = np.array([[1, 1], [10, -20], [20, -40], [31, 5]])
    mask = np.array([True, False, False, False])
    assert fuse_tokens(x, np.zeros(4, dtype=int), mask).tolist() == [20, -18]   # 61/3, -55/3


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 60), st.integers(0, 2**31 - 1))
def test_fused_token_is_the_weighted_mean_within_a_half_lsb(tokens, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2**15, 2**15, (tokens, 8))
    scores = rng.integers(0, 4 * 255 + 1, tokens)
    mask = rng.random(tokens) < 0.5
    mask[0] = True
    mask[-1] = False
    weights = fusion_weights(scores, mask)
    exact = (weights[:, None] * x).sum(0) / weights.sum()
    assert np.abs(fuse_tokens(x, scores, mask) - exact).max() <= 0.5 + 2.0**-8


def test_fusion_refuses_weight_sums_out_of_range():
    with pytest.raises(ValueError, match="Fusion weight sums must lie in"):
        fuse_tokens(np.ones((2, 1)), np.zeros(2, dtype=int), np.array([True, True]))
    big = np.full(3, FUSION_MAX_WEIGHT_SUM // 2)
    with pytest.raises(ValueError, match="Fusion weight sums must lie in"):
        fuse_tokens(np.ones((3, 1)), big, np.array([True, False, False]))
    assert FUSION_RECIP_BITS + 15 < 62


@pytest.fixture(scope="module")
def layer_and_input():
    import torch
    torch.manual_seed(0)
    model = build_small_deit(small_deit_config(num_layers=1)).eval()
    images = torch.randn(8, 3, 32, 32)
    ranges = calibrate(model, images, progress=False)
    layer = quantize_encoder_layer(encoder_layers(model)[0], ranges[0], head_dim=16)
    with torch.no_grad():
        embedded = model.deit.embeddings(images).double().numpy()
    return layer, quantize_tensor(embedded, layer.scales["input"], RESIDUAL_BITS)


@pytest.mark.parametrize("fuse", [True, False])
def test_layer_gather_is_the_selection_of_its_own_attention(layer_and_input, fuse):
    """The pruned layer keeps the rows its own CLS attention selects; without fusion it equals
    the layer given those indices explicitly; with fusion it has one more row, which equals the
    FFN applied to the fused residual row."""
    layer, x = layer_and_input
    pruning = TokenPruning(keep=keep_count(64, 0.7), protected=2, fuse=fuse)
    trace = {}
    out = encoder_layer_int(layer, x, token_pruning=pruning, trace=trace)
    kept = trace["kept_tokens"]
    assert kept.shape == (8, 47) and out.shape == (8, 47 + fuse, 64)
    assert np.array_equal(kept, select_tokens(cls_attention_scores(trace["probs"]), pruning))
    for image in range(8):
        explicit = encoder_layer_int(layer, x[image], kept_tokens=kept[image])
        assert np.array_equal(out[image, :47], explicit)
    if fuse:
        assert np.array_equal(trace["gathered"][:, -1], trace["fused_token"])
        assert np.array_equal(trace["gathered"][:, :-1],
                              np.take_along_axis(trace["residual1"], kept[..., None], axis=1))


def test_layer_refuses_both_gathers(layer_and_input):
    layer, x = layer_and_input
    with pytest.raises(ValueError, match="Give kept_tokens or token_pruning, not both"):
        encoder_layer_int(layer, x, kept_tokens=[0], token_pruning=TokenPruning(keep=1))


def test_gather_checks_shapes():
    with pytest.raises(ValueError, match="does not match rows of shape"):
        gather_tokens(np.zeros((5, 2), dtype=int), np.zeros((1, 4, 4), dtype=int),
                      TokenPruning(keep=1))
