"""What is in a weight image, per tensor: the manifest (JSON) and the printed summary table.

Both are computed from a loaded :class:`~sw.image.format.WeightImage` alone, so ``--inspect``
of an existing image prints exactly what the export printed.
"""

from __future__ import annotations

import zlib

import numpy as np

from sw.image.format import (FORMAT_VERSION, NO_LAYER, STAGE_TENSORS, TENSOR_ROLES, SectionKind,
                             WeightImage)
from sw.image.format import dense_shape as unpruned_shape
from sw.image.golden import stage_role_of
from sw.packing import block_sparse_size, pack_array, pack_block_sparse

__all__ = ["dense_shape", "tensor_records", "byte_breakdown", "image_totals", "manifest",
           "summary_table"]


#: The sections that hold a linear: its BCSR structure and constants, and its streamed blocks.
LINEAR_SECTIONS = (SectionKind.LINEAR, SectionKind.WEIGHT_STREAM)


def dense_shape(image: WeightImage, role: str) -> tuple[int, int]:
    """``(out, in)`` of a linear in the unpruned model."""
    return unpruned_shape(role, image.model)


def _stats(values: np.ndarray, dense_size: int, packed: bytes) -> dict:
    values = np.asarray(values)
    nonzeros = int(np.count_nonzero(values))
    return {"nonzeros": nonzeros, "density": nonzeros / dense_size if dense_size else 0.0,
            "min": values.min().item() if values.size else 0,
            "max": values.max().item() if values.size else 0,
            "crc32": f"{zlib.crc32(packed):08x}"}


def tensor_records(image: WeightImage) -> list[dict]:
    """One record per stored tensor: linear weights and biases, LayerNorm gammas and betas.

    ``density`` is non-zeros over the tensor's size in the unpruned model; ``crc32`` is the
    CRC-32 of the tensor's bytes as the image stores them (for a weight: its BCSR row_ptr,
    col_idx and blocks); a weight's ``section_bytes`` are its LINEAR and WEIGHT_STREAM
    sections together.
    """
    records = []
    section_bytes = {}
    for entry in image.sections:
        if entry.kind in LINEAR_SECTIONS:
            key = (entry.layer, entry.tensor)
            section_bytes[key] = section_bytes.get(key, 0) + entry.length
    embedding = image.embedding
    records += _linear_records("embedding", embedding.linear, embedding.linear.weights.shape,
                               section_bytes.get((NO_LAYER, STAGE_TENSORS["embedding"])))
    position = embedding.position
    records.append({"name": "embedding.position", "dtype": "int16", "shape": list(position.shape),
                    "dense_shape": list(position.shape),
                    **_stats(position, position.size, pack_array(position, "i16"))})
    for layer in image.layers:
        for tensor, role in enumerate(TENSOR_ROLES):
            records += _linear_records(f"layer{layer.index}.{role}", layer.linears[role],
                                       dense_shape(image, role),
                                       section_bytes.get((layer.index, tensor)))
        for name, constants in (("ln1", layer.ln1), ("ln2", layer.ln2)):
            records += _layernorm_records(f"layer{layer.index}.{name}", constants)
    records += _layernorm_records("final_layernorm", image.final_layernorm)
    head = image.head
    records += _linear_records("head", head.linear, head.linear.weights.shape,
                               section_bytes.get((NO_LAYER, STAGE_TENSORS["head"])))
    return records


def _linear_records(name: str, linear, dense: tuple, section_bytes: int | None) -> list[dict]:
    """A linear's weight and bias records (``dense``: its unpruned ``(out, in)``)."""
    matrix = linear.weights
    grid = matrix.grid[0] * matrix.grid[1]
    return [
        {"name": f"{name}.weight", "dtype": "int8", "shape": list(matrix.shape),
         "dense_shape": list(dense), "block_shape": list(matrix.block_shape),
         "pruning_block_shape": list(linear.pruning_block_shape),
         "stored_blocks": matrix.nnz_blocks, "blocks": grid, "section_bytes": section_bytes,
         **_stats(matrix.blocks, dense[0] * dense[1], pack_block_sparse(matrix))},
        {"name": f"{name}.bias", "dtype": "int32", "shape": [int(linear.bias.size)],
         "dense_shape": [dense[0]],
         **_stats(linear.bias, dense[0], pack_array(linear.bias, "i32"))},
    ]


