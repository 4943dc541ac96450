"""Masked Q/K/V/O/FC1/FC2 linears for block movement pruning, as ``torch.nn.utils.parametrize``.

:func:`patch_model` registers a :class:`BlockMask` parametrization on the weight of every linear
that the architecture table (:mod:`sw.pruning.structures`) names, and a :class:`BiasMask` on its
bias when ``bias_mask`` is set. The parametrization owns the learnable scores (parameters named
``...mask_scores``), binarizes them with the method of its role at the threshold held by the
shared :class:`MaskContext`, and multiplies the weight by the expanded mask. The modules stay
plain ``nn.Linear`` (so :func:`~sw.pruning.structures.linear_modules` and
:func:`~sw.pruning.surgery.apply_surgery` read them unchanged); :meth:`PatchedModel.unpatch`
bakes the masks into the weights and leaves plain linears again.

Score layout per role (``H`` heads of width ``d``; weights ``(out, in)``):

* Q, K, V: attention method, ``attention_block_rows x attention_block_cols`` blocks.
* O: with ``attention_output_with_dense`` the dense method and dense block shape; otherwise the
  attention method with the attention block shape transposed, so O's input columns line up with
  V's head rows.
* FC1, FC2: dense method, ``dense_block_rows x dense_block_cols`` blocks. With a ``1d`` or
  ``1d_alt`` dense submethod, FC1 and FC2 share one :class:`SharedDimensionScores` vector over the
  intermediate dimension: FC1 row ``i`` and FC2 column ``i`` are kept or pruned together, which is
  what makes an FFN neuron removable.
* A ``1d`` / ``1d_alt`` attention submethod gives Q, K, V one score per output row and O one per
  input column (head-aligned in both cases).
* ``tie_attention_heads=True`` (an option of this project, not of nn_pruning) gives each layer one
  score per head shared by Q, K, V rows and O columns, so heads are kept or removed as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .methods import MaskScores, MethodSpec, PruningArgs, SharedDimensionScores, bias_mask
from .structures import ATTENTION_ROLES, linear_modules, structure_for

__all__ = ["BiasMask", "BlockMask", "MaskContext", "PatchInfo", "PatchedModel", "final_masks",
           "patch_model"]

_ONE_D = ("1d", "1d_alt")


class MaskContext:
    """Mutable state every mask of one patched model reads: the current threshold."""

    def __init__(self, threshold: float):
        self.threshold = float(threshold)


class BlockMask(nn.Module):
    """Parametrization ``weight -> weight * mask``; the mask comes from learnable scores.

    Parameters
    ----------
    scores : MaskScores or SharedDimensionScores
        The scores; a shared vector may be registered in several parametrizations.
    orientation : str
        ``"block"`` for :class:`MaskScores`; ``"rows"`` or ``"cols"`` for a shared vector that
        selects output rows (FC1, Q/K/V) or input columns (FC2, O).
    method : MethodSpec
    context : MaskContext
    min_fraction : float
        ``linear_min_parameters``.
    block_shape : tuple of int
        Shape of one scored tile of the weight (for reports).
    """

    def __init__(self, *, scores: nn.Module, orientation: str, method: MethodSpec,
                 context: MaskContext, min_fraction: float, block_shape: tuple[int, int]):
        super().__init__()
        if orientation not in ("block", "rows", "cols"):
            raise ValueError(f"Unknown mask orientation {orientation!r}")
        self.scores = scores
        self.orientation = orientation
        self.method = method
        self.min_fraction = float(min_fraction)
        self.block_shape = tuple(block_shape)
        # A plain attribute, not a submodule: the context is shared and holds no tensors.
        self.context = context

    def mask(self, weight: Tensor) -> Tensor:
        """Weight-shaped mask (0/1, or hard-concrete gates for ``l0``) at the current threshold."""
        function = self.method.mask_function
        threshold = self.context.threshold
        # nn_pruning binarizes a 1d / 1d_alt score vector expanded over the weight's other
        # dimension; that only changes the linear_min_parameters count (binarizers.py).
        rows, cols = weight.shape
        copies = 1
        if self.method.submethod in _ONE_D and self.block_shape == (1, cols):
            copies = cols                     # one score per row (Q/K/V, FC1)
        elif self.method.submethod in _ONE_D and self.block_shape == (rows, 1):
            copies = rows                     # one score per column (O, FC2)
        if self.orientation == "block":
            mask = self.scores.mask(function, threshold, weight=weight,
                                    min_fraction=self.min_fraction, training=self.training,
                                    copies=copies)
        else:
            unit = self.scores.unit_mask(function, threshold, min_fraction=self.min_fraction,
                                         training=self.training, copies=copies)
            if self.orientation == "rows":
                mask = self.scores.fc1_mask(unit, weight.shape[1])
            else:
                mask = self.scores.fc2_mask(unit, weight.shape[0])
        return mask.to(weight.dtype)

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.mask(weight)


class BiasMask(nn.Module):
    """Parametrization ``bias -> bias * bias_mask(weight mask)`` of one linear.

    Holds the linear in a tuple so the module graph stays acyclic.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self._linear = (linear,)

    def keep(self) -> Tensor:
        """Bool ``(out,)``: output ``i`` kept iff weight row ``i`` keeps a weight."""
        linear = self._linear[0]
        weight_mask = linear.parametrizations.weight[0].mask(
            linear.parametrizations.weight.original)
        return bias_mask(weight_mask)

    def forward(self, bias: Tensor) -> Tensor:
        return bias * self.keep().to(bias.dtype)


