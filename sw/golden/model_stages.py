"""The model around the encoder in integers, as programs of the layer engine: the patch
embedding before the first layer and the final LayerNorm and classifier after the last.

Both are programs on the same engine as the layers (``sw.image.program.embedding_program`` and
``head_program``), with no instruction or unit of their own; each puts its weight in a GEMM
tensor slot that holds it on the engine at hand (:func:`stage_role`):

- **Embedding.** The host cuts the image into patch rows (:func:`patch_rows`: the stride-``p``
  ``p x p`` convolution is exactly a linear map of each flattened patch) and quantizes them to
  int8 with the calibrated ``patch_scale`` (:func:`quantize_patches`), leaving the first
  ``protected`` rows (class and distillation tokens) zero. One GEMM maps the rows to the hidden
  width (int8 outputs at ``embedding_scale``), and its residual epilogue adds the *position
  table*, an int16 constant at the residual stream's scale: the position embeddings, with the
  class and distillation tokens folded into their rows (a zero patch row gives the bias's
  output, which the table's row subtracts again). The sum is the int16 residual stream, the
  first layer's input, written to OUTPUT, which is INPUT's region (``sw.engine_params``).
- **Head.** With the row count set to 1 (only the class token), the final LayerNorm (int8 at
  ``final_scale``) and the classifier GEMM (int8 logits at ``logit_scale``; classes padded to
  whole blocks with zero rows).

:func:`embedding_int` and :func:`head_int` say what each computes with the golden kernels;
``sw.golden.layer_program.run_layer_program`` runs the programs themselves on
:func:`engine_layer`'s stand-in layers and must agree (tested). :func:`quantize_stages`
calibrates both on images, from an HF DeiT or ViT and its integer encoder
(``sw.golden.deit_int.IntegerDeiT``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from sw.golden.encoder_layer import RESIDUAL_BITS, IntegerEncoderLayer
from sw.golden.gemm import linear_int
from sw.golden.kernels import (LayerNormConstants, ResidualConstants, layernorm_int,
                               residual_add_int, residual_constants)
from sw.image.program import EMBEDDING_SLOTS, HEAD_SLOTS
from sw.isa import TENSOR_ROLES
from sw.quantize.linear import QuantizedLinear, quantize_linear, quantize_tensor

__all__ = ["STAGE_UNITS", "stage_role", "stand_in_layer", "IntegerEmbedding", "IntegerHead", "patch_rows",
           "quantize_patches", "embedding_int", "head_int", "model_int", "engine_layer",
           "quantize_stages"]

#: What the cycle model's unit names mean in each stage's program (the GEMM's tensor slot and
#: the LayerNorm's constant set name a layer's units there).
STAGE_UNITS = {"embedding": {role: "patch_embedding" for role in EMBEDDING_SLOTS},
               "head": {"layernorm1": "final_layernorm",
                        **{role: "classifier" for role in HEAD_SLOTS}},
               "embedding_layernorm": {"layernorm1": "embedding_layernorm"},
               "pooler": {"q": "pooler"}}


@dataclass(frozen=True, eq=False)
class IntegerEmbedding:
    """The patch embedding, class / distillation tokens and position embeddings in integers."""

    patch_size: int
    channels: int
    protected: int                 #: leading token rows without a patch (class, distillation)
    patch_scale: float             #: int8 scale of the normalised pixels
    linear: QuantizedLinear        #: (hidden, channels * patch_size ** 2), int8 outputs
    position: np.ndarray           #: int16 (tokens, hidden) position table, tokens folded in
    residual: ResidualConstants    #: position (int16) + linear output (int8) -> int16

    @property
    def patch_features(self) -> int:
        return self.channels * self.patch_size ** 2


@dataclass(frozen=True, eq=False)
class IntegerHead:
    """The final LayerNorm and the classifier on the class token, in integers."""

    final_layernorm: LayerNormConstants
    classifier: QuantizedLinear     #: (classes padded to blocks, hidden), int8 logits
    classes: int
    logit_scale: float

    def logits(self, int8_logits) -> np.ndarray:
        """Float logits of the head's int8 output (its padding rows dropped)."""
        return np.asarray(int8_logits)[..., :self.classes] * self.logit_scale


