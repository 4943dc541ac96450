"""Head and FFN-neuron removal that leaves the pruned model's function unchanged.

transformers 5 dropped ``PreTrainedModel.prune_heads``; this is the project's own surgery. After
block movement pruning a weight mask (``True`` = kept) exists per parameter. :func:`apply_surgery`
zeroes the masked weights, finds the attention heads and FFN neurons whose removal cannot change
any output, shrinks the ``nn.Linear`` modules accordingly, and reports what survived together
with the remaining (in-head, block) masks of the shrunk weights, which stay in force: the
accelerator skips those zero blocks. :func:`fill` drops the masks and keeps the shrunk shapes,
the dense variant used for a final fine-tune.

Removal rules (the *why* is in ``docs/pruning-surgery.md``):

* Head ``h`` is removable (:func:`removable_heads`, the one rule that surgery and the exporter
  both use) when columns ``h*d .. (h+1)*d-1`` of O are all masked (the head reaches nothing), or
  when rows ``h*d .. (h+1)*d-1`` of V's *weight* are all masked: every value row is then V's bias
  ``b_v,h``, attention rows sum to 1, so the head's context is ``b_v,h`` for every query and the
  head adds the constant ``O_h @ b_v,h``, which :func:`fold_head_constants` moves into O's bias.
  Q and K do not matter, except in a layer whose token gather ranks tokens by the heads' CLS
  attention (then the head's attention row must be constant across keys as well). An empty Q (or
  K) alone is not enough: ``softmax`` of a constant row is uniform (``1/N``), not zero, so the
  head still adds the mean of its values through O.
* FFN neuron ``i`` is removable when row ``i`` of FC1's weight is masked (its output is then the
  input-independent constant ``act(b1[i])``, folded into FC2's bias as
  ``b2 += act(b1[i]) * W2[:, i]``), or when column ``i`` of FC2's weight is masked (the neuron
  reaches nothing).
* At least one head and one neuron stay in every layer, so that no module has a zero-sized
  dimension; when all are removable the lowest index is kept (its output is unchanged: a kept
  head keeps its V bias, whose constant then still flows through O).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .structures import ATTENTION_ROLES, ROLES, linear_modules, structure_for, encoder_layers

__all__ = [
    "removable_heads",
    "fold_head_constants",
    "selects_tokens",
    "removable_ffn",
    "prune_heads",
    "prune_ffn",
    "apply_surgery",
    "fill",
    "KeepMask",
    "LayerSurgery",
    "SurgeryReport",
]


# ---------------------------------------------------------------------------------------------
# Removability rules
# ---------------------------------------------------------------------------------------------

def _bias_mask(layer_masks: Mapping[str, Tensor | None], key: str) -> Tensor | None:
    if key not in layer_masks:
        raise ValueError(
            f"Layer masks lack {key!r}; pass None for a linear without bias, so a forgotten bias "
            f"mask cannot make a live head look empty"
        )
    return layer_masks[key]


def removable_heads(layer_masks: Mapping[str, Tensor | None], *, num_heads: int,
                    selects_tokens: bool = False) -> list[int]:
    """Heads of one layer whose removal leaves the layer's function unchanged.

    This is the one head rule: :func:`apply_surgery` removes exactly these heads and the
    exporter (``sw/image/export.py``) refuses to drop any other. A head is removable when

    * its O columns are all masked: it reaches nothing; or
    * its V weight rows are all masked: each value row is V's bias ``b_v,h``, every attention
      row sums to 1 (``softmax``, padding masks included), so the head's context is ``b_v,h``
      for every query and it adds the input-independent ``O_h @ b_v,h``;
      :func:`fold_head_constants` moves that into O's bias before the head goes.

    With ``selects_tokens`` (a token gather after this layer's attention ranks tokens by the CLS
    attention averaged over heads) the head's attention row must also be the same for every key,
    so that dropping it shifts every token's score alike and the same tokens are kept: Q's
    weight and bias rows all masked (every score is 0), or K's weight rows all masked (scores
    ``q_i . b_k`` do not depend on the key).

    Parameters
    ----------
    layer_masks : mapping
        Boolean keep-masks (``True`` = weight may be non-zero), weights in ``(out, in)`` layout:
        ``"q"``, ``"k"``, ``"v"`` of shape ``(num_heads * head_dim, hidden)``, ``"o"`` of shape
        ``(hidden, num_heads * head_dim)``, and ``"q_bias"``, ``"k_bias"``, ``"v_bias"`` of shape
        ``(num_heads * head_dim,)`` or ``None`` where the linear has no bias. O's bias does not
        belong to any head and is not consulted. Tensors or numpy arrays.
    num_heads : int
        Current number of heads of the layer.
    selects_tokens : bool
        Whether the layer's attention probabilities choose the tokens a gather keeps.

    Returns
    -------
    list of int
        Increasing head indices. May hold every head; callers keep at least one.

    Raises
    ------
    ValueError
        If a key is missing or the shapes do not split into ``num_heads`` heads.
    """
    for key in ATTENTION_ROLES:
        if key not in layer_masks or layer_masks[key] is None:
            raise ValueError(f"Layer masks lack the weight mask {key!r}")
    width = layer_masks["q"].shape[0]
    if num_heads <= 0 or width % num_heads:
        raise ValueError(f"{width} attention rows do not split into {num_heads} heads")
    biases = {role: _bias_mask(layer_masks, f"{role}_bias") for role in ("q", "k", "v")}
    head_dim = width // num_heads
    removable = []
    for head in range(num_heads):
        rows = slice(head * head_dim, (head + 1) * head_dim)
        reaches_nothing = not bool(layer_masks["o"][:, rows].any())
        constant_context = not bool(layer_masks["v"][rows].any())
        if not (reaches_nothing or constant_context):
            continue
        if selects_tokens:
            zero_scores = not bool(layer_masks["q"][rows].any()) and (
                biases["q"] is None or not bool(biases["q"][rows].any()))
            key_independent = not bool(layer_masks["k"][rows].any())
            if not (zero_scores or key_independent):
                continue
        removable.append(head)
    return removable


def selects_tokens(layer: nn.Module) -> bool:
    """Whether an encoder layer carries a token gather (:mod:`sw.pruning.tokens`) that ranks
    tokens by its attention probabilities."""
    return isinstance(getattr(layer, "token_gather", None), nn.Module)


def removable_ffn(
    fc1_mask: Tensor, fc1_bias_mask: Tensor | None, fc2_mask: Tensor, *, fold_bias: bool = True
) -> list[int]:
    """FFN neurons of one layer whose removal leaves the layer's function unchanged.

    Parameters
    ----------
    fc1_mask : Tensor of bool, shape ``(intermediate, hidden)``
    fc1_bias_mask : Tensor of bool, shape ``(intermediate,)``, or None
        ``None`` where FC1 has no bias.
    fc2_mask : Tensor of bool, shape ``(hidden, intermediate)``
    fold_bias : bool
        With ``True`` (what :func:`prune_ffn` implements), a neuron whose FC1 weight row is
        masked is removable whatever its bias: it outputs the constant ``act(b1[i])``, which is
        folded into FC2's bias. With ``False`` the FC1 bias must be masked too (then, for GELU,
        ``act(0) = 0`` and nothing needs folding).

    Returns
    -------
    list of int
        Increasing neuron indices with FC1 row ``i`` masked (and, without ``fold_bias``, its
        bias), or FC2 column ``i`` masked.
    """
    if fc1_mask.shape[0] != fc2_mask.shape[1]:
        raise ValueError(
            f"FC1 has {fc1_mask.shape[0]} outputs but FC2 has {fc2_mask.shape[1]} inputs"
        )
    input_dead = ~fc1_mask.any(dim=1)
    if not fold_bias and fc1_bias_mask is not None:
        input_dead = input_dead & ~fc1_bias_mask
    output_dead = ~fc2_mask.any(dim=0)
    return torch.nonzero(input_dead | output_dead).flatten().tolist()


# ---------------------------------------------------------------------------------------------
# Shrinking
# ---------------------------------------------------------------------------------------------

def _linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    """A plain ``nn.Linear`` holding copies of ``weight`` ``(out, in)`` and ``bias``."""
    out_features, in_features = weight.shape
    module = nn.Linear(in_features, out_features, bias=bias is not None,
                       device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        module.weight.copy_(weight)
        if bias is not None:
            module.bias.copy_(bias)
    return module


def _set_submodule(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _check_indices(indices: Sequence[int], count: int, what: str) -> list[int]:
    indices = sorted(set(int(index) for index in indices))
    if indices and (indices[0] < 0 or indices[-1] >= count):
        raise ValueError(f"{what} indices must lie in [0, {count}), not {indices}")
    if len(indices) >= count:
        raise ValueError(f"Removing all {count} {what}s is not supported; keep at least one")
    return indices


def _layer(model: nn.Module, layer_index: int):
    _, layers = encoder_layers(model)
    if not 0 <= layer_index < len(layers):
        raise ValueError(f"Layer index must lie in [0, {len(layers)}), not {layer_index}")
    return layers[layer_index], linear_modules(model)[layer_index]


def fold_head_constants(model: nn.Module, layer_index: int, heads: Sequence[int]) -> list[int]:
    """Move the constant output of ``heads`` whose V weight rows are all zero into O's bias.

    Mutates the model, in place and keeping shapes: for each such head ``h``, O's bias gains
    ``O[:, h] @ b_v[h]`` (summed in float64, cast once) and ``b_v[h]`` becomes zero, so the head
    then contributes exactly nothing and the layer computes what it did (attention rows sum to
    1, so the head's context was ``b_v[h]`` for every query). Heads with a non-zero V weight, or
    whose V bias is already zero, are left alone. Used by :func:`prune_heads` before it drops
    heads and by the exporter, which keeps the unshrunk model. Idempotent.

    Returns
    -------
    list of int
        The heads whose V bias was folded (non-zero before).

    Raises
    ------
    ValueError
        If a head index is out of range.
    """
    structure = structure_for(model)
    layer, linears = _layer(model, layer_index)
    attention = layer.get_submodule(structure.attention)
    num_heads = int(getattr(attention, structure.head_count_attributes[0]))
    heads = sorted(set(int(head) for head in heads))
    if heads and (heads[0] < 0 or heads[-1] >= num_heads):
        raise ValueError(f"head indices must lie in [0, {num_heads}), not {heads}")
    v_name, v = linears["v"]
    o_name, o = linears["o"]
    if v.bias is None:
        return []
    head_dim = v.out_features // num_heads
    folded = []
    with torch.no_grad():
        fold = torch.zeros(o.out_features, dtype=torch.float64, device=o.weight.device)
        for head in heads:
            rows = slice(head * head_dim, (head + 1) * head_dim)
            if v.weight[rows].any() or not v.bias[rows].any():
                continue
            fold += o.weight[:, rows].double() @ v.bias[rows].double()
            v.bias[rows] = 0
            folded.append(head)
        if folded:
            if o.bias is None:
                _set_submodule(model, o_name, _linear(o.weight, fold.to(o.weight.dtype)))
            else:
                o.bias.copy_((o.bias.double() + fold).to(o.bias.dtype))
    return folded


def _prune_heads(model: nn.Module, layer_index: int, heads: Sequence[int]) -> list[int]:
    """Shrink one layer's attention; return the removed heads whose constant was folded."""
    structure = structure_for(model)
    layer, linears = _layer(model, layer_index)
    attention = layer.get_submodule(structure.attention)
    num_heads = int(getattr(attention, structure.head_count_attributes[0]))
    heads = _check_indices(heads, num_heads, "head")
    if not heads:
        return []
    folded = fold_head_constants(model, layer_index, heads)
    linears = linear_modules(model)[layer_index]
    head_dim = linears["q"][1].out_features // num_heads
    kept_heads = [head for head in range(num_heads) if head not in heads]
    rows = torch.cat([torch.arange(head * head_dim, (head + 1) * head_dim) for head in kept_heads])
    with torch.no_grad():
        for role in ("q", "k", "v"):
            name, module = linears[role]
            bias = None if module.bias is None else module.bias[rows]
            _set_submodule(model, name, _linear(module.weight[rows], bias))
        name, module = linears["o"]
        _set_submodule(model, name, _linear(module.weight[:, rows], module.bias))
    for attribute in structure.head_count_attributes:
        setattr(attention, attribute, len(kept_heads))
    for attribute in structure.head_size_attributes:
        setattr(attention, attribute, len(kept_heads) * head_dim)
    return folded


def prune_heads(model: nn.Module, layer_index: int, heads: Sequence[int]) -> nn.Module:
    """Remove attention ``heads`` of one layer, in place, and return the model.

    Mutates the model: Q, K and V lose the heads' output rows, O the matching input columns
    (new ``nn.Linear`` modules, weights copied), and the attention module's head-count
    attributes are lowered so the forward pass reshapes into the remaining heads. A removed head
    whose V weight rows are all zero first has its constant output folded into O's bias
    (:func:`fold_head_constants`). ``heads`` index the layer's *current* heads. Any head may be
    removed; only heads returned by :func:`removable_heads` leave the function unchanged.
    ``config.num_attention_heads`` is left alone: after surgery layers differ, and the report
    holds the kept heads per layer.

    Raises
    ------
    ValueError
        If an index is out of range or all heads would go.
    """
    _prune_heads(model, layer_index, heads)
    return model


def _prune_ffn(model: nn.Module, layer_index: int, neurons: Sequence[int]) -> list[int]:
    """Shrink one layer's FFN; return the removed neurons whose constant output was folded."""
    structure = structure_for(model)
    layer, linears = _layer(model, layer_index)
    fc1_name, fc1 = linears["fc1"]
    fc2_name, fc2 = linears["fc2"]
    neurons = _check_indices(neurons, fc1.out_features, "FFN neuron")
    if not neurons:
        return []
    activation = layer.get_submodule(structure.activation)
    removed = torch.tensor(neurons, dtype=torch.long)
    kept = torch.tensor([i for i in range(fc1.out_features) if i not in set(neurons)],
                        dtype=torch.long)
    with torch.no_grad():
        # A neuron with an all-zero FC1 row outputs act(b1[i]) for every input: fold that
        # constant into FC2's bias. Summed in float64 so the fold adds no rounding of its own
        # beyond the final cast.
        constant_rows = ~fc1.weight[removed].any(dim=1)
        constant_rows &= fc2.weight[:, removed].any(dim=0)
        folded = removed[constant_rows]
        b1 = (fc1.bias[folded] if fc1.bias is not None
              else torch.zeros(len(folded), dtype=fc1.weight.dtype, device=fc1.weight.device))
        constant = activation(b1.double())
        fold = fc2.weight[:, folded].double() @ constant
        b2 = fc2.bias.double() if fc2.bias is not None else torch.zeros_like(fold)
        new_b2 = (b2 + fold).to(fc2.weight.dtype) if (fc2.bias is not None or len(folded)) else None
        _set_submodule(model, fc1_name, _linear(
            fc1.weight[kept], None if fc1.bias is None else fc1.bias[kept]))
        _set_submodule(model, fc2_name, _linear(fc2.weight[:, kept], new_b2))
    return folded.tolist()


def prune_ffn(model: nn.Module, layer_index: int, neurons: Sequence[int]) -> nn.Module:
    """Remove FFN ``neurons`` of one layer, in place, and return the model.

    Mutates the model: FC1 loses the neurons' rows (weights and bias), FC2 the matching
    columns. A removed neuron whose FC1 weight row is all zero outputs the constant
    ``act(b1[i])``; ``act(b1[i]) * W2[:, i]`` is added to FC2's bias (computed in float64,
    cast once), so such removals are exact up to that one rounding. Other neurons are simply
    dropped; that leaves the function unchanged only when their FC2 column is zero (see
    :func:`removable_ffn`).

    Raises
    ------
    ValueError
        If an index is out of range or all neurons would go.
    """
    _prune_ffn(model, layer_index, neurons)
    return model


# ---------------------------------------------------------------------------------------------
# Whole-model surgery
# ---------------------------------------------------------------------------------------------

class KeepMask(nn.Module):
    """Parametrization that multiplies a parameter by a fixed boolean keep-mask (a buffer)."""

    def __init__(self, mask: Tensor):
        super().__init__()
        self.register_buffer("mask", mask.clone().bool())

    def forward(self, value: Tensor) -> Tensor:
        return value * self.mask


@dataclass
class LayerSurgery:
    """What surgery left of one encoder layer.

    Attributes
    ----------
    index : int
    kept_heads, removed_heads : list of int
        Head indices in the numbering of the model given to :func:`apply_surgery`.
    folded_heads : list of int
        Removed heads (all-zero V weight) whose constant ``O_h @ b_v,h`` went into O's bias.
    kept_neurons, removed_neurons : list of int
        FFN neuron indices, same numbering.
    folded_neurons : list of int
        Removed neurons whose constant output ``act(b1[i])`` was folded into FC2's bias.
    masks : dict of str to Tensor of bool
        Keep-masks of the shrunk parameters, keyed ``"<role>.weight"`` / ``"<role>.bias"``;
        weights in ``(out, in)`` layout.
    """

    index: int
    kept_heads: list[int]
    removed_heads: list[int]
    folded_heads: list[int]
    kept_neurons: list[int]
    removed_neurons: list[int]
    folded_neurons: list[int]
    masks: dict[str, Tensor] = field(repr=False)

    def to_dict(self, *, include_masks: bool = False) -> dict:
        result = {
            "index": self.index,
            "kept_heads": list(self.kept_heads),
            "removed_heads": list(self.removed_heads),
            "folded_heads": list(self.folded_heads),
            "kept_neurons": list(self.kept_neurons),
            "removed_neurons": list(self.removed_neurons),
            "folded_neurons": list(self.folded_neurons),
            "shapes": {key: list(mask.shape) for key, mask in self.masks.items()},
            "density": {key: float(mask.float().mean()) if mask.numel() else 0.0
                        for key, mask in self.masks.items()},
        }
        if include_masks:
            result["masks"] = {key: mask.int().tolist() for key, mask in self.masks.items()}
        return result


@dataclass
class SurgeryReport:
    """Per-layer outcome of :func:`apply_surgery`, plus parameter counts before and after."""

    model_type: str
    num_heads: int
    head_dim: int
    parameters_before: int
    parameters_after: int
    layers: list[LayerSurgery]

    def to_dict(self, *, include_masks: bool = False) -> dict:
        """JSON-able form; masks as nested 0/1 lists only when ``include_masks``."""
        return {
            "model_type": self.model_type,
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "parameters_before": self.parameters_before,
            "parameters_after": self.parameters_after,
            "layers": [layer.to_dict(include_masks=include_masks) for layer in self.layers],
        }


def _parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def _take_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Check ``masks`` against the role parameters and complete them with all-True masks."""
    complete: dict[str, Tensor] = {}
    for layer in linear_modules(model).values():
        for name, module in layer.values():
            for kind in ("weight", "bias"):
                parameter = getattr(module, kind)
                if parameter is None:
                    continue
                key = f"{name}.{kind}"
                mask = masks.get(key)
                if mask is None:
                    mask = torch.ones(parameter.shape, dtype=torch.bool)
                elif tuple(mask.shape) != tuple(parameter.shape):
                    raise ValueError(
                        f"Mask {key!r} has shape {tuple(mask.shape)}, "
                        f"parameter has {tuple(parameter.shape)}"
                    )
                complete[key] = mask.to(device=parameter.device).bool()
    unknown = sorted(set(masks) - set(complete))
    if unknown:
        raise ValueError(f"Masks name no prunable parameter: {unknown}")
    return complete


def apply_surgery(model: nn.Module, masks: Mapping[str, Tensor] | None = None, *,
                  keep_masks: bool = True) -> SurgeryReport:
    """Zero masked weights, remove every removable head and FFN neuron, report what is left.

    Mutates the model: each Q, K, V, O, FC1, FC2 linear is replaced by a plain, possibly
    smaller ``nn.Linear`` (parametrizations on the old modules are read through, then gone).

    Parameters
    ----------
    model : nn.Module
        A DeiT, ViT or BERT model (see :mod:`sw.pruning.structures`).
    masks : mapping of str to Tensor of bool, optional
        Keep-masks keyed by full parameter name (``"deit.layers.0.attention.q_proj.weight"``,
        ``"...bias"``), same shape as the parameter. Missing entries keep everything. A weight
        that is exactly zero counts as masked too, so already-zeroed weights need no mask.
    keep_masks : bool
        Register the shrunk masks as :class:`KeepMask` parametrizations so that further
        training keeps the in-head block sparsity; :func:`fill` removes them.

    Returns
    -------
    SurgeryReport

    Raises
    ------
    ValueError
        On an unsupported architecture, a mask of the wrong shape, or a mask naming no
        prunable parameter.
    """
    structure = structure_for(model)
    masks = _take_masks(model, masks or {})
    parameters_before = _parameter_count(model)
    num_layers = len(encoder_layers(model)[1])
    layer_reports = []
    for index in range(num_layers):
        linears = linear_modules(model)[index]
        layer_module = encoder_layers(model)[1][index]
        attention = layer_module.get_submodule(structure.attention)
        num_heads = int(getattr(attention, structure.head_count_attributes[0]))
        # Zeroing: masked values become exact zeros in fresh plain linears.
        live: dict[str, Tensor | None] = {}
        kept_masks: dict[str, Tensor] = {}
        with torch.no_grad():
            for role in ROLES:
                name, module = linears[role]
                weight = module.weight.detach() * masks[f"{name}.weight"]
                bias = None
                live[role] = (weight != 0) & masks[f"{name}.weight"]
                kept_masks[f"{role}.weight"] = masks[f"{name}.weight"]
                if module.bias is not None:
                    bias = module.bias.detach() * masks[f"{name}.bias"]
                    live[f"{role}_bias"] = (bias != 0) & masks[f"{name}.bias"]
                    kept_masks[f"{role}.bias"] = masks[f"{name}.bias"]
                else:
                    live[f"{role}_bias"] = None
                _set_submodule(model, name, _linear(weight, bias))

        heads = removable_heads(live, num_heads=num_heads,
                                selects_tokens=selects_tokens(layer_module))
        if len(heads) == num_heads:
            heads = heads[1:]
        neurons = removable_ffn(live["fc1"], live["fc1_bias"], live["fc2"])
        if len(neurons) == live["fc1"].shape[0]:
            neurons = neurons[1:]
        folded_heads = _prune_heads(model, index, heads)
        folded = _prune_ffn(model, index, neurons)

        head_dim = live["q"].shape[0] // num_heads
        kept_heads = [head for head in range(num_heads) if head not in heads]
        rows = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in kept_heads])
        kept_neurons = [i for i in range(live["fc1"].shape[0]) if i not in set(neurons)]
        columns = torch.tensor(kept_neurons, dtype=torch.long)
        shrunk = {}
        for key, mask in kept_masks.items():
            role, kind = key.split(".")
            if role in ("q", "k", "v"):
                mask = mask[rows]
            elif role == "o" and kind == "weight":
                mask = mask[:, rows]
            elif role == "fc1":
                mask = mask[columns]
            elif role == "fc2" and kind == "weight":
                mask = mask[:, columns]
            shrunk[key] = mask.clone()
        if folded_heads:      # the folded constants must survive O's bias mask
            o_bias = linear_modules(model)[index]["o"][1].bias.detach() != 0
            shrunk["o.bias"] = shrunk["o.bias"] | o_bias if "o.bias" in shrunk else o_bias | True
        if "fc2.bias" not in shrunk and folded:
            shrunk["fc2.bias"] = torch.ones(linears["fc2"][1].out_features, dtype=torch.bool)

        if keep_masks:
            for role, (name, _) in linear_modules(model)[index].items():
                module = model.get_submodule(name)
                for kind in ("weight", "bias"):
                    mask = shrunk.get(f"{role}.{kind}")
                    if mask is not None and not bool(mask.all()):
                        parametrize.register_parametrization(module, kind, KeepMask(mask))

        layer_reports.append(LayerSurgery(
            index=index,
            kept_heads=kept_heads,
            removed_heads=list(heads),
            folded_heads=folded_heads,
            kept_neurons=kept_neurons,
            removed_neurons=list(neurons),
            folded_neurons=folded,
            masks=shrunk,
        ))

    return SurgeryReport(
        model_type=structure.model_type,
        num_heads=structure.num_heads(model.config),
        head_dim=structure.head_dim(model.config),
        parameters_before=parameters_before,
        parameters_after=_parameter_count(model),
        layers=layer_reports,
    )


def fill(model: nn.Module) -> nn.Module:
    """Drop the keep-masks of the prunable linears, keeping their (shrunk) shapes; return model.

    Mutates the model: every parametrization on a Q, K, V, O, FC1 or FC2 weight or bias is
    removed with its current (masked) value left in place, so the zeros stay as starting
    values but may train again: nn_pruning's "filled" dense variant for the final fine-tune.
    """
    for layer in linear_modules(model).values():
        for _, module in layer.values():
            for kind in ("weight", "bias"):
                if parametrize.is_parametrized(module, kind):
                    parametrize.remove_parametrizations(module, kind, leave_parametrized=True)
    return model