@dataclass(frozen=True)
class PatchInfo:
    """What was patched on one linear."""

    name: str
    layer: int
    role: str
    method: str
    block_shape: tuple[int, int]
    shared: str | None
    bias_masked: bool


@dataclass
class PatchedModel:
    """A model whose prunable linears carry mask parametrizations.

    Members
    -------
    model : nn.Module
        The patched model (mutated in place by :func:`patch_model`).
    args : PruningArgs
    context : MaskContext
        Set ``context.threshold`` (or call :meth:`set_threshold`) before each step / evaluation.
    patched : dict of str to PatchInfo
        Keyed by the linear's full dotted name.
    attention_scores, dense_scores : list of Tensor
        Each score tensor once, grouped as the regularization groups them.
    """

    model: nn.Module
    args: PruningArgs
    context: MaskContext
    patched: dict[str, PatchInfo]
    attention_scores: list[Tensor] = field(default_factory=list)
    dense_scores: list[Tensor] = field(default_factory=list)

    def set_threshold(self, threshold: float) -> None:
        self.context.threshold = float(threshold)

    def mask_score_parameters(self) -> list[nn.Parameter]:
        """Every distinct score parameter (for the mask-scores optimizer group)."""
        return [*self.attention_scores, *self.dense_scores]

    def summary(self) -> str:
        """One line per patched linear: name, method, block shape, sharing."""
        lines = [f"patched {len(self.patched)} linears:"]
        for info in self.patched.values():
            shared = f", shared {info.shared}" if info.shared else ""
            bias = ", bias masked" if info.bias_masked else ""
            lines.append(f"  {info.name}: {info.method}, blocks {info.block_shape[0]}x"
                         f"{info.block_shape[1]}{shared}{bias}")
        return "\n".join(lines)

    def final_masks(self) -> dict[str, Tensor]:
        """Bool keep-masks at the current threshold, keyed ``"<linear>.weight"`` / ``".bias"``."""
        return final_masks(self)

    @torch.no_grad()
    def unpatch(self) -> nn.Module:
        """Bake the masks into the weights and remove the parametrizations; return the model.

        Mutates the model: it is put in eval mode (``l0`` uses its deterministic gates) and every
        patched linear becomes a plain ``nn.Linear`` whose masked weights (and biases) are zero,
        at the context's current threshold.
        """
        self.model.eval()
        for name in self.patched:
            module = self.model.get_submodule(name)
            # The bias mask reads the weight's parametrization: remove it first.
            if parametrize.is_parametrized(module, "bias"):
                parametrize.remove_parametrizations(module, "bias", leave_parametrized=True)
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        return self.model


def _role_settings(args: PruningArgs, role: str) -> tuple[MethodSpec, tuple[int, int], str]:
    """Method, block shape and regularization group of ``role``."""
    if role in ("fc1", "fc2") or (role == "o" and args.attention_output_with_dense):
        return args.dense_method, (args.dense_block_rows, args.dense_block_cols), "dense"
    block = (args.attention_block_rows, args.attention_block_cols)
    if role == "o":
        block = block[::-1]
    return args.attention_method, block, "attention"


def _check_block_divides(args: PruningArgs, group: str, role: str, name: str, layer: int,
                         block: tuple[int, int], shape: tuple[int, int]) -> None:
    """Name the recipe field and the layer when a block shape does not divide a weight."""
    fields = (("dense_block_rows", "dense_block_cols") if group == "dense"
              else ("attention_block_rows", "attention_block_cols"))
    if group == "attention" and role == "o":        # O's block is the transposed head block
        fields = fields[::-1]
    for size, length, field, axis in zip(block, shape, fields, ("rows", "columns")):
        if length % size:
            raise ValueError(f"pruning.{field} {getattr(args, field)} does not divide the "
                             f"{length} {axis} of {name} (layer {layer}, {role})")


