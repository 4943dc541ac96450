"""Activation-range calibration of an HF encoder (DeiT / ViT pre-LN, BERT post-LN), by forward
hooks.

For every encoder layer it records the largest magnitude of each tensor the integer layer
requantizes over the calibration inputs: ``ACTIVATION_POINTS`` for a pre-LN layer,
``POST_NORM_ACTIVATION_POINTS`` for a post-LN one. The tensors are found through the
architecture's structure table (``sw.pruning.structures``: the six linear roles, the two
LayerNorms and ``norm``), not by module names of one architecture. Per-tensor symmetric int8
scales are ``range / 127``.

Inputs: a tensor of images (``pixel_values``) or, for a sequence classifier, of token ids (the
attention mask comes from ``sw.models.model_inputs``), or a mapping of equally long tensors
(``input_ids``, ``attention_mask``, ``token_type_ids``) passed to the model as keywords. Where
an attention mask is given, padded token rows are left out of the ranges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from sw.progress import progress_bar
from sw.pruning.structures import STRUCTURES, ModelStructure, layer_structure

#: Tensors of one pre-LN encoder layer whose range sets an int8 scale, in dataflow order.
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

#: Tensors of one post-LN (BERT) encoder layer whose range sets a scale, in dataflow order.
POST_NORM_ACTIVATION_POINTS = (
    "input",           # the previous LayerNorm's output entering the layer
    "q", "k", "v",     # projections
    "context",         # attention output, o input
    "attn",            # o output
    "residual1",       # input + attn (the first LayerNorm's input)
    "ln1",             # the first LayerNorm's output (attention.output.LayerNorm in BERT)
    "fc1",             # fc1 output, before GELU
    "gelu",            # GELU output (fc2 input)
    "fc2",             # fc2 output
    "residual2",       # ln1 + fc2 (the second LayerNorm's input)
    "output",          # the second LayerNorm's output (the layer output)
)


def activation_points(norm: str) -> tuple:
    """The activation points of a ``norm`` (``"pre"`` or ``"post"``) layer, in dataflow order."""
    if norm == "pre":
        return ACTIVATION_POINTS
    if norm == "post":
        return POST_NORM_ACTIVATION_POINTS
    raise ValueError(f"norm must be 'pre' or 'post', not {norm!r}")


@dataclass(frozen=True)
class LayerRanges:
    """Largest magnitude seen at each activation point of one layer."""

    ranges: dict

    def scale(self, point: str, bits: int = 8) -> float:
        """Symmetric per-tensor scale mapping the range onto ``bits``-bit integers."""
        magnitude = self.ranges[point]
        return max(magnitude, 1e-8) / ((1 << (bits - 1)) - 1)


def encoder_layers(model) -> list:
    """The encoder layers of an HF DeiT / ViT / BERT classification or base model.

    Models with a structure table (``sw.pruning.structures``) are searched through it; others
    the DeiT / ViT way (``deit.layers``, ``vit.layers``, ``layers`` or ``encoder.layer``).

    Raises
    ------
    ValueError
        If no encoder layer list is found.
    """
    if getattr(getattr(model, "config", None), "model_type", None) in STRUCTURES:
        from sw.pruning.structures import encoder_layers as layers_of
        return list(layers_of(model)[1])
    backbone = getattr(model, "deit", None) or getattr(model, "vit", None) or model
    layers = getattr(backbone, "layers", None)
    if layers is None:
        encoder = getattr(backbone, "encoder", None)
        layers = getattr(encoder, "layer", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__}: no encoder layers found (expected "
                         "deit.layers / vit.layers / bert.encoder.layer)")
    return list(layers)


def _hook_points(layer, record, structure: ModelStructure | None = None):
    """Register the hooks of one layer (its table: ``structure``, or found from the layer);
    return their handles."""
    structure = layer_structure(layer) if structure is None else structure

    def output_of(point):
        def hook(module, inputs, output):
            record(point, output[0] if isinstance(output, tuple) else output)
        return hook

    def input_of(point):
        def hook(module, inputs):
            record(point, inputs[0])
        return hook

    role = {name: layer.get_submodule(path) for name, path in structure.roles.items()}
    first, second = (layer.get_submodule(name) for name in structure.layernorms)
    handles = [
        layer.register_forward_pre_hook(input_of("input")),
        role["q"].register_forward_hook(output_of("q")),
        role["k"].register_forward_hook(output_of("k")),
        role["v"].register_forward_hook(output_of("v")),
        role["o"].register_forward_pre_hook(input_of("context")),
        role["o"].register_forward_hook(output_of("attn")),
        role["fc1"].register_forward_hook(output_of("fc1")),
        role["fc2"].register_forward_pre_hook(input_of("gelu")),
        role["fc2"].register_forward_hook(output_of("fc2")),
        layer.register_forward_hook(output_of("output")),
    ]
    if structure.norm == "pre":
        handles += [
            first.register_forward_hook(output_of("ln1")),
            second.register_forward_pre_hook(input_of("residual1")),
            second.register_forward_hook(output_of("ln2")),
        ]
    else:
        handles += [
            first.register_forward_pre_hook(input_of("residual1")),
            first.register_forward_hook(output_of("ln1")),
            second.register_forward_pre_hook(input_of("residual2")),
        ]
    return handles


def _batches(model, inputs, batch_size: int):
    """``(keyword arguments, attention mask or None)`` of each batch of ``inputs``."""
    if isinstance(inputs, Mapping):
        total = len(next(iter(inputs.values())))
        for start in range(0, total, batch_size):
            kwargs = {name: value[start:start + batch_size] for name, value in inputs.items()}
            yield kwargs, kwargs.get("attention_mask")
        return
    config = getattr(model, "config", None)
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start:start + batch_size]
        if config is None:
            yield {"pixel_values": batch}, None
            continue
        from sw.models import model_inputs
        kwargs = model_inputs(model, batch)
        yield kwargs, kwargs.get("attention_mask")


def _batch_count(inputs, batch_size: int) -> int:
    total = len(next(iter(inputs.values()))) if isinstance(inputs, Mapping) else len(inputs)
    return -(-total // batch_size)


@torch.no_grad()
def calibrate(model, images, *, batch_size: int = 64,
              progress: bool = True) -> list[LayerRanges]:
    """Run ``model`` on ``images`` (or token ids, or a mapping of keyword tensors; see the
    module docstring) and return each layer's activation ranges, keyed by the points of the
    layer's norm placement.

    The model is put in eval mode; it is not otherwise changed (hooks are removed).
    """
    model.eval()
    layers = encoder_layers(model)
    ranges, handles = [], []
    mask = {"rows": None}                     # the current batch's kept token rows

    for index, layer in enumerate(layers):
        structure = layer_structure(layer)
        ranges.append({point: 0.0 for point in activation_points(structure.norm)})

        def record(point, tensor, index=index):
            rows = mask["rows"]
            if rows is not None and tuple(tensor.shape[:2]) == tuple(rows.shape):
                tensor = tensor[rows]
            if tensor.numel():
                ranges[index][point] = max(ranges[index][point], float(tensor.abs().max()))
        handles += _hook_points(layer, record, structure)
    try:
        batches = _batches(model, images, batch_size)
        for kwargs, attention_mask in progress_bar(batches, enabled=progress, desc="calibrating",
                                                   unit="batch",
                                                   total=_batch_count(images, batch_size)):
            mask["rows"] = None if attention_mask is None else attention_mask.bool()
            model(**kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return [LayerRanges(ranges=r) for r in ranges]
