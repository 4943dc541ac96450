"""Integer whole-model runner for HF DeiT / ViT image classifiers.

What is integer: every encoder layer (``sw.golden.encoder_layer``) and the final LayerNorm.
What stays float, and why: the patch embedding (a convolution of normalised pixels, plus the
CLS / distillation tokens and position embeddings) runs once per image before the encoder and is
not part of the accelerator; its output is quantized to int8 with the calibrated scale of the
first layer's input. The classifier head reads the CLS token of the dequantized final
LayerNorm output; it is a single small matrix-vector product outside the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sw.golden.encoder_layer import (RESIDUAL_BITS, encoder_layer_int,
                                     quantize_encoder_layer)
from sw.golden.kernels import LayerNormConstants, layernorm_constants, layernorm_int
from sw.progress import progress_bar
from sw.quantize.calibration import calibrate, encoder_layers
from sw.quantize.linear import quantize_tensor


def _backbone(model):
    return getattr(model, "deit", None) or getattr(model, "vit")


@dataclass(frozen=True, eq=False)
class IntegerDeiT:
    """An HF DeiT / ViT classifier with an integer encoder."""

    model: torch.nn.Module               #: the float model (embeddings and head are used)
    layers: list                         #: IntegerEncoderLayer per encoder layer
    input_scale: float                   #: int8 scale of the first layer's input
    final_layernorm: LayerNormConstants
    final_scale: float

    @torch.no_grad()
    def embed(self, pixel_values) -> np.ndarray:
        """Float patch embedding quantized to the encoder's input (the int16 residual
        stream)."""
        embeddings = _backbone(self.model).embeddings(torch.as_tensor(pixel_values))
        return quantize_tensor(embeddings.double().numpy(), self.input_scale, RESIDUAL_BITS)

    def encode(self, pixel_values, *, kept_tokens=None, token_pruning=None) -> np.ndarray:
        """int8 final-LayerNorm output ``(B, T', d)``; ``kept_tokens[i]`` (or None) are the
        token indices layer ``i`` keeps after its attention; ``token_pruning[i]`` (a
        ``TokenPruning`` or None) is layer ``i``'s own top-k token gather."""
        x = self.embed(pixel_values)
        for index, layer in enumerate(self.layers):
            keep = None if kept_tokens is None else kept_tokens[index]
            gather = None if token_pruning is None else token_pruning[index]
            x = encoder_layer_int(layer, x, kept_tokens=keep, token_pruning=gather)
        return layernorm_int(x, self.final_layernorm)

    @torch.no_grad()
    def logits(self, pixel_values, *, kept_tokens=None, token_pruning=None) -> np.ndarray:
        """Class logits (float) from the integer encoder."""
        return self.classify(self.encode(pixel_values, kept_tokens=kept_tokens,
                                         token_pruning=token_pruning))

    def head(self, encoder_output) -> np.ndarray:
        """Class logits (float) of the last encoder layer's int16 output ``(..., T', d)``: the
        integer final LayerNorm, then :meth:`classify` (what the host does with the layer
        engine's output of a whole encoder, ``sim.encoder_replay``)."""
        return self.classify(layernorm_int(np.asarray(encoder_output, dtype=np.int64),
                                           self.final_layernorm))

    @torch.no_grad()
    def classify(self, normed) -> np.ndarray:
        """Class logits (float) of the int8 final-LayerNorm output ``(..., T', d)``: the float
        classifier on the dequantized CLS row."""
        hidden = np.asarray(normed)[..., 0, :] * self.final_scale
        classifier = self.model.classifier
        return (torch.as_tensor(hidden, dtype=classifier.weight.dtype) @ classifier.weight.T
                + classifier.bias).double().numpy()


@torch.no_grad()
def quantize_model(model, calibration_images, *, kept_heads=None, kept_ffn=None,
                   progress: bool = True) -> IntegerDeiT:
    """Calibrate on ``calibration_images`` and quantize every encoder layer.

    ``kept_heads[i]`` / ``kept_ffn[i]`` optionally select the heads and neurons layer ``i``
    keeps (see ``quantize_encoder_layer``).
    """
    model.eval()
    backbone = _backbone(model)
    final = []
    handle = backbone.layernorm.register_forward_hook(
        lambda module, inputs, output: final.append(float(output.abs().max())))
    try:
        ranges = calibrate(model, calibration_images, progress=progress)
    finally:
        handle.remove()
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    layers = [quantize_encoder_layer(
        layer, ranges[index], head_dim=head_dim,
        kept_heads=None if kept_heads is None else kept_heads[index],
        kept_ffn=None if kept_ffn is None else kept_ffn[index])
        for index, layer in enumerate(encoder_layers(model))]
    final_scale = max(final) / 127
    norm = backbone.layernorm
    return IntegerDeiT(
        model=model, layers=layers, input_scale=ranges[0].scale("input", RESIDUAL_BITS),
        final_layernorm=layernorm_constants(norm.weight.double().numpy(),
                                            norm.bias.double().numpy(), final_scale,
                                            in_width=RESIDUAL_BITS),
        final_scale=final_scale)


def predict(integer_model: IntegerDeiT, images, *, batch_size: int = 64,
            progress: bool = True, token_pruning=None) -> np.ndarray:
    """Integer-encoder logits of ``images`` in batches, with a progress bar."""
    batches = range(0, len(images), batch_size)
    return np.concatenate([integer_model.logits(images[start:start + batch_size],
                                                token_pruning=token_pruning)
                           for start in progress_bar(batches, enabled=progress,
                                                     desc="integer model", unit="batch")])
