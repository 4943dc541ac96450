"""Where the prunable linears of each supported transformer live, one table per architecture.

Every table names, relative to one encoder layer, the six prunable roles (``q``, ``k``, ``v``,
``o``, ``fc1``, ``fc2``), the module that owns the attention head-count attributes, the FFN
activation, the layer's two LayerNorms and where they sit (``norm``: ``"pre"`` in DeiT / ViT,
``"post"`` in BERT; quantization and calibration read these); plus a pattern that finds the
encoder's layer list inside a whole model (base model or task head around it). Names are those of transformers 5.23, which renamed the v4 modules
(``attention.attention.query`` became ``attention.q_proj`` in DeiT/ViT, ``encoder.layer`` became
``layers``); BERT kept its v4 names.

Weight layout is normalised to ``(out_features, in_features)`` here, in :func:`weight_out_in`,
and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import Tensor, nn

__all__ = [
    "ROLES",
    "ATTENTION_ROLES",
    "FFN_ROLES",
    "ModelStructure",
    "STRUCTURES",
    "structure_for",
    "layer_structure",
    "encoder_layers",
    "linear_modules",
    "find_linears",
    "weight_out_in",
]

#: The prunable roles of one encoder layer, in data-flow order.
ROLES = ("q", "k", "v", "o", "fc1", "fc2")
ATTENTION_ROLES = ("q", "k", "v", "o")
FFN_ROLES = ("fc1", "fc2")


@dataclass(frozen=True)
class ModelStructure:
    """Module-name table of one architecture.

    Attributes
    ----------
    model_type : str
        ``config.model_type`` this table applies to.
    layers_pattern : str
        Regular expression that the dotted name of the encoder's layer ``nn.ModuleList`` matches
        with ``re.search`` (``"layers"`` in ``DeiTModel``, ``"deit.layers"`` inside
        ``DeiTForImageClassification``).
    roles : dict of str to str
        Per role of :data:`ROLES`, the module's dotted name relative to one encoder layer.
    attention : str
        Module, relative to the layer, whose head-count attributes the forward pass reads.
    head_count_attributes : tuple of str
        Attributes of ``attention`` holding the number of heads.
    head_size_attributes : tuple of str
        Attributes of ``attention`` holding ``heads * head_dim`` (may be empty).
    activation : str
        FFN activation module relative to the layer (applied between ``fc1`` and ``fc2``).
    layernorms : tuple of str
        The layer's two LayerNorms relative to the layer, in data-flow order: the integer
        layer's ``ln1`` and ``ln2`` (``sw.golden.encoder_layer.IntegerEncoderLayer``). Pre-LN,
        ``ln1`` normalises the attention's input and ``ln2`` the FFN's; post-LN, ``ln1``
        normalises the first residual sum (attention output + input) and ``ln2`` the second
        (its output is the layer's output).
    norm : str
        ``"pre"`` (LayerNorm before attention and FFN) or ``"post"`` (after each residual add).
    """

    model_type: str
    layers_pattern: str
    roles: dict[str, str]
    attention: str
    head_count_attributes: tuple[str, ...]
    head_size_attributes: tuple[str, ...]
    activation: str
    layernorms: tuple[str, str] = ("layernorm_before", "layernorm_after")
    norm: str = "pre"

    def num_heads(self, config) -> int:
        """Number of attention heads per layer of the unpruned model described by ``config``."""
        return int(config.num_attention_heads)

    def head_dim(self, config) -> int:
        """Width of one head; ``config.head_dim`` when the config sets it (DeiT/ViT honour it)."""
        head_dim = getattr(config, "head_dim", None)
        if head_dim is None:
            head_dim = config.hidden_size // config.num_attention_heads
        return int(head_dim)


_VISION_ROLES = {
    "q": "attention.q_proj",
    "k": "attention.k_proj",
    "v": "attention.v_proj",
    "o": "attention.o_proj",
    "fc1": "mlp.fc1",
    "fc2": "mlp.fc2",
}


def _vision(model_type: str) -> ModelStructure:
    """HF DeiT and ViT share one layer layout (transformers 5 names)."""
    return ModelStructure(
        model_type=model_type,
        layers_pattern=r"(^|\.)layers$",
        roles=_VISION_ROLES,
        attention="attention",
        head_count_attributes=("num_attention_heads",),
        head_size_attributes=(),
        activation="mlp.activation_fn",
        layernorms=("layernorm_before", "layernorm_after"),
        norm="pre",
    )


STRUCTURES: dict[str, ModelStructure] = {
    "deit": _vision("deit"),
    "vit": _vision("vit"),
    "bert": ModelStructure(
        model_type="bert",
        layers_pattern=r"(^|\.)encoder\.layer$",
        roles={
            "q": "attention.self.query",
            "k": "attention.self.key",
            "v": "attention.self.value",
            "o": "attention.output.dense",
            "fc1": "intermediate.dense",
            "fc2": "output.dense",
        },
        attention="attention.self",
        head_count_attributes=("num_attention_heads",),
        head_size_attributes=("all_head_size",),
        activation="intermediate.intermediate_act_fn",
        layernorms=("attention.output.LayerNorm", "output.LayerNorm"),
        norm="post",
    ),
}


def structure_for(model: nn.Module) -> ModelStructure:
    """The table of ``model``'s architecture, chosen by ``model.config.model_type``.

    Raises
    ------
    ValueError
        If the model has no config or its architecture has no table.
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in STRUCTURES:
        supported = ", ".join(sorted(STRUCTURES))
        raise ValueError(
            f"Pruning structure for model type {model_type!r} is not defined; "
            f"supported model types: {supported}"
        )
    return STRUCTURES[model_type]


def layer_structure(layer: nn.Module) -> ModelStructure:
    """The table of the architecture one encoder layer belongs to, found from the layer alone:
    the first table whose six roles are ``nn.Linear`` modules of the layer and whose two
    LayerNorms exist in it (DeiT and ViT share one layout, so a ViT layer gets the ``deit``
    table, which names the same modules).

    Raises
    ------
    ValueError
        If no table matches the layer.
    """
    for structure in STRUCTURES.values():
        try:
            linears = [layer.get_submodule(structure.roles[role]) for role in ROLES]
            for name in structure.layernorms:
                layer.get_submodule(name)
        except AttributeError:
            continue
        if all(isinstance(module, nn.Linear) for module in linears):
            return structure
    supported = ", ".join(sorted(STRUCTURES))
    raise ValueError(f"{type(layer).__name__} matches no encoder layer structure "
                     f"(supported model types: {supported})")


def encoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The dotted name and the ``nn.ModuleList`` of ``model``'s encoder layers.

    Raises
    ------
    ValueError
        If no module, or more than one, matches the architecture's layer-list pattern.
    """
    structure = structure_for(model)
    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and re.search(structure.layers_pattern, name)
    ]
    if len(found) != 1:
        names = [name for name, _ in found]
        raise ValueError(
            f"Expected exactly one encoder layer list matching {structure.layers_pattern!r} in "
            f"{type(model).__name__}, found {names}"
        )
    return found[0]


def linear_modules(model: nn.Module) -> dict[int, dict[str, tuple[str, nn.Linear]]]:
    """Per layer index, per role, the full dotted name and the ``nn.Linear`` filling that role.

    Raises
    ------
    ValueError
        If a role's module is missing or is not an ``nn.Linear``.
    """
    structure = structure_for(model)
    layers_name, layers = encoder_layers(model)
    result: dict[int, dict[str, tuple[str, nn.Linear]]] = {}
    for index, layer in enumerate(layers):
        result[index] = {}
        for role in ROLES:
            relative = structure.roles[role]
            try:
                module = layer.get_submodule(relative)
            except AttributeError as error:
                raise ValueError(
                    f"Layer {index} of {type(model).__name__} has no module {relative!r} "
                    f"for role {role!r}"
                ) from error
            if not isinstance(module, nn.Linear):
                raise ValueError(
                    f"Module {relative!r} of layer {index} is a {type(module).__name__}, "
                    f"not an nn.Linear"
                )
            result[index][role] = (f"{layers_name}.{index}.{relative}", module)
    return result


def find_linears(model: nn.Module, roles=ROLES) -> dict[str, nn.Linear]:
    """The linears filling ``roles`` in every layer, keyed by full dotted name.

    This is the entry point for patching code (mask parametrizations): it reports what matched
    through the returned mapping and never silently patches nothing.

    Raises
    ------
    ValueError
        If a role is unknown, or if nothing matched.
    """
    roles = tuple(roles)
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise ValueError(f"Unknown roles {unknown}; roles are {list(ROLES)}")
    matched = {
        name: module
        for layer in linear_modules(model).values()
        for role, (name, module) in layer.items()
        if role in roles
    }
    if not matched:
        raise ValueError(f"No linear matched roles {list(roles)} in {type(model).__name__}")
    return matched


def weight_out_in(module: nn.Module) -> Tensor:
    """The module's weight as ``(out_features, in_features)``.

    ``nn.Linear`` already stores ``(out, in)``; HF ``Conv1D`` (GPT-2 family) stores ``(in, out)``
    and is transposed. The result is a view: writing to it writes the weight.

    Raises
    ------
    TypeError
        If the module is neither.
    """
    if isinstance(module, nn.Linear):
        return module.weight
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return module.weight.t()
    raise TypeError(f"Cannot read an (out, in) weight from a {type(module).__name__}")
