"""Transformer classifiers for training and pruning: a small DeiT and a small BERT built in code,
loading either from a folder, and calling either on a batch of its inputs."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import (AutoConfig, AutoModelForImageClassification,
                          AutoModelForSequenceClassification, BertConfig,
                          BertForSequenceClassification, DeiTConfig, DeiTForImageClassification)
from transformers.modeling_utils import PreTrainedModel

__all__ = ["SEQUENCE_MODEL_TYPES", "auto_class_for", "build_small_bert", "build_small_deit",
           "deit_token_count", "load_model", "model_inputs", "small_bert_config",
           "small_deit_config"]

#: ``config.model_type`` values of sequence classifiers (token ids in); the rest take images.
SEQUENCE_MODEL_TYPES = ("bert",)


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


def small_bert_config(vocab_size: int = 21, max_position_embeddings: int = 66,
                      hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                      intermediate_size: int = 128, num_labels: int = 10, *,
                      dropout: float = 0.0, pad_token_id: int = 0) -> BertConfig:
    """Build the configuration of a small ``BertForSequenceClassification`` whose encoder
    matches the ``tiny`` preset like :func:`small_deit_config`'s: hidden 64, 4 heads of 16,
    FFN 128, 2 layers. Defaults fit the digits sequences (:mod:`sw.data.sequences`: 21 tokens,
    66 positions). Token, position and token-type embeddings and the pooler are BERT's own.

    Raises
    ------
    ValueError
        If ``hidden_size`` is not a multiple of ``num_heads``.
    """
    if hidden_size % num_heads:
        raise ValueError(f"Hidden size {hidden_size} is not a multiple of {num_heads} heads")
    return BertConfig(
        vocab_size=vocab_size, max_position_embeddings=max_position_embeddings,
        hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
        intermediate_size=intermediate_size, hidden_act="gelu",
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
        pad_token_id=pad_token_id, num_labels=num_labels,
        id2label={index: str(index) for index in range(num_labels)},
        label2id={str(index): index for index in range(num_labels)})


def build_small_bert(config: BertConfig | None = None) -> BertForSequenceClassification:
    """A freshly initialised ``BertForSequenceClassification`` (seed torch first)."""
    return BertForSequenceClassification(config if config is not None else small_bert_config())


def auto_class_for(config):
    """The transformers Auto class that builds a classifier of ``config``'s architecture."""
    if getattr(config, "model_type", None) in SEQUENCE_MODEL_TYPES:
        return AutoModelForSequenceClassification
    return AutoModelForImageClassification


def model_inputs(model: torch.nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """The keyword arguments that run ``model`` on ``batch``: ``pixel_values`` for an image
    classifier; for a sequence classifier ``input_ids`` and the attention mask that hides
    ``config.pad_token_id`` (padding is the only thing a batch of ids does not say itself)."""
    config = model.config
    if getattr(config, "model_type", None) in SEQUENCE_MODEL_TYPES:
        pad = getattr(config, "pad_token_id", None)
        mask = torch.ones_like(batch) if pad is None else (batch != pad).long()
        return {"input_ids": batch, "attention_mask": mask}
    return {"pixel_values": batch}


def load_model(directory: str | os.PathLike, *, token_pruning: bool = True) -> PreTrainedModel:
    """Load an image or sequence classifier saved with ``save_pretrained`` from a local
    directory, in eval mode (``AutoModelForSequenceClassification`` for BERT).

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
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
        model = auto_class_for(config).from_pretrained(directory, local_files_only=True)
    if token_pruning:
        restore_token_pruning(model)
    return model.eval()
