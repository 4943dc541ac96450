"""Integer whole-model runner for HF BERT sequence classifiers (post-LN encoder).

What the host does and what is integer, per sequence of ``T`` tokens and width ``d``:

1. Embedding sum (host, a table lookup): the word, position and token-type embedding rows of
   each token are summed as HF does (float32: word + token type, then + position) and quantized
   to int16 (``RESIDUAL_BITS``) at the calibrated scale of the embedding LayerNorm's input.
   No arithmetic on activations happens here: it is three table reads and two adds per value,
   which the host may do (or precompute per token id, position and type).
2. Embedding LayerNorm: integer (``layernorm_int``, 16-bit input), int8 output at layer 0's
   calibrated input scale; this is layer 0's input.
3. Every encoder layer: ``encoder_layer_int`` with a post-LN layer (``norm="post"``); each
   layer's int8 output is the next layer's input.
4. Pooler dense: integer (``linear_int`` of ``quantize_linear`` constants) on the CLS row of the
   last layer's output, int8 output at the calibrated scale of the pooler dense's output.
5. Pooler tanh and the classifier: float, on the host (documented host step, like
   ``IntegerDeiT``'s head): the int8 pooler output is dequantized, ``tanh`` is applied (``d``
   evaluations per sequence: 64 for the digits BERT, 768 for bert_base) and the float
   classifier (``d x classes`` multiply-adds) gives the logits. No integer tanh kernel exists.

Padding: no attention mask reaches the integer layers. At batch 1 a sequence runs at its true
length. :func:`predict` groups a batch's sequences by true length (the count of non-padding
tokens; padding must be at the end) and runs each group at that length, which is exactly batch
1's result; the digits sequences all have 66 tokens, so they run as one batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from sw.golden.encoder_layer import RESIDUAL_BITS, encoder_layer_int, quantize_encoder_layer
from sw.golden.gemm import linear_int
from sw.golden.kernels import LayerNormConstants, layernorm_constants, layernorm_int
from sw.progress import progress_bar
from sw.pruning.structures import layer_structure, structure_for
from sw.quantize.calibration import calibrate, encoder_layers
from sw.quantize.linear import QuantizedLinear, quantize_linear, quantize_tensor

__all__ = ["IntegerBert", "quantize_bert", "predict", "sequence_lengths"]


def _backbone(model):
    """The ``BertModel`` of a task model (or the model itself)."""
    return getattr(model, "bert", None) or model


def _as_numpy(values) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(
        values)


def sequence_lengths(attention_mask) -> np.ndarray:
    """True length of each sequence of a ``(B, T)`` mask whose padding is at the end.

    Raises
    ------
    ValueError
        If a sequence has padding before a real token (not right-padded).
    """
    mask = _as_numpy(attention_mask).astype(bool)
    lengths = mask.sum(axis=1)
    prefix = np.arange(mask.shape[1])[None, :] < lengths[:, None]
    if not np.array_equal(mask, prefix):
        raise ValueError("attention_mask must be ones then zeros (right padding) in every row")
    return lengths


@dataclass(frozen=True, eq=False)
class IntegerBert:
    """An HF ``BertForSequenceClassification`` with an integer embedding LayerNorm, encoder and
    pooler dense (see the module docstring for what stays on the host)."""

    model: torch.nn.Module               #: the float model (embedding tables and head are used)
    layers: list                         #: IntegerEncoderLayer (norm="post") per encoder layer
    embedding_scale: float               #: int16 scale of the embedding sum
    embedding_layernorm: LayerNormConstants   #: int16 in, int8 out at ``input_scale``
    input_scale: float                   #: int8 scale of layer 0's input
    output_scale: float                  #: int8 scale of the last layer's output
    pooler: QuantizedLinear              #: the pooler dense, int8 in and out
    pooler_scale: float                  #: int8 scale of the pooler dense's output

    @torch.no_grad()
    def embed(self, input_ids, token_type_ids=None) -> np.ndarray:
        """The host's embedding sum of ``(B, T)`` ids as int16 values ``(B, T, d)``."""
        embeddings = _backbone(self.model).embeddings
        ids = torch.as_tensor(input_ids)
        positions = torch.arange(ids.shape[-1]).expand_as(ids)
        types = torch.zeros_like(ids) if token_type_ids is None else torch.as_tensor(
            token_type_ids)
        total = (embeddings.word_embeddings(ids) + embeddings.token_type_embeddings(types)
                 + embeddings.position_embeddings(positions))
        return quantize_tensor(total.double().numpy(), self.embedding_scale, RESIDUAL_BITS)

    def encode(self, input_ids, token_type_ids=None, *, trace: list | None = None
               ) -> np.ndarray:
        """int8 output ``(B, T, d)`` of the last encoder layer, every sequence of ``input_ids``
        run at the full length ``T`` (no mask). ``trace``: if given, one dict of intermediate
        tensors per layer is appended (``encoder_layer_int``'s trace)."""
        x = layernorm_int(self.embed(input_ids, token_type_ids), self.embedding_layernorm)
        for layer in self.layers:
            record = {} if trace is not None else None
            x = encoder_layer_int(layer, x, trace=record)
            if trace is not None:
                trace.append(record)
        return x

    def pooled(self, input_ids, token_type_ids=None) -> np.ndarray:
        """int8 pooler dense output (before tanh) ``(B, d)``: the CLS row of the encoder."""
        cls = self.encode(input_ids, token_type_ids)[..., 0, :]
        return linear_int(cls, self.pooler.weight, self.pooler.bias, self.pooler.multiplier,
                          self.pooler.shift)

    @torch.no_grad()
    def logits(self, input_ids, token_type_ids=None) -> np.ndarray:
        """Class logits (float): host tanh and classifier on the dequantized pooler output."""
        return self.head(self.pooled(input_ids, token_type_ids))

    def head(self, pooled) -> np.ndarray:
        """The host's step after the pooler dense: the int8 pooler output ``(N, d)`` (this
        model's or the accelerator's) dequantized at ``pooler_scale``, ``tanh``, and the float
        classifier; float logits ``(N, classes)``."""
        values = np.tanh(np.asarray(pooled) * self.pooler_scale)
        classifier = self.model.classifier
        with torch.no_grad():
            return (torch.as_tensor(values, dtype=classifier.weight.dtype) @ classifier.weight.T
                    + classifier.bias).double().numpy()


