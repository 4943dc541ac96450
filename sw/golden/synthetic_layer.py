"""Integer encoder layers with random weights and a chosen pruning pattern, without a model.

For replaying layer shapes no trained checkpoint is needed for (the deit_b16 replay, the
engine's tests): weights ``N(0, 1/fan_in)`` and biases are drawn, the pruning pattern is
applied (whole heads and FFN neurons absent, a block mask of the given density over what
remains), and the layer is quantized with activation scales chosen for unit-variance
activations, through the same ``quantize_linear`` and constant helpers as a calibrated model.
Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

from sw.golden.encoder_layer import (PROBABILITY_BITS, RESIDUAL_BITS, IntegerEncoderLayer,
                                    residual_points)
from sw.golden.kernels import (gelu_constants, layernorm_constants, residual_constants,
                               softmax_constants)
from sw.numerics import quantize_multiplier
from sw.quantize.linear import quantize_linear

#: Real value of one LSB at each activation point: int8 points span about +-4, the int16
#: residual stream about +-8.
INT8_SCALE = 4.0 / 127
RESIDUAL_SCALE = 8.0 / 32767


def block_mask(rng, rows: int, cols: int, block: tuple, density: float) -> np.ndarray:
    """An element mask of ``block`` blocks, ``round(density * blocks)`` of them kept at random."""
    grid = (rows // block[0], cols // block[1])
    total = grid[0] * grid[1]
    keep = np.zeros(total, bool)
    keep[rng.choice(total, size=max(1, round(density * total)), replace=False)] = True
    return np.kron(keep.reshape(grid), np.ones(block, bool))


def synthetic_layer(*, hidden: int, head_dim: int, heads: int, ffn: int, kept_heads,
                    kept_ffn: int, block: tuple, density: float, seed: int = 0,
                    norm: str = "pre") -> IntegerEncoderLayer:
    """A quantized ``norm`` layer of ``heads`` heads keeping ``kept_heads`` (indices) and the
    first ``kept_ffn`` FFN neurons, every linear at ``density`` of its ``block`` blocks.

    Post-LN (BERT), the layer input and output are LayerNorm outputs at the int8 scale, and
    the residual sums (``residual1``, ``residual2``) are the int16 residual values."""
    rng = np.random.default_rng(seed)
    kept_heads = tuple(int(h) for h in kept_heads)
    attn = len(kept_heads) * head_dim

    def linear(out_features, in_features, input_scale, output_scale):
        weight = rng.normal(0, in_features ** -0.5, (out_features, in_features))
        weight *= block_mask(rng, out_features, in_features, block, density)
        weight *= max(1.0, 1 / np.sqrt(max(density, 1e-3)))     # keep the output variance
        bias = rng.normal(0, 0.1, out_features)
        bias[~weight.any(axis=1)] = 0.0       # a row with no weight has no scale for a bias
        return quantize_linear(weight, bias, input_scale=input_scale, output_scale=output_scale)

    def layernorm():
        return layernorm_constants(rng.normal(1, 0.1, hidden), rng.normal(0, 0.1, hidden),
                                   INT8_SCALE, in_width=RESIDUAL_BITS)

    points = ("input", "ln1", "q", "k", "v", "context", "attn", "residual1", "ln2", "fc1",
              "gelu", "fc2", "output") if norm == "pre" else (
        "input", "q", "k", "v", "context", "attn", "residual1", "ln1", "fc1", "gelu", "fc2",
        "residual2", "output")
    s = {p: RESIDUAL_SCALE if p in residual_points(norm) else INT8_SCALE for p in points}
    post = norm == "post"
    attention_input = s["input"] if post else s["ln1"]
    ffn_input = s["ln1"] if post else s["ln2"]
    context_multiplier, context_shift = quantize_multiplier(
        2.0 ** -PROBABILITY_BITS * s["v"] / s["context"])
    return IntegerEncoderLayer(
        head_dim=head_dim, kept_heads=kept_heads, kept_ffn=tuple(range(kept_ffn)), scales=s,
        ln1=layernorm(), q=linear(attn, hidden, attention_input, s["q"]),
        k=linear(attn, hidden, attention_input, s["k"]),
        v=linear(attn, hidden, attention_input, s["v"]),
        softmax=softmax_constants(s["q"] * s["k"] * head_dim ** -0.5, out_bits=PROBABILITY_BITS),
        context_multiplier=context_multiplier, context_shift=context_shift,
        o=linear(hidden, attn, s["context"], s["attn"]),
        residual1=residual_constants(s["input"], s["attn"], s["residual1"],
                                     in_width=RESIDUAL_BITS, out_width=RESIDUAL_BITS),
        ln2=layernorm(), fc1=linear(kept_ffn, hidden, ffn_input, s["fc1"]),
        gelu=gelu_constants(s["fc1"], s["gelu"], in_width=8),
        fc2=linear(hidden, kept_ffn, s["gelu"], s["fc2"]),
        residual2=residual_constants(ffn_input if post else s["residual1"], s["fc2"],
                                     s["residual2" if post else "output"],
                                     in_width=RESIDUAL_BITS, out_width=RESIDUAL_BITS),
        norm=norm)


def synthetic_input(*, tokens: int, hidden: int, seed: int = 0, norm: str = "pre") -> np.ndarray:
    """A layer input of unit-variance values: int16 residual values (pre-LN) or, post-LN, int8
    values as a LayerNorm writes them."""
    rng = np.random.default_rng(seed + 1)
    scale, bits = (RESIDUAL_SCALE, RESIDUAL_BITS) if norm == "pre" else (INT8_SCALE, 8)
    x = np.round(rng.normal(0, 1, (tokens, hidden)) / scale)
    return np.clip(x, -(1 << (bits - 1)), (1 << (bits - 1)) - 1).astype(np.int64)


def synthetic_stages(*, tokens: int, hidden: int, channels: int, patch_size: int, classes: int,
                     protected: int, block_rows: int, seed: int = 0):
    """A random patch embedding and head (``sw.golden.model_stages``) for a model of this
    shape: ``(IntegerEmbedding, IntegerHead)``. The patch linear maps ``channels *
    patch_size ** 2`` int8 features to ``hidden``; the position table is an int16 table of
    unit-variance values at the residual scale; the head's final LayerNorm and classifier
    (``classes`` rows, padded with zero rows to ``block_rows``) read the residual stream.
    Deterministic for a seed."""
    from sw.golden.model_stages import IntegerEmbedding, IntegerHead
    from sw.quantize.linear import quantize_tensor
    rng = np.random.default_rng(seed)
    features = channels * patch_size ** 2
    embedding = IntegerEmbedding(
        patch_size=patch_size, channels=channels, protected=protected, patch_scale=INT8_SCALE,
        linear=quantize_linear(rng.normal(0, features ** -0.5, (hidden, features)),
                               rng.normal(0, 0.1, hidden), input_scale=INT8_SCALE,
                               output_scale=INT8_SCALE),
        position=quantize_tensor(rng.normal(0, 1, (tokens, hidden)), RESIDUAL_SCALE,
                                 RESIDUAL_BITS),
        residual=residual_constants(RESIDUAL_SCALE, INT8_SCALE, RESIDUAL_SCALE,
                                    in_width=RESIDUAL_BITS, out_width=RESIDUAL_BITS))
    padded = -(-classes // block_rows) * block_rows
    weight, bias = np.zeros((padded, hidden)), np.zeros(padded)
    weight[:classes] = rng.normal(0, hidden ** -0.5, (classes, hidden))
    bias[:classes] = rng.normal(0, 0.1, classes)
    head = IntegerHead(
        final_layernorm=layernorm_constants(rng.normal(1, 0.1, hidden),
                                            rng.normal(0, 0.1, hidden), INT8_SCALE,
                                            in_width=RESIDUAL_BITS),
        classifier=quantize_linear(weight, bias, input_scale=INT8_SCALE,
                                   output_scale=INT8_SCALE),
        classes=classes, logit_scale=INT8_SCALE)
    return embedding, head


def synthetic_patches(*, tokens: int, features: int, protected: int, seed: int = 0
                      ) -> np.ndarray:
    """int8 patch rows ``(tokens, features)`` as the host loads them: unit-variance values at
    the int8 scale, the first ``protected`` rows (class and distillation tokens) zero."""
    rng = np.random.default_rng(seed + 2)
    rows = np.clip(np.round(rng.normal(0, 1, (tokens, features)) / INT8_SCALE), -128, 127)
    rows[:protected] = 0
    return rows.astype(np.int64)
