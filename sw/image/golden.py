"""The golden model run from a weight image: integer layers rebuilt from the image's bytes.

``integer_layer`` turns a loaded :class:`~sw.image.format.LayerImage` into the golden model's
:class:`~sw.golden.encoder_layer.IntegerEncoderLayer`; ``encode`` runs every layer's *program*
from the image (``sw.golden.layer_program``) and the final LayerNorm. Nothing here reads torch
weights: what the accelerator would compute from this image, and only that.
"""

from __future__ import annotations

import numpy as np

from sw.golden.encoder_layer import IntegerEncoderLayer
from sw.golden.kernels import layernorm_int
from sw.golden.layer_program import run_layer_program
from sw.image.format import LayerImage, WeightImage

__all__ = ["integer_layer", "encode"]


def integer_layer(layer: LayerImage, norm: str = "pre") -> IntegerEncoderLayer:
    """The golden model's parameters of ``layer`` (dense weights, zeros where no block is
    stored), a ``norm`` layer (the image's ``config.model.norm``)."""
    linears = {role: linear.quantized() for role, linear in layer.linears.items()}
    return IntegerEncoderLayer(
        head_dim=layer.head_dim, kept_heads=layer.kept_heads, kept_ffn=layer.kept_ffn,
        scales=dict(layer.scales), ln1=layer.ln1, softmax=layer.softmax,
        context_multiplier=layer.context_multiplier, context_shift=layer.context_shift,
        residual1=layer.residual1, ln2=layer.ln2, gelu=layer.gelu, residual2=layer.residual2,
        norm=norm, **linears)


def encode(image: WeightImage, x, *, traces: list | None = None) -> np.ndarray:
    """int8 final-LayerNorm output for the int16 encoder input ``x`` ``(..., T, hidden)``.

    ``traces``, if given, receives one dict per layer with every buffer of its program.
    """
    for layer in image.layers:
        trace = {} if traces is not None else None
        x = run_layer_program(layer.program, integer_layer(layer, image.config.model.norm), x,
                              trace=trace)
        if traces is not None:
            traces.append(trace)
    return layernorm_int(x, image.final_layernorm)