@torch.no_grad()
def quantize_bert(model, calibration_inputs, *, kept_heads=None, kept_ffn=None,
                  batch_size: int = 64, progress: bool = True) -> IntegerBert:
    """Calibrate on ``calibration_inputs`` (token ids ``(N, T)``, padding masked through
    ``sw.models.model_inputs``, or a mapping of ``input_ids`` / ``attention_mask`` /
    ``token_type_ids`` tensors) and quantize the embedding LayerNorm, every encoder layer and
    the pooler dense.

    ``kept_heads[i]`` / ``kept_ffn[i]`` optionally select the heads and neurons layer ``i``
    keeps (see ``quantize_encoder_layer``).

    Raises
    ------
    ValueError
        If the model is not a BERT (post-LN) with a pooler.
    """
    model.eval()
    structure = structure_for(model)
    if structure.norm != "post":
        raise ValueError(f"quantize_bert needs a post-LN model, not {structure.model_type!r} "
                         "(use sw.golden.deit_int.quantize_model)")
    backbone = _backbone(model)
    if getattr(backbone, "pooler", None) is None:
        raise ValueError("quantize_bert needs BERT's pooler (add_pooling_layer=True)")
    seen = {"embedding": 0.0, "pooler": 0.0}

    def largest(point, tensor):
        seen[point] = max(seen[point], float(tensor.abs().max()))

    handles = [
        backbone.embeddings.LayerNorm.register_forward_pre_hook(
            lambda module, inputs: largest("embedding", inputs[0])),
        backbone.pooler.dense.register_forward_hook(
            lambda module, inputs, output: largest("pooler", output)),
    ]
    try:
        ranges = calibrate(model, calibration_inputs, batch_size=batch_size, progress=progress)
    finally:
        for handle in handles:
            handle.remove()
    head_dim = structure.head_dim(model.config)
    hf_layers = encoder_layers(model)
    layers = [quantize_encoder_layer(
        layer, ranges[index], head_dim=head_dim,
        kept_heads=None if kept_heads is None else kept_heads[index],
        kept_ffn=None if kept_ffn is None else kept_ffn[index],
        structure=layer_structure(layer))
        for index, layer in enumerate(hf_layers)]
    input_scale = layers[0].scales["input"]
    output_scale = layers[-1].scales["output"]
    embedding_scale = max(seen["embedding"], 1e-8) / ((1 << (RESIDUAL_BITS - 1)) - 1)
    pooler_scale = max(seen["pooler"], 1e-8) / 127
    norm, dense = backbone.embeddings.LayerNorm, backbone.pooler.dense
    return IntegerBert(
        model=model, layers=layers, embedding_scale=embedding_scale,
        embedding_layernorm=layernorm_constants(norm.weight.double().numpy(),
                                                norm.bias.double().numpy(), input_scale,
                                                in_width=RESIDUAL_BITS),
        input_scale=input_scale, output_scale=output_scale,
        pooler=quantize_linear(dense.weight.double().numpy(), dense.bias.double().numpy(),
                               input_scale=output_scale, output_scale=pooler_scale),
        pooler_scale=pooler_scale)


def predict(integer_model: IntegerBert, input_ids, *, attention_mask=None, token_type_ids=None,
            batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Integer logits ``(N, classes)`` of ``input_ids`` ``(N, T)`` in batches.

    ``attention_mask`` (ones then zeros per row; default: every token real, or, when
    ``input_ids`` is a mapping, its ``attention_mask``): each sequence runs at its true length,
    sequences of equal length together, which equals running each alone (batch 1).
    """
    if isinstance(input_ids, Mapping):
        attention_mask = input_ids.get("attention_mask", attention_mask)
        token_type_ids = input_ids.get("token_type_ids", token_type_ids)
        input_ids = input_ids["input_ids"]
    ids = _as_numpy(input_ids).astype(np.int64)
    types = None if token_type_ids is None else _as_numpy(token_type_ids).astype(np.int64)
    lengths = (np.full(len(ids), ids.shape[1]) if attention_mask is None
               else sequence_lengths(attention_mask))
    logits = np.zeros((len(ids), integer_model.model.config.num_labels))
    chunks = [(length, rows[start:start + batch_size])
              for length in np.unique(lengths)
              for rows in [np.flatnonzero(lengths == length)]
              for start in range(0, len(rows), batch_size)]
    for length, rows in progress_bar(chunks, enabled=progress, desc="integer model",
                                     unit="batch"):
        logits[rows] = integer_model.logits(
            torch.as_tensor(ids[rows, :length]),
            None if types is None else torch.as_tensor(types[rows, :length]))
    return logits
