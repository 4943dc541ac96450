"""Activation-range calibration of an HF DeiT / ViT encoder, by forward hooks.

For every encoder layer it records the largest magnitude of each tensor the integer layer
requantizes (``ACTIVATION_POINTS``) over the calibration inputs. Per-tensor symmetric int8
scales are ``range / 127``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sw.progress import progress_bar

#: Tensors of one encoder layer whose range sets an int8 scale, in dataflow order.
ACTIVATION_POINTS = (
    "input",           # the residual stream entering the layer
    "ln1",             # layernorm_before output
    "q", "k", "v",     # projections
    "context",         # attention output, o_proj input
    "attn",            # o_proj output
    "residual1",       # input + attn (layernorm_after input)
    "ln2",             # layernorm_after output
    "fc1",             # fc1 output, before GELU
    "gelu",            # GELU output (fc2 input)
    "fc2",             # fc2 output
    "output",          # residual1 + fc2 (the layer output)
)


@dataclass(frozen=True)
class LayerRanges:
    """Largest magnitude seen at each activation point of one layer."""

    ranges: dict

    def scale(self, point: str, bits: int = 8) -> float:
        """Symmetric per-tensor scale mapping the range onto ``bits``-bit integers."""
        magnitude = self.ranges[point]
        return max(magnitude, 1e-8) / ((1 << (bits - 1)) - 1)


def encoder_layers(model) -> list:
    """The encoder layers of an HF DeiT / ViT classification or base model.

    Raises
    ------
    ValueError
        If the model has no ``layers`` list under its ``deit`` / ``vit`` backbone.
    """
    backbone = getattr(model, "deit", None) or getattr(model, "vit", None) or model
    layers = getattr(backbone, "layers", None)
    if layers is None:
        encoder = getattr(backbone, "encoder", None)
        layers = getattr(encoder, "layer", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__}: no encoder layers found (expected "
                         "deit.layers / vit.layers)")
    return list(layers)


def _hook_points(layer, record):
    """Register the hooks of one layer; return their handles."""
    def output_of(point):
        def hook(module, inputs, output):
            record(point, output[0] if isinstance(output, tuple) else output)
        return hook

    def input_of(point):
        def hook(module, inputs):
            record(point, inputs[0])
        return hook

    attention, mlp = layer.attention, layer.mlp
    handles = [
        layer.register_forward_pre_hook(input_of("input")),
        layer.layernorm_before.register_forward_hook(output_of("ln1")),
        attention.q_proj.register_forward_hook(output_of("q")),
        attention.k_proj.register_forward_hook(output_of("k")),
        attention.v_proj.register_forward_hook(output_of("v")),
        attention.o_proj.register_forward_pre_hook(input_of("context")),
        attention.o_proj.register_forward_hook(output_of("attn")),
        layer.layernorm_after.register_forward_pre_hook(input_of("residual1")),
        layer.layernorm_after.register_forward_hook(output_of("ln2")),
        mlp.fc1.register_forward_hook(output_of("fc1")),
        mlp.fc2.register_forward_pre_hook(input_of("gelu")),
        mlp.fc2.register_forward_hook(output_of("fc2")),
        layer.register_forward_hook(output_of("output")),
    ]
    return handles


@torch.no_grad()
def calibrate(model, images: torch.Tensor, *, batch_size: int = 64,
              progress: bool = True) -> list[LayerRanges]:
    """Run ``model`` on ``images`` and return each layer's activation ranges.

    The model is put in eval mode; it is not otherwise changed (hooks are removed).
    """
    model.eval()
    layers = encoder_layers(model)
    ranges = [{point: 0.0 for point in ACTIVATION_POINTS} for _ in layers]
    handles = []
    for index, layer in enumerate(layers):
        def record(point, tensor, index=index):
            ranges[index][point] = max(ranges[index][point], float(tensor.abs().max()))
        handles += _hook_points(layer, record)
    try:
        batches = range(0, len(images), batch_size)
        for start in progress_bar(batches, enabled=progress, desc="calibrating", unit="batch"):
            model(pixel_values=images[start:start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
    return [LayerRanges(ranges=r) for r in ranges]
