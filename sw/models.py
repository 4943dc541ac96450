"""Vision transformer models for training and pruning: a small DeiT built in code, and loading."""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoModelForImageClassification, DeiTConfig, DeiTForImageClassification
from transformers.modeling_utils import PreTrainedModel

__all__ = ["build_small_deit", "deit_token_count", "load_model", "small_deit_config"]


def small_deit_config(image_size: int = 32, patch_size: int = 4, hidden_size: int = 64,
                      num_layers: int = 2, num_heads: int = 4, intermediate_size: int = 128,
                      num_labels: int = 10, *, num_channels: int = 3,
                      dropout: float = 0.0) -> DeiTConfig:
    """Build the configuration of a small DeiT whose encoder matches the ``tiny`` preset.

    Defaults: hidden 64, 4 heads of 16, FFN 128, 2 layers. HF DeiT prepends a CLS and a
    distillation token to the patches, so a 32x32 image with 4x4 patches gives
    ``(32 / 4) ** 2 + 2 = 66`` tokens (see :func:`deit_token_count`). The classifier reads only
    the CLS token.

    Raises
    ------
    ValueError
        If ``hidden_size`` is not a multiple of ``num_heads`` or ``image_size`` of ``patch_size``.
    """
    if hidden_size % num_heads:
        raise ValueError(f"Hidden size {hidden_size} is not a multiple of {num_heads} heads")
    if image_size % patch_size:
        raise ValueError(f"Image size {image_size} is not a multiple of patch size {patch_size}")
    return DeiTConfig(
        image_size=image_size, patch_size=patch_size, num_channels=num_channels,
        hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
        intermediate_size=intermediate_size, hidden_act="gelu",
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
        num_labels=num_labels,
        id2label={index: str(index) for index in range(num_labels)},
        label2id={str(index): index for index in range(num_labels)})


def deit_token_count(config: DeiTConfig) -> int:
    """Sequence length of the encoder: patches plus the CLS and distillation tokens."""
    return (config.image_size // config.patch_size) ** 2 + 2


def build_small_deit(config: DeiTConfig | None = None) -> DeiTForImageClassification:
    """A freshly initialised ``DeiTForImageClassification`` (seed torch first for fixed weights)."""
    return DeiTForImageClassification(config if config is not None else small_deit_config())


def load_model(directory: str | os.PathLike, *, token_pruning: bool = True) -> PreTrainedModel:
    """Load an image classifier saved with ``save_pretrained`` from a local directory, in eval mode.

    Only local directories are accepted: nothing is downloaded. This restores every output
    folder of ``sw/prune.py`` (``pruned/``, ``shrunk/``, ``filled/``) to the function its
    pruning report measured: a shrunk model (a directory with ``surgery.json``, see
    :mod:`sw.pruning.artifacts`) is rebuilt with its per-layer widths, and the token gathers
    recorded in ``config.json`` (``token_pruning``) are installed again
    (:func:`sw.pruning.tokens.restore_token_pruning`); ``token_pruning=False`` leaves them out
    (every token runs, as for the teacher).

    Raises
    ------
    FileNotFoundError
        If ``directory`` does not exist or holds no ``config.json``.
    ValueError
        If ``config.json``'s ``token_pruning`` entry is malformed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: model directory not found")
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory}: no config.json (not a save_pretrained directory)")
    from sw.pruning.artifacts import is_shrunk, load_shrunk
    from sw.pruning.tokens import restore_token_pruning
    if is_shrunk(directory):
        model = load_shrunk(directory)
    else:
        model = AutoModelForImageClassification.from_pretrained(directory, local_files_only=True)
    if token_pruning:
        restore_token_pruning(model)
    return model.eval()
