"""Golden integer encoder layer (DeiT / ViT pre-LN, BERT post-LN): exactly what the accelerator
computes for a layer.

Pre-LN dataflow (DeiT, ViT; every tensor int8 with one scale per tensor unless said otherwise)::

    x ─ LayerNorm ─ ln1 ─┬─ Q ─┐
                         ├─ K ─┴─ per kept head: QK^T (int32) ─ softmax (Q0.8) ─┐
                         └─ V ───────────────────────── P V (int32) ─ requant ─ context
    context ─ O ─ attn;  residual1 = x + attn  (rescaled add)
    [token gather: top-k on the CLS attention row, fused token (sw.golden.token_select),
     or the explicit rows of ``kept_tokens``]
    residual1 ─ LayerNorm ─ ln2 ─ FC1 ─ fc1 ─ GELU ─ gelu ─ FC2 ─ fc2;  out = residual1 + fc2

Post-LN dataflow (BERT, ``norm == "post"``): the layer input is the previous LayerNorm's int8
output and feeds Q, K, V directly; each residual sum (int16) goes through a LayerNorm::

    x ─ Q, K, V ─ attention ─ context ─ O ─ attn;  residual1 = x + attn
    [token gather, as above]
    residual1 ─ LayerNorm ─ ln1 ─ FC1 ─ GELU ─ FC2 ─ fc2;  residual2 = ln1 + fc2
    residual2 ─ LayerNorm ─ out (int8: the next layer's input)

Pruned layers go through the same code: the weights of removed heads and FFN neurons are simply
absent (Q, K, V have ``kept_heads * head_dim`` outputs, O as many inputs; FC1 ``kept_ffn``
outputs, FC2 as many inputs), and ``token_pruning`` (or explicit ``kept_tokens``) drops token
rows after attention. Every
operation is one of ``sw.golden.gemm.linear_int``, ``sw.golden.kernels`` or
``sw.numerics.requantize``; ``docs/numerics.md`` specifies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sw.config import NORMS
from sw.golden.gemm import linear_int
from sw.golden.kernels import (GeluConstants, LayerNormConstants, ResidualConstants,
                               SoftmaxConstants, gelu_constants, gelu_int, layernorm_constants,
                               layernorm_int, residual_add_int, residual_constants,
                               softmax_constants, softmax_int)
from sw.golden.token_select import TokenPruning, gather_tokens
from sw.numerics import exact_matmul, quantize_multiplier, requantize
from sw.quantize.linear import QuantizedLinear, quantize_linear

if TYPE_CHECKING:        # calibration needs torch; the layer itself does not
    from sw.quantize.calibration import LayerRanges

#: Fraction bits of the softmax probabilities (unsigned Q0.8) fed to the P V product.
PROBABILITY_BITS = 8

#: Width of the residual stream (layer input, residual1, layer output). GEMM operands stay int8;
#: the residual stream is wider because LayerNorm divides by each token's own spread, which
#: amplifies the quantization noise of low-variance tokens (measured in docs/numerics.md).
RESIDUAL_BITS = 16
RESIDUAL_POINTS = ("input", "residual1", "output")

#: The activation points of a post-LN layer held as int16 (the residual sums); its input and
#: output are LayerNorm outputs, int8 values like every other point.
POST_NORM_RESIDUAL_POINTS = ("residual1", "residual2")


def residual_points(norm: str) -> tuple:
    """The activation points of a ``norm`` layer that are ``RESIDUAL_BITS`` wide."""
    return RESIDUAL_POINTS if norm == "pre" else POST_NORM_RESIDUAL_POINTS


@dataclass(frozen=True, eq=False)
class IntegerEncoderLayer:
    """All integer parameters of one encoder layer (possibly pruned)."""

    head_dim: int
    kept_heads: tuple          #: original indices of the heads present
    kept_ffn: tuple            #: original indices of the FFN neurons present
    scales: dict               #: per-tensor real scale of every int8 activation point
    ln1: LayerNormConstants
    q: QuantizedLinear
    k: QuantizedLinear
    v: QuantizedLinear
    softmax: SoftmaxConstants
    context_multiplier: int
    context_shift: int
    o: QuantizedLinear
    residual1: ResidualConstants
    ln2: LayerNormConstants
    fc1: QuantizedLinear
    gelu: GeluConstants
    fc2: QuantizedLinear
    residual2: ResidualConstants
    norm: str = "pre"          #: ``"pre"`` or ``"post"`` (``sw.config.NORMS``)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {self.norm!r}")

    @property
    def num_heads(self) -> int:
        return len(self.kept_heads)


def _linear(layer: QuantizedLinear, x) -> np.ndarray:
    return linear_int(x, layer.weight, layer.bias, layer.multiplier, layer.shift)


def encoder_layer_int(layer: IntegerEncoderLayer, x, *, kept_tokens=None,
                      token_pruning: TokenPruning | None = None,
                      trace: dict | None = None) -> np.ndarray:
    """Run ``layer`` on its input ``x`` of shape ``(..., T, d)``; return ``(..., T', d)``.

    Pre-LN, input and output are the int16 residual stream; post-LN, both are LayerNorm
    outputs, int8 values.

    ``token_pruning``: the layer's token gather (top-k on its own CLS attention row, see
    ``sw.golden.token_select``), or None. ``kept_tokens``: explicit indices of the token rows
    kept after attention (``T' = len``), or None; not both.
    ``trace``: if given, filled with every intermediate tensor by name.
    """
    if kept_tokens is not None and token_pruning is not None:
        raise ValueError("Give kept_tokens or token_pruning, not both")
    x = np.asarray(x, dtype=np.int64)
    record = trace if trace is not None else {}
    post = layer.norm == "post"
    heads, head_dim = layer.num_heads, layer.head_dim
    attention_input = x if post else layernorm_int(x, layer.ln1)
    if not post:
        record["ln1"] = attention_input
    q, k, v = (_linear(layer.q, attention_input), _linear(layer.k, attention_input),
               _linear(layer.v, attention_input))
    record.update(q=q, k=k, v=v)

    def split_heads(t):                      # (..., T, h*dh) -> (..., h, T, dh)
        return np.swapaxes(t.reshape(*t.shape[:-1], heads, head_dim), -2, -3)

    scores = record["scores"] = exact_matmul(split_heads(q), np.swapaxes(split_heads(k), -1, -2))
    probs = record["probs"] = softmax_int(scores, layer.softmax)
    context_acc = exact_matmul(probs, split_heads(v))
    context = requantize(context_acc, layer.context_multiplier, layer.context_shift)
    context = np.swapaxes(context, -2, -3)
    context = record["context"] = context.reshape(*context.shape[:-2], heads * head_dim)
    attn = record["attn"] = _linear(layer.o, context)
    residual1 = record["residual1"] = residual_add_int(x, attn, layer.residual1)
    if kept_tokens is not None:
        residual1 = record["gathered"] = np.take(residual1, np.asarray(kept_tokens), axis=-2)
    if token_pruning is not None:
        residual1 = record["gathered"] = gather_tokens(residual1, probs, token_pruning,
                                                       out_width=RESIDUAL_BITS, trace=record)
    if post:                                 # the FFN's input is also its skip operand
        ffn_input = skip = record["ln1"] = layernorm_int(residual1, layer.ln1)
    else:
        ffn_input = record["ln2"] = layernorm_int(residual1, layer.ln2)
        skip = residual1
    fc1 = record["fc1"] = _linear(layer.fc1, ffn_input)
    gelu = record["gelu"] = gelu_int(fc1, layer.gelu)
    fc2 = record["fc2"] = _linear(layer.fc2, gelu)
    out = residual_add_int(skip, fc2, layer.residual2)
    if post:
        record["residual2"] = out
        out = layernorm_int(out, layer.ln2)
    record["output"] = out
    return out


def quantize_encoder_layer(hf_layer, ranges: LayerRanges, *, head_dim: int, kept_heads=None,
                           kept_ffn=None, structure=None) -> IntegerEncoderLayer:
    """Quantize an HF encoder layer (DeiT / ViT pre-LN, BERT post-LN) with calibrated
    activation ranges.

    The weights are found through the architecture's structure table
    (``sw.pruning.structures``: the six linear roles and the two LayerNorms; ``structure``, or
    the table the layer matches), which also says the norm placement: a ``"post"`` table gives
    a post-LN layer (``norm="post"``) quantized with the points of
    ``sw.quantize.calibration.POST_NORM_ACTIVATION_POINTS``.
    ``kept_heads`` / ``kept_ffn`` select original head and neuron indices to keep (default:
    all of them); the others are dropped from the weights, as head and neuron surgery does.
    """
    from sw.pruning.structures import layer_structure, weight_out_in

    structure = layer_structure(hf_layer) if structure is None else structure
    norm = structure.norm
    post = norm == "post"

    def linear(role):
        module = hf_layer.get_submodule(structure.roles[role])
        bias = module.bias
        return (weight_out_in(module).detach().double().numpy(),
                None if bias is None else bias.detach().double().numpy())

    weight, bias = {}, {}
    for role in ("q", "k", "v", "o", "fc1", "fc2"):
        weight[role], bias[role] = linear(role)
    heads_total = weight["q"].shape[0] // head_dim
    kept_heads = tuple(range(heads_total)) if kept_heads is None else tuple(kept_heads)
    kept_ffn = tuple(range(weight["fc1"].shape[0])) if kept_ffn is None else tuple(kept_ffn)
    rows = np.concatenate([np.arange(h * head_dim, (h + 1) * head_dim) for h in kept_heads])
    ffn = np.asarray(kept_ffn, dtype=np.int64)

    def rows_of(role, selected):
        return weight[role][selected], None if bias[role] is None else bias[role][selected]

    wide = residual_points(norm)
    s = {point: ranges.scale(point, RESIDUAL_BITS if point in wide else 8)
         for point in ranges.ranges}
    attention_input = s["input"] if post else s["ln1"]
    ffn_input = s["ln1"] if post else s["ln2"]
    q = quantize_linear(*rows_of("q", rows), input_scale=attention_input, output_scale=s["q"])
    k = quantize_linear(*rows_of("k", rows), input_scale=attention_input, output_scale=s["k"])
    v = quantize_linear(*rows_of("v", rows), input_scale=attention_input, output_scale=s["v"])
    o = quantize_linear(weight["o"][:, rows], bias["o"], input_scale=s["context"],
                        output_scale=s["attn"])
    fc1 = quantize_linear(*rows_of("fc1", ffn), input_scale=ffn_input, output_scale=s["fc1"])
    fc2 = quantize_linear(weight["fc2"][:, ffn], bias["fc2"], input_scale=s["gelu"],
                          output_scale=s["fc2"])
    scaling = head_dim ** -0.5
    context_multiplier, context_shift = quantize_multiplier(
        2.0 ** -PROBABILITY_BITS * s["v"] / s["context"])

    def layernorm(index, out_scale):
        module = hf_layer.get_submodule(structure.layernorms[index])
        return layernorm_constants(module.weight.detach().double().numpy(),
                                   module.bias.detach().double().numpy(), out_scale,
                                   in_width=RESIDUAL_BITS)

    return IntegerEncoderLayer(
        head_dim=head_dim, kept_heads=kept_heads, kept_ffn=kept_ffn, scales=s,
        ln1=layernorm(0, s["ln1"]), q=q, k=k, v=v,
        softmax=softmax_constants(s["q"] * s["k"] * scaling, out_bits=PROBABILITY_BITS),
        context_multiplier=context_multiplier, context_shift=context_shift, o=o,
        residual1=residual_constants(s["input"], s["attn"], s["residual1"],
                                     in_width=RESIDUAL_BITS, out_width=RESIDUAL_BITS),
        ln2=layernorm(1, s["output"] if post else s["ln2"]), fc1=fc1,
        gelu=gelu_constants(s["fc1"], s["gelu"], in_width=8), fc2=fc2,
        residual2=residual_constants(s["ln1"] if post else s["residual1"], s["fc2"],
                                     s["residual2"] if post else s["output"],
                                     in_width=RESIDUAL_BITS, out_width=RESIDUAL_BITS),
        norm=norm)