def _layernorm_records(prefix: str, constants) -> list[dict]:
    return [
        {"name": f"{prefix}.gamma", "dtype": "int16", "shape": [constants.dim],
         "dense_shape": [constants.dim],
         **_stats(constants.gamma, constants.dim, pack_array(constants.gamma, "i16"))},
        {"name": f"{prefix}.beta", "dtype": "int64", "shape": [constants.dim],
         "dense_shape": [constants.dim],
         **_stats(constants.beta, constants.dim, pack_array(constants.beta, "i64"))},
    ]


def byte_breakdown(image: WeightImage) -> dict:
    """Where the image's bytes go: BCSR weights (row_ptr, col_idx in the LINEAR sections, the
    blocks in the WEIGHT_STREAM sections), per-output linear constants (record, bias,
    multiplier, shift, weight scale), other sections (config, model, the embedding's position
    table, LayerNorm and layer constants, programs) and framing (header, table, padding)."""
    linear = sum(entry.length for entry in image.sections if entry.kind in LINEAR_SECTIONS)
    linears = [image.embedding.linear, image.head.linear,
               *(linear for layer in image.layers for linear in layer.linears.values())]
    weights = sum(block_sparse_size(l.weights.shape, l.weights.block_shape, l.weights.nnz_blocks)
                  for l in linears)
    sections = sum(entry.length for entry in image.sections)
    return {"bcsr_weights": weights, "linear_constants": linear - weights,
            "other_sections": sections - linear, "framing": image.file_size - sections}


def image_totals(image: WeightImage) -> dict:
    """Sizes that compare the image with the dense int8 weights of the unpruned model's encoder
    linears (the pruned part; the embedding and classifier are not pruned)."""
    dense = sum(np.prod(dense_shape(image, role)) for _ in image.layers for role in TENSOR_ROLES)
    stored = sum(layer.linears[role].weights.blocks.size for layer in image.layers
                 for role in TENSOR_ROLES)
    nonzeros = sum(int(np.count_nonzero(layer.linears[role].weights.blocks))
                   for layer in image.layers for role in TENSOR_ROLES)
    return {"image_bytes": image.file_size, "dense_int8_weight_bytes": int(dense),
            "stored_int8_weight_bytes": int(stored), "nonzero_weights": nonzeros,
            "image_over_dense": image.file_size / dense if dense else None,
            "stored_over_dense": stored / dense if dense else None,
            "image_bytes_by_part": byte_breakdown(image)}


def manifest(image: WeightImage, *, image_crc32: int) -> dict:
    """The ``manifest.json`` document of an image."""
    config, model = image.config, image.model
    return {
        "format_version": FORMAT_VERSION,
        "image": {"file": "weights.bin", "bytes": image.file_size,
                  "crc32": f"{image_crc32:08x}", "sections": len(image.sections)},
        "config": config.name,
        "model": {"architecture": model.architecture, "layers": model.layers,
                  "hidden_size": model.hidden_size, "num_heads": model.num_heads,
                  "head_dim": model.head_dim, "ffn_size": model.ffn_size,
                  "tokens": model.tokens},
        "embedding": {"patch_size": image.embedding.patch_size,
                      "channels": image.embedding.channels,
                      "image_size": image.embedding.image_size,
                      "protected": image.embedding.protected,
                      "patch_scale": image.embedding.patch_scale,
                      "instructions": len(image.embedding.program)},
        "head": {"classes": image.head.classes, "logit_scale": image.head.logit_scale,
                 "instructions": len(image.head.program)},
        "layers": [{"index": layer.index, "kept_heads": list(layer.kept_heads),
                    "kept_ffn": len(layer.kept_ffn), "ffn_padding": layer.ffn_padding,
                    "tokens": layer.tokens, "token_keep": layer.token_keep,
                    "instructions": len(layer.program)} for layer in image.layers],
        "totals": image_totals(image),
        "tensors": tensor_records(image),
    }