def patch_rows(pixel_values, patch_size: int) -> np.ndarray:
    """``(N, C, H, W)`` pixels -> ``(N, patches, C * p * p)``: each stride-``p`` patch
    flattened in the convolution weight's order (channel, row, column), patches row-major."""
    x = np.asarray(pixel_values, dtype=np.float64)
    n, c, h, w = x.shape
    p = patch_size
    x = x.reshape(n, c, h // p, p, w // p, p).transpose(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // p) * (w // p), c * p * p)


def quantize_patches(pixel_values, embedding: IntegerEmbedding) -> np.ndarray:
    """The int8 rows the host loads: ``(N, tokens, patch features)``, the first ``protected``
    rows zero, then every patch quantized with ``patch_scale``."""
    rows = quantize_tensor(patch_rows(pixel_values, embedding.patch_size),
                           embedding.patch_scale)
    zeros = np.zeros((rows.shape[0], embedding.protected, rows.shape[2]), dtype=np.int64)
    return np.concatenate([zeros, rows], axis=1)


def embedding_int(patches, embedding: IntegerEmbedding) -> np.ndarray:
    """The encoder's int16 input ``(..., tokens, hidden)`` of :func:`quantize_patches`' rows."""
    e = embedding.linear
    y = linear_int(patches, e.weight, e.bias, e.multiplier, e.shift)
    return residual_add_int(embedding.position, y, embedding.residual)


def head_int(encoder_output, head: IntegerHead) -> np.ndarray:
    """int8 logits ``(..., 1, classes padded)`` of the last layer's int16 output: the final
    LayerNorm and the classifier on the class token (row 0) only."""
    x = np.asarray(encoder_output, dtype=np.int64)[..., :1, :]
    c = head.classifier
    return linear_int(layernorm_int(x, head.final_layernorm), c.weight, c.bias, c.multiplier,
                      c.shift)


def model_int(integer_model, embedding: IntegerEmbedding, head: IntegerHead, pixel_values, *,
              token_pruning=None) -> np.ndarray:
    """int8 logits ``(N, classes padded)`` of the whole integer model: :func:`embedding_int`
    of the quantized patch rows, every encoder layer of ``integer_model`` (an ``IntegerDeiT``;
    ``token_pruning[i]``: layer ``i``'s gather or None) and :func:`head_int`."""
    from sw.golden.encoder_layer import encoder_layer_int
    x = embedding_int(quantize_patches(pixel_values, embedding), embedding)
    for index, layer in enumerate(integer_model.layers):
        gather = None if token_pruning is None else token_pruning[index]
        x = encoder_layer_int(layer, x, token_pruning=gather)
    return head_int(x, head)[..., 0, :]


def _empty_linear(block: tuple) -> QuantizedLinear:
    """A one-block weight of zeros: a GEMM slot the stage's program never names."""
    rows = block[0]
    return QuantizedLinear(weight=np.zeros(block, dtype=np.int64),
                           weight_scale=np.ones(rows), bias=np.zeros(rows, dtype=np.int64),
                           multiplier=np.ones(rows, dtype=np.int64),
                           shift=np.zeros(rows, dtype=np.int64), input_scale=1.0,
                           output_scale=1.0)


def _stage_linear(stage) -> QuantizedLinear:
    if isinstance(stage, IntegerEmbedding):
        return stage.linear
    if isinstance(stage, IntegerHead):
        return stage.classifier
    raise TypeError(f"not a model stage: {type(stage).__name__}")


def stage_role(stage, config) -> str:
    """The tensor slot a stage's GEMM uses on ``config``'s engine
    (``sw.image.program.stage_slot`` of its weight's shape).

    Raises
    ------
    ValueError
        If no slot holds the weight (the message names the config, the weight and the slots).
    """
    from sw.image.program import stage_slot
    name = "embedding" if isinstance(stage, IntegerEmbedding) else "head"
    return stage_slot(name, _stage_linear(stage).weight.shape, config)


def stand_in_layer(template: IntegerEncoderLayer, block: tuple, **parts) -> IntegerEncoderLayer:
    """``template`` with ``parts`` (linears by role, constants by field) replaced and every
    other linear a block of zeros: what the engine loads to run a program that uses only
    ``parts`` (the other constants are loaded but never used)."""
    linears = {name: _empty_linear(block) for name in TENSOR_ROLES}
    return dataclasses.replace(template, **{**linears, **parts})


def engine_layer(stage, template: IntegerEncoderLayer, block: tuple,
                 role: str) -> IntegerEncoderLayer:
    """The stand-in layer the engine loads to run a stage's program: its GEMM in tensor slot
    ``role`` (:func:`stage_role`), its constants in the first set (the embedding's residual
    add, the head's LayerNorm), every other slot a block of zeros and every other constant
    ``template``'s (a real layer's, loaded but never used)."""
    parts = {role: _stage_linear(stage)}
    if isinstance(stage, IntegerEmbedding):
        parts["residual1"] = stage.residual
    else:
        parts["ln1"] = stage.final_layernorm
    return stand_in_layer(template, block, **parts)


def _backbone(model):
    return getattr(model, "deit", None) or getattr(model, "vit")


def quantize_stages(integer_model, calibration_images, *, block_rows: int):
    """``(IntegerEmbedding, IntegerHead)`` of an ``IntegerDeiT`` (its float model and encoder
    scales), calibrated on ``calibration_images``: the pixels' and the patch embedding's int8
    scales, and the logits'. The classifier's rows are padded to ``block_rows``."""
    import torch
    model = integer_model.model
    embeddings = _backbone(model).embeddings
    conv = embeddings.patch_embeddings.projection
    p, channels = conv.kernel_size[0], conv.in_channels
    with torch.no_grad():
        images = torch.as_tensor(calibration_images)
        conv_out = embeddings.patch_embeddings(images)
        logits = model(images).logits
    pixels = np.asarray(calibration_images, dtype=np.float64)
    patch_scale = float(np.abs(pixels).max()) / 127
    embedding_scale = float(conv_out.abs().max()) / 127
    weight = conv.weight.detach().double().numpy().reshape(conv.out_channels, -1)
    bias = conv.bias.detach().double().numpy()
    linear = quantize_linear(weight, bias, input_scale=patch_scale, output_scale=embedding_scale)
    tokens = [embeddings.cls_token]
    if getattr(embeddings, "distillation_token", None) is not None:
        tokens.append(embeddings.distillation_token)
    protected = len(tokens)
    position = embeddings.position_embeddings.detach().double().numpy()[0].copy()
    # a zero patch row gives the bias's requantized output; the class rows' table entries
    # hold their token minus that, so the residual add leaves token + position
    zero_row = linear_int(np.zeros((1, weight.shape[1]), np.int64), linear.weight, linear.bias,
                          linear.multiplier, linear.shift)[0] * embedding_scale
    for row, token in enumerate(tokens):
        position[row] += token.detach().double().numpy()[0, 0] - zero_row
    residual_scale = integer_model.input_scale
    embedding = IntegerEmbedding(
        patch_size=p, channels=channels, protected=protected, patch_scale=patch_scale,
        linear=linear, position=quantize_tensor(position, residual_scale, RESIDUAL_BITS),
        residual=residual_constants(residual_scale, embedding_scale, residual_scale,
                                    in_width=RESIDUAL_BITS, out_width=RESIDUAL_BITS))
    classifier = model.classifier
    classes = classifier.out_features
    padded = -(-classes // block_rows) * block_rows
    w = np.zeros((padded, classifier.in_features))
    b = np.zeros(padded)
    w[:classes] = classifier.weight.detach().double().numpy()
    b[:classes] = classifier.bias.detach().double().numpy()
    logit_scale = float(logits.abs().max()) / 127
    head = IntegerHead(final_layernorm=integer_model.final_layernorm,
                       classifier=quantize_linear(w, b, input_scale=integer_model.final_scale,
                                                  output_scale=logit_scale),
                       classes=classes, logit_scale=logit_scale)
    return embedding, head
