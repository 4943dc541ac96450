"""EViT-style token pruning for HF DeiT / ViT, as a patch of the encoder layers' forward.

At each configured layer, after attention and the first residual add, the layer keeps the
protected tokens (CLS; DeiT's distillation token too) and the ``keep_count(candidates,
keep_rate)`` candidates that the CLS token attends to most (attention averaged over the layer's
heads, ties to the lower index), in their original order, and appends one fused token: the
average of the dropped rows weighted by their attention (or drops them, ``fuse=False``). The
FFN and every later layer then work on fewer rows. ``sw.golden.token_select`` is the integer
version of the same rule; both take the keep count from :func:`keep_count`.

During fine-tuning the keep rate can warm up: it follows the same cubic schedule as the weight
pruning threshold (nn_pruning's, with the recipe's ``initial_warmup`` / ``final_warmup``), from
1.0 to the target rate, advanced by :meth:`TokenPruningPatch.on_step`. Evaluation (``eval()``)
always uses the target rate, as the weight masks use the final threshold.

:func:`patch_token_pruning` records the gathers in the model's config (``token_pruning``:
keep rate, layers, fuse), so ``save_pretrained`` keeps them and :func:`restore_token_pruning`
(called by :func:`sw.models.load_model`) installs them again on reload.
"""

from __future__ import annotations

import types
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor, nn

from sw.golden.encoder_layer import PROBABILITY_BITS
from sw.golden.token_select import keep_count

from .methods.schedule import ThresholdSchedule
from .structures import encoder_layers, structure_for

__all__ = ["CONFIG_FIELD", "PROTECTED_TOKENS", "TokenGather", "TokenPruningArgs",
           "TokenPruningPatch", "WARMUP_STAGES", "patch_token_pruning", "restore_token_pruning"]

#: The attribute of a model's config (a key of its ``config.json``) recording its gathers.
CONFIG_FIELD = "token_pruning"
#: The fields of :class:`TokenPruningArgs` that fix an evaluated model's function.
_RECORDED = ("keep_rate", "layers", "fuse")

#: Leading tokens that are never pruned, per architecture: ViT's CLS; DeiT's CLS and
#: distillation token (``DeiTForImageClassificationWithTeacher`` reads the latter, and EViT
#: keeps every class token).
PROTECTED_TOKENS = {"deit": 2, "vit": 1}

#: Values of ``TokenPruningArgs.warmup_stage``: the stage whose steps the keep-rate ramp follows.
WARMUP_STAGES = ("prune", "finetune")


