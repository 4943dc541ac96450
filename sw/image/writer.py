"""Serialise a :class:`~sw.image.format.WeightImage` to the bytes of ``weights.bin``.

Byte order and element encodings come from :mod:`sw.packing`, layouts from
:mod:`sw.image.format`; the same image always gives the same bytes.
"""

from __future__ import annotations

import zlib

from sw.image.format import (BYTE_ORDER_MARK, CONTEXT_FIELDS, EMBEDDING_FIELDS,
                             FILE_CRC_OFFSET, FORMAT_VERSION, GELU_FIELDS, HEAD_FIELDS,
                             HEADER_FIELDS, HEADER_SIZE, LAYER_FIELDS, LAYERNORM_FIELDS,
                             LINEAR_FIELDS, MAGIC, MODEL_FIELDS, NO_LAYER, NO_TENSOR,
                             RESIDUAL_FIELDS, SCALE_POINTS, SECTION_ENTRY_FIELDS,
                             SECTION_ENTRY_SIZE, SOFTMAX_FIELDS, STAGE_TENSORS, TENSOR_ROLES,
                             EmbeddingImage, HeadImage, ImageError, LayerImage, LinearImage,
                             SectionKind, WeightImage, section_alignment)
from sw.image.program import encode_program
from sw.packing import ByteReader, ByteWriter, fields_size, pack_array, pack_stream_weights

__all__ = ["encode_image", "seal"]


def _layernorm(writer: ByteWriter, constants) -> None:
    writer.fields(LAYERNORM_FIELDS, {
        "dim": constants.dim, "norm_bits": constants.norm_bits,
        "multiplier": constants.multiplier, "shift": constants.shift,
        "in_width": constants.in_width, "out_width": constants.out_width})
    writer.array(constants.gamma, "i16")
    writer.array(constants.beta, "i64")


def _record(writer: ByteWriter, layout, constants) -> None:
    writer.fields(layout, {name: getattr(constants, name) for name, _ in layout})


def _model_section(image: WeightImage) -> bytes:
    model = image.model
    codes = {"deit": 1, "vit": 2}
    writer = ByteWriter()
    writer.fields(MODEL_FIELDS, {
        "architecture": codes[model.architecture], "layers": model.layers,
        "hidden_size": model.hidden_size, "num_heads": model.num_heads,
        "head_dim": model.head_dim, "ffn_size": model.ffn_size, "tokens": model.tokens,
        "reserved": 0, "input_scale": model.input_scale, "final_scale": model.final_scale})
    return writer.getvalue()


def _layer_section(layer: LayerImage) -> bytes:
    writer = ByteWriter()
    writer.fields(LAYER_FIELDS, {
        "head_dim": layer.head_dim, "kept_heads": len(layer.kept_heads),
        "kept_ffn": len(layer.kept_ffn), "ffn_padding": layer.ffn_padding,
        "tokens": layer.tokens, "token_keep": layer.token_keep})
    writer.array([layer.scales[point] for point in SCALE_POINTS], "f64")
    writer.array(layer.kept_heads, "u32")
    writer.array(layer.kept_ffn, "u32")
    return writer.getvalue()


def _constants_section(layer: LayerImage) -> bytes:
    writer = ByteWriter()
    _layernorm(writer, layer.ln1)
    _record(writer, SOFTMAX_FIELDS, layer.softmax)
    writer.fields(CONTEXT_FIELDS, {"context_multiplier": layer.context_multiplier,
                                   "context_shift": layer.context_shift})
    _record(writer, RESIDUAL_FIELDS, layer.residual1)
    _layernorm(writer, layer.ln2)
    _record(writer, GELU_FIELDS, layer.gelu)
    _record(writer, RESIDUAL_FIELDS, layer.residual2)
    return writer.getvalue()


def _linear_section(linear: LinearImage) -> bytes:
    matrix = linear.weights
    writer = ByteWriter()
    writer.fields(LINEAR_FIELDS, {
        "out_features": matrix.shape[0], "in_features": matrix.shape[1],
        "block_rows": matrix.block_shape[0], "block_cols": matrix.block_shape[1],
        "pruning_block_rows": linear.pruning_block_shape[0],
        "pruning_block_cols": linear.pruning_block_shape[1],
        "stored_blocks": matrix.nnz_blocks, "reserved": 0,
        "input_scale": linear.input_scale, "output_scale": linear.output_scale})
    writer.array(matrix.row_ptr, "u32")
    writer.array(matrix.col_idx, "u32")
    writer.array(linear.bias, "i32")
    writer.array(linear.multiplier, "u32")
    writer.array(linear.shift, "u8")
    writer.array(linear.weight_scale, "f64")
    return writer.getvalue()


def _embedding_section(embedding: EmbeddingImage) -> bytes:
    writer = ByteWriter()
    writer.fields(EMBEDDING_FIELDS, {
        "patch_size": embedding.patch_size, "channels": embedding.channels,
        "image_size": embedding.image_size, "protected": embedding.protected})
    _record(writer, RESIDUAL_FIELDS, embedding.residual)
    writer.array(embedding.position, "i16")
    return writer.getvalue()


def _head_section(head: HeadImage) -> bytes:
    writer = ByteWriter()
    writer.fields(HEAD_FIELDS, {"classes": head.classes, "reserved": 0})
    return writer.getvalue()


