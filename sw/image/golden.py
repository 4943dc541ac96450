"""The golden model run from a weight image: integer layers and stages rebuilt from its bytes.

``integer_layer`` turns a loaded :class:`~sw.image.format.LayerImage` into the golden model's
:class:`~sw.golden.encoder_layer.IntegerEncoderLayer`, ``integer_embedding`` and
``integer_head`` the image's stages into ``sw.golden.model_stages``' forms, and
``stage_layer`` a stage into the stand-in layer the engine loads to run its program.
``encode`` runs every layer's *program* from the image (``sw.golden.layer_program``) and the
final LayerNorm; ``classify`` the whole model's programs, image in and int8 logits out. Nothing
here reads torch weights: what the accelerator would compute from this image, and only that.
"""

from __future__ import annotations

import numpy as np

from sw.golden.encoder_layer import IntegerEncoderLayer
from sw.golden.kernels import layernorm_int
from sw.golden.layer_program import run_layer_program
from sw.golden.model_stages import IntegerEmbedding, IntegerHead, engine_layer, quantize_patches
from sw.image.format import LayerImage, WeightImage
from sw.isa import TENSOR_ROLES, Buffer, Opcode

__all__ = ["integer_layer", "integer_embedding", "integer_head", "stage_role_of", "stage_layer",
           "encode", "classify"]


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


def integer_embedding(image: WeightImage) -> IntegerEmbedding:
    """The image's patch embedding as ``sw.golden.model_stages`` computes it."""
    e = image.embedding
    return IntegerEmbedding(patch_size=e.patch_size, channels=e.channels,
                            protected=e.protected, patch_scale=e.patch_scale,
                            linear=e.linear.quantized(), position=e.position,
                            residual=e.residual)


def integer_head(image: WeightImage) -> IntegerHead:
    """The image's final LayerNorm and classifier as ``sw.golden.model_stages`` computes them."""
    h = image.head
    return IntegerHead(final_layernorm=image.final_layernorm, classifier=h.linear.quantized(),
                       classes=h.classes, logit_scale=h.logit_scale)


def stage_role_of(program) -> str:
    """The tensor slot a stage program's GEMM names (``sw.image.program.stage_slot`` chose
    it when the image was written)."""
    return next(TENSOR_ROLES[i.arg] for i in program if i.opcode == Opcode.GEMM)


def stage_layer(image: WeightImage, stage: str) -> IntegerEncoderLayer:
    """The stand-in layer the engine loads to run ``stage``'s (``"embedding"``, ``"head"``)
    program: its linear in its program's slot, its constants, every other slot a block of zeros
    and every other constant layer 0's (``sw.golden.model_stages.engine_layer``)."""
    hw = image.config.hardware
    part = integer_embedding(image) if stage == "embedding" else integer_head(image)
    program = getattr(image, stage).program
    return engine_layer(part, integer_layer(image.layers[0], image.config.model.norm),
                        (hw.block_rows, hw.block_cols), stage_role_of(program))


def classify(image: WeightImage, pixel_values) -> np.ndarray:
    """int8 logits ``(N, classes padded)`` of the image's whole model on ``pixel_values``
    ``(N, C, H, W)`` (the model's normalised pixels): the host's int8 patch rows
    (``quantize_patches``), then the embedding program, every layer's program and the head
    program, each on what the one before it left, as the engine runs them."""
    embedding = image.embedding
    patches = quantize_patches(pixel_values, integer_embedding(image))
    slot_input = embedding.program[0].src_a
    x = run_layer_program(embedding.program, stage_layer(image, "embedding"),
                          np.zeros(patches.shape[:-1] + (image.model.hidden_size,), np.int64),
                          preload={slot_input: patches, Buffer.RESIDUAL1: embedding.position})
    for layer in image.layers:
        x = run_layer_program(layer.program, integer_layer(layer, image.config.model.norm), x)
    program = image.head.program
    logits = run_layer_program(program, stage_layer(image, "head"), x[..., :1, :],
                               result=program[-2].dst)
    return logits[..., 0, :]