@dataclass(frozen=True)
class TokenPruningArgs:
    """The ``"tokens"`` section of a recipe.

    Attributes
    ----------
    keep_rate : float
        Target fraction of the candidate (non-protected) tokens each pruning layer keeps.
    layers : tuple of int
        Encoder layers (0-based) that prune, after their attention.
    fuse : bool
        Fuse the dropped tokens into one token (EViT) instead of dropping them.
    warmup : bool
        Ramp the keep rate from 1.0 down to ``keep_rate`` (otherwise train at ``keep_rate``
        from the first step).
    warmup_stage : str
        When the ramp runs: ``"prune"``, along the weight threshold's cubic schedule in the
        pruning stage; ``"finetune"``, after the weights have settled: every token is kept in
        the pruning stage, and the same cubic shape runs over the masked fine-tune
        (``finetune-masked``; needs ``final_finetune``).
    """

    keep_rate: float = 1.0
    layers: tuple = (0,)
    fuse: bool = True
    warmup: bool = True
    warmup_stage: str = "prune"

    def __post_init__(self):
        if not (isinstance(self.keep_rate, (int, float)) and not isinstance(self.keep_rate, bool)
                and 0.0 < self.keep_rate <= 1.0):
            raise ValueError(f"tokens.keep_rate must lie in (0, 1], not {self.keep_rate!r}")
        layers = self.layers
        if (not isinstance(layers, (list, tuple)) or not layers
                or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in layers)
                or len(set(layers)) != len(layers)):
            raise ValueError(f"tokens.layers must be a non-empty list of distinct layer indices, "
                             f"not {layers!r}")
        object.__setattr__(self, "layers", tuple(sorted(layers)))
        for name in ("fuse", "warmup"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"tokens.{name} must be true or false, not "
                                 f"{getattr(self, name)!r}")
        if self.warmup_stage not in WARMUP_STAGES:
            raise ValueError(f"tokens.warmup_stage must be one of {', '.join(WARMUP_STAGES)}, "
                             f"not {self.warmup_stage!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "TokenPruningArgs":
        """Build from a recipe section; unknown keys raise ``ValueError`` listing the known."""
        known = [spec.name for spec in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"Unknown tokens options {unknown}; known: {', '.join(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["layers"] = list(self.layers)
        return values


class TokenGather(nn.Module):
    """Keeps the protected tokens and the top candidates by CLS attention; fuses the rest.

    ``forward(hidden (B, T, d), probs (B, h, T, T)) -> (B, T', d)``. Holds no parameters.
    """

    def __init__(self, *, keep_rate: float, protected: int, fuse: bool):
        super().__init__()
        self.keep_rate = float(keep_rate)          # target; used in eval mode
        self.current_rate = float(keep_rate)       # training mode (the warm-up moves it)
        self.protected = int(protected)
        self.fuse = bool(fuse)

    def extra_repr(self) -> str:
        return f"keep_rate={self.keep_rate}, protected={self.protected}, fuse={self.fuse}"

    def keep(self, tokens: int) -> int:
        """Candidates kept of a ``tokens``-row input at the rate in force."""
        rate = self.current_rate if self.training else self.keep_rate
        return keep_count(tokens - self.protected, rate)

    def forward(self, hidden: Tensor, probs: Tensor) -> Tensor:
        batch, tokens, width = hidden.shape
        keep = self.keep(tokens)
        if keep == tokens - self.protected:
            return hidden
        heads = probs.shape[1]
        cls_attention = probs[:, :, 0, :].mean(dim=1)                       # (B, T)
        candidates = cls_attention[:, self.protected:]
        # a stable descending sort puts equal scores in increasing index order
        order = torch.sort(candidates.detach(), dim=-1, descending=True, stable=True).indices
        kept = order[:, :keep].sort(dim=-1).values + self.protected
        protected = torch.arange(self.protected, device=hidden.device).expand(batch, -1)
        index = torch.cat([protected, kept], dim=1)
        rows = hidden.gather(1, index[..., None].expand(-1, -1, width))
        if not self.fuse:
            return rows
        dropped = torch.ones_like(cls_attention, dtype=torch.bool)
        dropped.scatter_(1, index, False)
        # The integer unit weights by the summed Q0.8 probabilities plus one LSB (so the
        # weights never sum to 0); the same floor here, in units of the head average.
        weights = (cls_attention + 2.0 ** -PROBABILITY_BITS / heads) * dropped
        fused = (weights[..., None] * hidden).sum(dim=1) / weights.sum(dim=1, keepdim=True)
        return torch.cat([rows, fused[:, None, :]], dim=1)


def _pruning_layer_forward(self, hidden_states, attention_mask=None, **kwargs):
    """``DeiTLayer`` / ``ViTLayer`` forward with a token gather after the attention block."""
    if attention_mask is not None:
        raise ValueError("Token pruning does not support an attention mask")
    residual = hidden_states
    hidden_states = self.layernorm_before(hidden_states)
    hidden_states, probs = self.attention(hidden_states, attention_mask, **kwargs)
    hidden_states = self.dropout(hidden_states) + residual
    hidden_states = self.token_gather(hidden_states, probs)
    residual = hidden_states
    hidden_states = self.layernorm_after(hidden_states)
    hidden_states = self.mlp(hidden_states)
    return self.dropout(hidden_states) + residual


@dataclass
class TokenPruningPatch:
    """The token gathers installed in a model, and the keep-rate warm-up that drives them."""

    args: TokenPruningArgs
    gathers: dict                   #: layer index -> TokenGather
    protected: int
    initial_warmup: float = 1.0
    final_warmup: float = 2.0
    warmup_epochs: int = 1
    epochs: int = 1
    finetune_epochs: int = 1

    def rate_at(self, step: int, total_steps: int, *, stage: str = "prune") -> float:
        """Training keep rate at optimizer ``step`` of ``total_steps`` of ``stage``
        (``"prune"``, the pruning stage, or ``"finetune"``, the masked fine-tune)."""
        if not self.args.warmup or self.args.keep_rate == 1.0:
            return self.args.keep_rate
        if stage != self.args.warmup_stage:
            # before the ramp's stage every token is kept; after it, the target
            return 1.0 if stage == "prune" else self.args.keep_rate
        epochs = self.epochs if stage == "prune" else self.finetune_epochs
        warmup_steps = self.warmup_epochs * total_steps // max(epochs, 1)
        schedule = ThresholdSchedule(
            initial_threshold=1.0, final_threshold=self.args.keep_rate,
            initial_warmup=self.initial_warmup, final_warmup=self.final_warmup,
            warmup_steps=warmup_steps, total_steps=total_steps)
        return schedule.threshold(step)

    def on_step(self, step: int, total_steps: int) -> None:
        """Set every gather's training keep rate for ``step`` of the pruning stage (the
        trainer's step hook)."""
        self._set_rate(self.rate_at(step, total_steps))

    def on_finetune_step(self, step: int, total_steps: int) -> None:
        """Set every gather's training keep rate for ``step`` of the masked fine-tune."""
        self._set_rate(self.rate_at(step, total_steps, stage="finetune"))

    def _set_rate(self, rate: float) -> None:
        for gather in self.gathers.values():
            gather.current_rate = rate

    def finish_warmup(self) -> None:
        """Train at the target rate from now on (the fine-tunes after the pruning stage)."""
        for gather in self.gathers.values():
            gather.current_rate = gather.keep_rate

    def kept_tokens(self, tokens: int, layers: int) -> list[tuple[int, int]]:
        """Rows ``(entering, after the gather)`` of each of ``layers`` layers at the target
        rate, for a ``tokens``-row input."""
        result = []
        for index in range(layers):
            after = tokens
            if index in self.gathers:
                keep = keep_count(tokens - self.protected, self.args.keep_rate)
                dropped = tokens - self.protected - keep
                after = self.protected + keep + (1 if self.args.fuse and dropped else 0)
            result.append((tokens, after))
            tokens = after
        return result


def patch_token_pruning(model: nn.Module, args: TokenPruningArgs, *,
                        initial_warmup: float = 1.0, final_warmup: float = 2.0,
                        warmup_epochs: int = 1, epochs: int = 1,
                        finetune_epochs: int = 1) -> TokenPruningPatch:
    """Install token gathers in ``args.layers`` of an HF DeiT / ViT model (mutates it).

    Switches the model to eager attention (the gather needs the attention probabilities) and
    records the gathers in ``model.config.token_pruning`` (see :func:`restore_token_pruning`).
    The warm-up arguments are the pruning recipe's (``initial_warmup``, ``final_warmup``) and
    training section's (``warmup_epochs``, ``epochs``, ``final_finetune_epochs`` as
    ``finetune_epochs``): the keep rate ramps like the threshold.

    Raises
    ------
    ValueError
        If the model is not a DeiT / ViT, or a layer index does not exist.
    """
    structure = structure_for(model)
    if structure.model_type not in PROTECTED_TOKENS:
        raise ValueError(f"Token pruning supports {sorted(PROTECTED_TOKENS)}, not "
                         f"{structure.model_type!r}")
    _, layers = encoder_layers(model)
    missing = [index for index in args.layers if index >= len(layers)]
    if missing:
        raise ValueError(f"tokens.layers {missing} do not exist: the model has {len(layers)} "
                         f"layers")
    model.set_attn_implementation("eager")
    setattr(model.config, CONFIG_FIELD, {key: value for key, value in args.to_dict().items()
                                         if key in _RECORDED})
    protected = PROTECTED_TOKENS[structure.model_type]
    gathers = {}
    for index in args.layers:
        layer = layers[index]
        layer.token_gather = gathers[index] = TokenGather(
            keep_rate=args.keep_rate, protected=protected, fuse=args.fuse)
        layer.forward = types.MethodType(_pruning_layer_forward, layer)
    return TokenPruningPatch(args=args, gathers=gathers, protected=protected,
                             initial_warmup=initial_warmup, final_warmup=final_warmup,
                             warmup_epochs=warmup_epochs, epochs=epochs,
                             finetune_epochs=finetune_epochs)


def restore_token_pruning(model: nn.Module) -> TokenPruningPatch | None:
    """Install the gathers recorded in ``model.config.token_pruning`` (by
    :func:`patch_token_pruning`, before ``save_pretrained``) at their target keep rate, so a
    reloaded model computes what was evaluated; None when the config records none. Mutates
    ``model``.

    Raises
    ------
    ValueError
        If the recorded entry is malformed (one line naming the field).
    """
    recorded = getattr(model.config, CONFIG_FIELD, None)
    if recorded is None:
        return None
    if not isinstance(recorded, dict) or set(recorded) != set(_RECORDED):
        raise ValueError(f"config.json {CONFIG_FIELD}: expected an object with "
                         f"{', '.join(_RECORDED)}, found {recorded!r}")
    return patch_token_pruning(model, TokenPruningArgs(**recorded, warmup=False))
