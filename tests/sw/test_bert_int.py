"""Tests of post-LN (BERT) calibration and quantization through the structure tables' roles, and
of the integer BERT runner (``sw.golden.bert_int``), on tiny models built in code."""

import numpy as np
import pytest
import torch

from sw.golden.bert_int import predict, quantize_bert, sequence_lengths
from sw.golden.encoder_layer import (PROBABILITY_BITS, RESIDUAL_BITS, RESIDUAL_POINTS,
                                     encoder_layer_int, quantize_encoder_layer)
from sw.golden.kernels import (gelu_constants, layernorm_constants, residual_constants,
                               softmax_constants)
from sw.models import build_small_bert, build_small_deit, small_bert_config, small_deit_config
from sw.numerics import quantize_multiplier
from sw.quantize.calibration import (POST_NORM_ACTIVATION_POINTS, _hook_points, calibrate,
                                     encoder_layers)
from sw.quantize.linear import quantize_linear, quantize_tensor

HEAD_DIM = 16
TOKENS = 24


def _ids(count, seed, tokens=TOKENS):
    """``[CLS] p ... p [SEP]`` sequences of random intensity tokens (ids 4..20)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 21, (count, tokens), generator=generator)
    ids[:, 0], ids[:, -1] = 2, 3
    return ids


@pytest.fixture(scope="module")
def bert():
    """A tiny BERT whose weights are drawn wider than BERT's 0.02 initialisation, so that
    attention and FFN move the residual stream as in a trained model."""
    torch.manual_seed(0)
    config = small_bert_config(num_layers=2)
    config.initializer_range = 0.1
    return build_small_bert(config).eval()


@pytest.fixture(scope="module")
def ranges(bert):
    return calibrate(bert, _ids(48, seed=1), progress=False)


@pytest.fixture(scope="module")
def float_points(bert):
    """Every activation point of every float BertLayer, on 8 held-out sequences."""
    points = [{} for _ in encoder_layers(bert)]
    handles = []
    for index, layer in enumerate(encoder_layers(bert)):
        handles += _hook_points(layer, lambda p, t, i=index: points[i].__setitem__(
            p, t.detach().double().numpy()))
    with torch.no_grad():
        bert(input_ids=_ids(8, seed=2))
    for handle in handles:
        handle.remove()
    return points


def test_calibration_records_every_post_ln_point(ranges):
    assert len(ranges) == 2
    for layer in ranges:
        assert tuple(layer.ranges) == POST_NORM_ACTIVATION_POINTS
        assert all(value > 0 for value in layer.ranges.values())


def test_calibration_leaves_padded_rows_out(bert):
    """Right-padded sequences with a mask calibrate like the same sequences unpadded."""
    ids = _ids(6, seed=3)
    padded = ids.clone()
    padded[:, 16:] = 0                                   # [PAD]: the mask hides 8 rows
    with_mask = calibrate(bert, {"input_ids": padded, "attention_mask": (padded != 0).long()},
                          progress=False)
    alone = calibrate(bert, ids[:, :16], progress=False)
    for masked, short in zip(with_mask, alone):
        for point in POST_NORM_ACTIVATION_POINTS:
            assert masked.ranges[point] == pytest.approx(short.ranges[point], rel=1e-5), point
    # the ids alone: sw.models.model_inputs derives the same mask from pad_token_id
    derived = calibrate(bert, padded, progress=False)
    assert [r.ranges for r in derived] == [r.ranges for r in with_mask]


@pytest.mark.parametrize("index", [0, 1])
def test_integer_post_ln_layer_tracks_the_float_bert_layer(bert, ranges, float_points, index):
    layer = quantize_encoder_layer(encoder_layers(bert)[index], ranges[index], head_dim=HEAD_DIM)
    assert layer.norm == "post"
    floats = float_points[index]
    x = quantize_tensor(floats["input"], layer.scales["input"], 8)
    trace = {}
    out = encoder_layer_int(layer, x, trace=trace)
    assert np.abs(out).max() <= 127 and np.abs(trace["residual2"]).max() > 127
    found = out * layer.scales["output"]
    relative = np.linalg.norm(found - floats["output"]) / np.linalg.norm(floats["output"])
    # measured 0.0224 (layer 0) and 0.0193 (layer 1); rounding the float output alone to int8
    # is 0.0098 and 0.0083 off (post-LN the layer's output is int8, DeiT's int16, hence more
    # than DeiT's 0.0103); every traced point is within 0.03. The bound leaves margin
    assert relative < 0.04, relative
    for point in ("q", "context", "attn", "residual1", "ln1", "fc1", "gelu", "residual2"):
        error = np.linalg.norm(trace[point] * layer.scales[point] - floats[point])
        assert error / np.linalg.norm(floats[point]) < 0.1, point


def _quantize_by_deit_names(hf_layer, ranges, *, head_dim):
    """``quantize_encoder_layer`` as it was before the structure tables (DeiT attribute names),
    kept as the reference the roles must reproduce exactly."""
    from sw.golden.encoder_layer import IntegerEncoderLayer
    attention, mlp = hf_layer.attention, hf_layer.mlp
    weight = {n: getattr(attention, f"{n}_proj").weight.detach().double().numpy() for n in "qkvo"}
    bias = {n: getattr(attention, f"{n}_proj").bias.detach().double().numpy() for n in "qkvo"}
    kept_heads = tuple(range(weight["q"].shape[0] // head_dim))
    fc1_w, fc1_b = mlp.fc1.weight.detach().double().numpy(), mlp.fc1.bias.detach().double().numpy()
    fc2_w, fc2_b = mlp.fc2.weight.detach().double().numpy(), mlp.fc2.bias.detach().double().numpy()
    kept_ffn = tuple(range(fc1_w.shape[0]))
    s = {point: ranges.scale(point, RESIDUAL_BITS if point in RESIDUAL_POINTS else 8)
         for point in ranges.ranges}

    def linear(w, b, i, o):
        return quantize_linear(w, b, input_scale=s[i], output_scale=s[o])

    def layernorm(module, out_scale):
        return layernorm_constants(module.weight.detach().double().numpy(),
                                   module.bias.detach().double().numpy(), out_scale,
                                   in_width=RESIDUAL_BITS)

    multiplier, shift = quantize_multiplier(2.0 ** -PROBABILITY_BITS * s["v"] / s["context"])
    return IntegerEncoderLayer(
        head_dim=head_dim, kept_heads=kept_heads, kept_ffn=kept_ffn, scales=s,
        ln1=layernorm(hf_layer.layernorm_before, s["ln1"]),
        q=linear(weight["q"], bias["q"], "ln1", "q"), k=linear(weight["k"], bias["k"], "ln1", "k"),
        v=linear(weight["v"], bias["v"], "ln1", "v"),
        softmax=softmax_constants(s["q"] * s["k"] * head_dim ** -0.5, out_bits=PROBABILITY_BITS),
        context_multiplier=multiplier, context_shift=shift,
        o=linear(weight["o"], bias["o"], "context", "attn"),
        residual1=residual_constants(s["input"], s["attn"], s["residual1"],
                                     in_width=RESIDUAL_BITS, out_width=RESIDUAL_BITS),
        ln2=layernorm(hf_layer.layernorm_after, s["ln2"]), fc1=linear(fc1_w, fc1_b, "ln2", "fc1"),
        gelu=gelu_constants(s["fc1"], s["gelu"], in_width=8),
        fc2=linear(fc2_w, fc2_b, "gelu", "fc2"),
        residual2=residual_constants(s["residual1"], s["fc2"], s["output"],
                                     in_width=RESIDUAL_BITS, out_width=RESIDUAL_BITS))


def _same(a, b) -> bool:
    """Field by field equality of two integer layers (arrays, dataclasses, scalars)."""
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and all(_same(getattr(a, f), getattr(b, f))
                                          for f in a.__dataclass_fields__)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def test_roles_quantize_a_deit_layer_exactly_as_the_deit_names_did():
    torch.manual_seed(0)
    model = build_small_deit(small_deit_config(num_layers=2)).eval()
    ranges = calibrate(model, torch.randn(8, 3, 32, 32), progress=False)
    for index, hf_layer in enumerate(encoder_layers(model)):
        layer = quantize_encoder_layer(hf_layer, ranges[index], head_dim=HEAD_DIM)
        assert layer.norm == "pre"
        assert _same(layer, _quantize_by_deit_names(hf_layer, ranges[index], head_dim=HEAD_DIM))


def test_integer_bert_classifies_like_the_float_bert(bert):
    integer = quantize_bert(bert, _ids(48, seed=1), progress=False)
    ids = _ids(16, seed=4)
    logits = predict(integer, ids, batch_size=8, progress=False)
    with torch.no_grad():
        reference = bert(input_ids=ids).logits.double().numpy()
    cosine = (logits * reference).sum(1) / (np.linalg.norm(logits, axis=1)
                                            * np.linalg.norm(reference, axis=1))
    assert logits.shape == (16, 10)
    # measured: cosine 0.9995 at the worst; 15 of 16 argmax equal (random weights: the
    # classes' logits are close; the trained digits BERT: bench/bert_model.py)
    assert cosine.min() > 0.95, cosine.min()
    assert (logits.argmax(1) == reference.argmax(1)).sum() >= 14
    assert np.array_equal(logits, predict(integer, ids, batch_size=16, progress=False))


def test_padded_sequences_run_at_their_true_length(bert):
    integer = quantize_bert(bert, _ids(16, seed=1), progress=False)
    ids = _ids(3, seed=5)
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    mask[2, 9:] = 0
    padded = ids * mask                                  # [PAD] is id 0
    batched = predict(integer, {"input_ids": padded, "attention_mask": mask}, progress=False)
    for row, length in enumerate(sequence_lengths(mask)):
        alone = integer.logits(ids[row:row + 1, :length])
        assert np.array_equal(batched[row], alone[0])
    with pytest.raises(ValueError, match="right padding"):
        sequence_lengths(torch.tensor([[1, 0, 1]]))


def test_quantize_bert_refuses_a_pre_ln_model():
    model = build_small_deit(small_deit_config(num_layers=1)).eval()
    with pytest.raises(ValueError, match="post-LN"):
        quantize_bert(model, torch.randn(2, 3, 32, 32), progress=False)