def summary_table(image: WeightImage, *, source: str = "weights.bin") -> str:
    """A short fixed-width table: one line per linear, then the layers and the totals."""
    config, model, hw = image.config, image.model, image.config.hardware
    lines = [f"{source}: {image.file_size:,} bytes, format {FORMAT_VERSION}, "
             f"{len(image.sections)} sections; {model.architecture} {model.layers} layers, "
             f"hidden {model.hidden_size}, {model.num_heads} heads x {model.head_dim}, FFN "
             f"{model.ffn_size}, {model.tokens} tokens; config '{config.name}' "
             f"({hw.array_rows}x{hw.array_cols} array, {hw.block_rows}x{hw.block_cols} blocks)",
             f"{'tensor':<16}{'dense':>10}{'stored':>10}{'prune blk':>10}{'blocks':>10}"
             f"{'nonzeros':>10}{'density':>9}{'min':>6}{'max':>5}{'bytes':>8}"]
    weights = [record for record in tensor_records(image) if record["name"].endswith(".weight")]
    for record in weights:
        dense = "x".join(map(str, record["dense_shape"]))
        stored = "x".join(map(str, record["shape"]))
        pruning = ("-" if record["pruning_block_shape"] == [0, 0]
                   else "x".join(map(str, record["pruning_block_shape"])))
        blocks = f"{record['stored_blocks']}/{record['blocks']}"
        lines.append(f"{record['name'][:-len('.weight')]:<16}{dense:>10}{stored:>10}"
                     f"{pruning:>10}{blocks:>10}{record['nonzeros']:>10}"
                     f"{record['density']:>9.3f}{record['min']:>6}{record['max']:>5}"
                     f"{record['section_bytes']:>8}")
    embedding, head = image.embedding, image.head
    lines.append(f"embedding: {embedding.image_size} px images, {embedding.channels} channels, "
                 f"{embedding.patch_size} px patches -> {model.tokens - embedding.protected} "
                 f"patch rows of {embedding.linear.weights.shape[1]} int8 features (scale "
                 f"{embedding.patch_scale:.6g}), {embedding.protected} protected rows; "
                 f"{len(embedding.program)} instructions, GEMM in the "
                 f"{stage_role_of(embedding.program)} slot")
    for layer in image.layers:
        # kept_ffn already counts the padding neurons
        padding = f" ({layer.ffn_padding} of them padding)" if layer.ffn_padding else ""
        lines.append(f"layer {layer.index}: heads kept {list(layer.kept_heads)} of "
                     f"{model.num_heads}; FFN neurons kept {len(layer.kept_ffn)} of "
                     f"{model.ffn_size}{padding}; tokens kept {layer.token_keep} of "
                     f"{layer.tokens}; {len(layer.program)} instructions")
    lines.append(f"head: final LayerNorm and classifier, {head.classes} classes "
                 f"({head.linear.weights.shape[0]} rows), int8 logits (scale "
                 f"{head.logit_scale:.6g}); {len(head.program)} instructions, GEMM in the "
                 f"{stage_role_of(head.program)} slot")
    totals = image_totals(image)
    lines.append(f"encoder weights: {totals['nonzero_weights']:,} non-zero, "
                 f"{totals['stored_int8_weight_bytes']:,} int8 bytes in stored blocks vs "
                 f"{totals['dense_int8_weight_bytes']:,} dense int8 bytes "
                 f"({totals['stored_over_dense']:.3f}); whole image {image.file_size:,} bytes "
                 f"= {totals['image_over_dense']:.3f} x the dense int8 weights")
    parts = totals["image_bytes_by_part"]
    lines.append(f"image bytes: {parts['bcsr_weights']:,} BCSR weights (indices included), "
                 f"{parts['linear_constants']:,} per-output constants (bias, multiplier, shift, "
                 f"weight scale), {parts['other_sections']:,} config / position table / LayerNorm / "
                 f"layer constants / programs, {parts['framing']:,} header, table and padding")
    return "\n".join(lines)