def _stage_sections(image: WeightImage, stage: str, record: bytes
                    ) -> list[tuple[int, int, int, bytes]]:
    """A stage's record, its linear (LINEAR, WEIGHT_STREAM) and its program."""
    part = getattr(image, stage)
    tensor = STAGE_TENSORS[stage]
    hw = image.config.hardware
    kind = SectionKind.EMBEDDING if stage == "embedding" else SectionKind.HEAD
    return [(kind, NO_LAYER, NO_TENSOR, record),
            (SectionKind.LINEAR, NO_LAYER, tensor, _linear_section(part.linear)),
            (SectionKind.WEIGHT_STREAM, NO_LAYER, tensor,
             pack_stream_weights(part.linear.weights, hw.array_rows, hw.array_cols,
                                 hw.data_width)),
            (SectionKind.PROGRAM, NO_LAYER, tensor, encode_program(part.program))]


def _sections(image: WeightImage) -> list[tuple[int, int, int, bytes]]:
    """``(kind, layer, tensor, payload)`` in the canonical order."""
    final = ByteWriter()
    _layernorm(final, image.final_layernorm)
    sections = [
        (SectionKind.CONFIG, NO_LAYER, NO_TENSOR, image.config.to_json().encode("utf-8")),
        (SectionKind.MODEL, NO_LAYER, NO_TENSOR, _model_section(image)),
        (SectionKind.FINAL_LAYERNORM, NO_LAYER, NO_TENSOR, final.getvalue()),
        *_stage_sections(image, "embedding", _embedding_section(image.embedding)),
    ]
    for layer in image.layers:
        sections.append((SectionKind.LAYER, layer.index, NO_TENSOR, _layer_section(layer)))
        sections.append((SectionKind.LAYER_CONSTANTS, layer.index, NO_TENSOR,
                         _constants_section(layer)))
        hw = image.config.hardware
        for tensor, role in enumerate(TENSOR_ROLES):
            weights = layer.linears[role].weights
            sections.append((SectionKind.LINEAR, layer.index, tensor,
                             _linear_section(layer.linears[role])))
            sections.append((SectionKind.WEIGHT_STREAM, layer.index, tensor,
                             pack_stream_weights(weights, hw.array_rows, hw.array_cols,
                                                 hw.data_width)))
        sections.append((SectionKind.PROGRAM, layer.index, NO_TENSOR,
                         encode_program(layer.program)))
    sections += _stage_sections(image, "head", _head_section(image.head))
    return sections


def encode_image(image: WeightImage) -> bytes:
    """The image's bytes: header, section table, sections (8-byte aligned), sealed by CRC-32s.

    Raises
    ------
    ImageError
        If a value does not fit its field (the message names the section).
    """
    try:
        sections = _sections(image)
    except ValueError as error:
        raise ImageError(f"cannot encode the image: {error}") from None
    table_size = len(sections) * SECTION_ENTRY_SIZE
    offset = HEADER_SIZE + table_size
    body = ByteWriter()
    entries = ByteWriter()
    for kind, layer, tensor, payload in sections:
        padding = -offset % section_alignment(image.config, kind)
        body.raw(bytes(padding))
        offset += padding
        entries.fields(SECTION_ENTRY_FIELDS, {
            "kind": int(kind), "layer": layer, "tensor": tensor, "reserved": 0,
            "offset": offset, "length": len(payload), "crc32": zlib.crc32(payload),
            "reserved2": 0})
        body.raw(payload)
        offset += len(payload)
    table = entries.getvalue()
    header = ByteWriter()
    header.raw(MAGIC)
    header.fields(HEADER_FIELDS, {
        "format_version": FORMAT_VERSION, "byte_order": BYTE_ORDER_MARK,
        "header_size": HEADER_SIZE, "section_count": len(sections), "file_size": offset,
        "table_offset": HEADER_SIZE, "table_crc32": zlib.crc32(table), "file_crc32": 0})
    header.raw(bytes(HEADER_SIZE - header.size))
    return seal(header.getvalue() + table + body.getvalue())


def seal(data: bytes) -> bytes:
    """``data`` with every checksum recomputed: each section's (where its table entry lies in
    the file), the section table's, then ``file_crc32`` (CRC-32 of the file with that field zero).

    The writer's last step; tests also use it to make a deliberately altered image
    self-consistent again, so that the loader's checks behind the checksums get exercised.
    """
    data = bytearray(data)
    if len(data) >= HEADER_SIZE:
        header = ByteReader(bytes(data), len(MAGIC), HEADER_SIZE).fields(HEADER_FIELDS)
        table_start = header["table_offset"]
        table_end = table_start + header["section_count"] * SECTION_ENTRY_SIZE
        if HEADER_SIZE <= table_start and table_end <= len(data):
            for index in range(header["section_count"]):
                entry_at = table_start + index * SECTION_ENTRY_SIZE
                entry = ByteReader(bytes(data), entry_at).fields(SECTION_ENTRY_FIELDS)
                end = entry["offset"] + entry["length"]
                if end <= len(data):
                    crc_at = entry_at + fields_size(SECTION_ENTRY_FIELDS[:6])
                    data[crc_at:crc_at + 4] = pack_array(
                        [zlib.crc32(data[entry["offset"]:end])], "u32")
            table_crc_at = len(MAGIC) + fields_size(HEADER_FIELDS[:6])
            data[table_crc_at:table_crc_at + 4] = pack_array(
                [zlib.crc32(data[table_start:table_end])], "u32")
    data[FILE_CRC_OFFSET:FILE_CRC_OFFSET + 4] = bytes(4)
    data[FILE_CRC_OFFSET:FILE_CRC_OFFSET + 4] = pack_array([zlib.crc32(data)], "u32")
    return bytes(data)
