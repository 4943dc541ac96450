"""Pruning policies of nn_pruning: the method registry and the validated pruning arguments.

``PRUNING_METHODS`` maps each method name to a mask function of the shared signature
``(scores, threshold, *, weight=None, min_fraction=0.0, training=False) -> Tensor`` (see
``binarizers``). ``PruningArgs`` holds every nn_pruning ``SparseTrainingArguments`` field this
project uses, under the same names and defaults, and round-trips through plain dicts for recipe
files.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .binarizers import (
    l0_mask,
    magnitude_mask,
    sigmoied_threshold_mask,
    threshold_mask,
    top_k_mask,
)
from .regularization import REGULARIZATIONS, regularization_loss
from .schedule import ThresholdSchedule
from .scores import MASK_INITS, MaskScores, SharedDimensionScores, bias_mask

__all__ = [
    "IGNORED_SEED_PARAMETERS",
    "MASK_INITS",
    "PRUNING_METHODS",
    "PRUNING_SUBMETHODS",
    "REGULARIZATIONS",
    "MaskScores",
    "MethodSpec",
    "PruningArgs",
    "SharedDimensionScores",
    "ThresholdSchedule",
    "bias_mask",
    "regularization_loss",
]

PRUNING_METHODS = {
    "topK": top_k_mask,
    "threshold": threshold_mask,
    "sigmoied_threshold": sigmoied_threshold_mask,
    "l0": l0_mask,
    "magnitude": magnitude_mask,
}

# "default": one score per block; "1d" / "1d_alt": one score per row (and per column), as in
# nn_pruning's "method:submethod" spelling (e.g. "sigmoied_threshold:1d_alt").
PRUNING_SUBMETHODS = ("default", "1d", "1d_alt")

# Methods whose threshold is a fraction in [0, 1] (kept fraction, or a sigmoid level).
_FRACTION_THRESHOLD_METHODS = ("topK", "magnitude", "sigmoied_threshold")

# nn_pruning arguments outside this project's scope (Ampere 2:4 sparsity, QAT, rewinding,
# LayerNorm/GeLU patches, decoder lambdas). A recipe may carry them only at these defaults.
IGNORED_SEED_PARAMETERS = {
    "ampere_pruning_method": "disabled",
    "qat": False,
    "qconfig": "default",
    "rewind_model_name_or_path": None,
    "layer_norm_patch": False,
    "layer_norm_patch_steps": 50000,
    "layer_norm_patch_start_delta": 0.99,
    "gelu_patch": False,
    "gelu_patch_steps": 50000,
    "decoder_attention_lambda": None,
    "decoder_dense_lambda": None,
    "initial_ampere_temperature": 0.0,
    "final_ampere_temperature": 20.0,
}


@dataclass(frozen=True)
class MethodSpec:
    """A parsed ``"method[:submethod]"`` string.

    Attributes
    ----------
    name : str
        ``"disabled"`` or a key of ``PRUNING_METHODS``.
    submethod : str
        One of ``PRUNING_SUBMETHODS``.
    """

    name: str
    submethod: str = "default"

    @classmethod
    def parse(cls, text: str, *, field_name: str = "pruning method") -> "MethodSpec":
        """Parse ``"topK"`` or ``"sigmoied_threshold:1d_alt"``.

        Raises
        ------
        ValueError
            On an unknown method or submethod; the message lists the known ones.
        """
        if not isinstance(text, str):
            raise ValueError(f"{field_name} must be a string, not {text!r}")
        name, _, submethod = text.partition(":")
        submethod = submethod or "default"
        known = ["disabled", *PRUNING_METHODS]
        if name not in known:
            raise ValueError(
                f"Unknown {field_name} {name!r}; known: {', '.join(known)}")
        if submethod not in PRUNING_SUBMETHODS:
            raise ValueError(
                f"Unknown {field_name} submethod {submethod!r}; known: "
                f"{', '.join(PRUNING_SUBMETHODS)}")
        return cls(name=name, submethod=submethod)

    @property
    def enabled(self) -> bool:
        """False for ``"disabled"``."""
        return self.name != "disabled"

    @property
    def mask_function(self):
        """The registry entry for this method.

        Raises
        ------
        ValueError
            For ``"disabled"``.
        """
        if not self.enabled:
            raise ValueError("A disabled pruning method has no mask function")
        return PRUNING_METHODS[self.name]


def _is_real(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


@dataclass(frozen=True)
class PruningArgs:
    """nn_pruning's sparse-training arguments used here; same names, same defaults.

    See ``docs/pruning-methods.md`` for each field's meaning.

    Raises
    ------
    ValueError
        On construction, for any field of the wrong type or out of range, with a message naming
        the field.
    """

    mask_scores_learning_rate: float = 1e-2
    dense_pruning_method: str = "topK"
    attention_pruning_method: str = "topK"
    attention_output_with_dense: bool = True
    bias_mask: bool = True
    mask_init: str = "constant"
    mask_scale: float = 0.0
    dense_block_rows: int = 1
    dense_block_cols: int = 1
    attention_block_rows: int = 1
    attention_block_cols: int = 1
    initial_threshold: float = 1.0
    final_threshold: float = 0.5
    initial_warmup: float = 1
    final_warmup: float = 2
    regularization: str = "disabled"
    regularization_final_lambda: float = 0.0
    attention_lambda: float = 1.0
    dense_lambda: float = 1.0
    distil_teacher_name_or_path: str | None = None
    distil_alpha_ce: float = 0.5
    distil_alpha_teacher: float = 0.5
    distil_temperature: float = 2.0
    final_finetune: bool = False
    linear_min_parameters: float = 0.005
    eval_with_current_patch_params: bool = False

    def __post_init__(self):
        dense = MethodSpec.parse(self.dense_pruning_method, field_name="dense_pruning_method")
        attention = MethodSpec.parse(
            self.attention_pruning_method, field_name="attention_pruning_method")
        for name in ("attention_output_with_dense", "bias_mask", "final_finetune",
                     "eval_with_current_patch_params"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, not {getattr(self, name)!r}")
        for name in ("dense_block_rows", "dense_block_cols", "attention_block_rows",
                     "attention_block_cols"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        for name in ("mask_scores_learning_rate", "mask_scale", "initial_threshold",
                     "final_threshold", "initial_warmup", "final_warmup",
                     "regularization_final_lambda", "attention_lambda", "dense_lambda",
                     "distil_alpha_ce", "distil_alpha_teacher", "distil_temperature",
                     "linear_min_parameters"):
            if not _is_real(getattr(self, name)):
                raise ValueError(
                    f"{name} must be a finite real number, not {getattr(self, name)!r}")
        for name in ("mask_scores_learning_rate", "distil_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")
        for name in ("initial_warmup", "final_warmup", "regularization_final_lambda",
                     "attention_lambda", "dense_lambda", "distil_alpha_ce",
                     "distil_alpha_teacher"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, not {getattr(self, name)!r}")
        if self.mask_init not in MASK_INITS:
            raise ValueError(
                f"Unknown mask_init {self.mask_init!r}; known: {', '.join(MASK_INITS)}")
        if self.mask_init == "uniform" and self.mask_scale < 0:
            raise ValueError(f"mask_scale must be non-negative for uniform mask_init, "
                             f"not {self.mask_scale!r}")
        if self.regularization not in REGULARIZATIONS:
            raise ValueError(f"Unknown regularization {self.regularization!r}; known: "
                             f"{', '.join(REGULARIZATIONS)}")
        if self.regularization != "disabled" and self.final_threshold == 0:
            raise ValueError("final_threshold must be non-zero when regularization is enabled: "
                             "the lambda ramp divides by it")
        if not 0.0 <= self.linear_min_parameters <= 1.0:
            raise ValueError(f"linear_min_parameters must be a fraction in [0, 1], "
                             f"not {self.linear_min_parameters!r}")
        for spec in (dense, attention):
            if spec.name in _FRACTION_THRESHOLD_METHODS:
                for name in ("initial_threshold", "final_threshold"):
                    if not 0.0 <= getattr(self, name) <= 1.0:
                        raise ValueError(
                            f"{name} must be in [0, 1] for method {spec.name!r}, "
                            f"not {getattr(self, name)!r}")
        teacher = self.distil_teacher_name_or_path
        if teacher is not None and (not isinstance(teacher, str) or not teacher):
            raise ValueError(f"distil_teacher_name_or_path must be None or a non-empty string, "
                             f"not {teacher!r}")

    @property
    def dense_method(self) -> MethodSpec:
        """Parsed ``dense_pruning_method``."""
        return MethodSpec.parse(self.dense_pruning_method)

    @property
    def attention_method(self) -> MethodSpec:
        """Parsed ``attention_pruning_method``."""
        return MethodSpec.parse(self.attention_pruning_method)

    def schedule(self, *, warmup_steps: int, total_steps: int) -> ThresholdSchedule:
        """The threshold schedule of these arguments for a run of ``total_steps``."""
        return ThresholdSchedule(
            initial_threshold=self.initial_threshold, final_threshold=self.final_threshold,
            initial_warmup=self.initial_warmup, final_warmup=self.final_warmup,
            warmup_steps=warmup_steps, total_steps=total_steps,
            regularization_final_lambda=self.regularization_final_lambda)

    def to_dict(self) -> dict:
        """Plain dict of every field (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PruningArgs":
        """Build from a recipe dict; missing fields take their defaults.

        Keys of ``IGNORED_SEED_PARAMETERS`` are accepted only at their nn_pruning defaults and
        dropped.

        Raises
        ------
        ValueError
            On an unknown key (the message lists the known ones), an ignored parameter set away
            from its default, or an invalid value.
        """
        known = [f.name for f in fields(cls)]
        kwargs = {}
        for key, value in values.items():
            if key in known:
                kwargs[key] = value
            elif key in IGNORED_SEED_PARAMETERS:
                default = IGNORED_SEED_PARAMETERS[key]
                if value != default:
                    raise ValueError(
                        f"{key} is not supported by this project; leave it at its default "
                        f"{default!r}, not {value!r}")
            else:
                raise ValueError(f"Unknown pruning parameter {key!r}; known: {', '.join(known)}")
        return cls(**kwargs)