def patch_model(model: nn.Module, args: PruningArgs, *,
                tie_attention_heads: bool = False) -> PatchedModel:
    """Register mask parametrizations on every prunable linear of ``model``; return the patch.

    Mutates the model. The threshold starts at ``args.initial_threshold``.

    Raises
    ------
    ValueError
        If the architecture has no structure table, if both methods are ``"disabled"`` (nothing
        to patch), or if a block shape does not divide a weight.
    """
    structure_for(model)
    layers = linear_modules(model)
    context = MaskContext(args.initial_threshold)
    common = dict(mask_init=args.mask_init, mask_scale=args.mask_scale)
    patch = PatchedModel(model=model, args=args, context=context, patched={})
    num_heads = structure_for(model).num_heads(model.config)
    for index, linears in layers.items():
        shared: dict[str, nn.Module] = {}
        dense_method = args.dense_method
        if dense_method.enabled and dense_method.submethod in _ONE_D:
            fc1 = linears["fc1"][1]
            shared["ffn"] = SharedDimensionScores(size=fc1.out_features, **common)
            patch.dense_scores.append(shared["ffn"].mask_scores)
        if tie_attention_heads and args.attention_method.enabled:
            width = linears["q"][1].out_features
            shared["heads"] = SharedDimensionScores(size=width, block=width // num_heads,
                                                    **common)
            patch.attention_scores.append(shared["heads"].mask_scores)
        for role, (name, module) in linears.items():
            method, block, group = _role_settings(args, role)
            if not method.enabled:
                continue
            rows, cols = module.weight.shape
            sharing = None
            if role in ("fc1", "fc2") and "ffn" in shared:
                scores, sharing = shared["ffn"], "ffn"
                orientation = "rows" if role == "fc1" else "cols"
                block = (1, cols) if role == "fc1" else (rows, 1)
            elif role in ATTENTION_ROLES and "heads" in shared:
                # Tied heads: O follows the attention method whatever attention_output_with_dense.
                method, group = args.attention_method, "attention"
                scores, sharing = shared["heads"], "heads"
                head_dim = (cols if role == "o" else rows) // num_heads
                orientation = "cols" if role == "o" else "rows"
                block = (rows, head_dim) if role == "o" else (head_dim, cols)
            else:
                orientation = "block"
                if method.submethod in _ONE_D:
                    block = (rows, 1) if role in ("o", "fc2") else (1, cols)
                else:
                    _check_block_divides(args, group, role, name, index, block, (rows, cols))
                scores = MaskScores(rows=rows, cols=cols, block_rows=block[0],
                                    block_cols=block[1], **common)
                (patch.attention_scores if group == "attention"
                 else patch.dense_scores).append(scores.mask_scores)
            parametrize.register_parametrization(module, "weight", BlockMask(
                scores=scores, orientation=orientation, method=method, context=context,
                min_fraction=args.linear_min_parameters, block_shape=block))
            bias_masked = bool(args.bias_mask and module.bias is not None)
            if bias_masked:
                parametrize.register_parametrization(module, "bias", BiasMask(module))
            spelled = method.name + ("" if method.submethod == "default"
                                     else f":{method.submethod}")
            patch.patched[name] = PatchInfo(name=name, layer=index, role=role, method=spelled,
                                            block_shape=tuple(block), shared=sharing,
                                            bias_masked=bias_masked)
    if not patch.patched:
        raise ValueError(
            f"Nothing to patch in {type(model).__name__}: both dense_pruning_method and "
            f"attention_pruning_method are 'disabled'")
    return patch


@torch.no_grad()
def final_masks(patch: PatchedModel) -> dict[str, Tensor]:
    """Bool keep-masks of every patched parameter at the current threshold, for ``apply_surgery``.

    Keys are full parameter names (``"<linear>.weight"``, ``"<linear>.bias"``). Computed in eval
    mode (deterministic ``l0`` gates; a gate above zero counts as kept); the model's training
    mode is restored afterwards. A bias without a bias mask gets an all-True mask.
    """
    was_training = patch.model.training
    patch.model.eval()
    try:
        masks = {}
        for name in patch.patched:
            module = patch.model.get_submodule(name)
            weight_mask = module.parametrizations.weight[0].mask(
                module.parametrizations.weight.original) != 0
            masks[f"{name}.weight"] = weight_mask
            if module.bias is not None:
                masks[f"{name}.bias"] = (module.parametrizations.bias[0].keep()
                                         if parametrize.is_parametrized(module, "bias")
                                         else torch.ones(weight_mask.shape[0], dtype=torch.bool))
        return masks
    finally:
        patch.model.train(was_training)
