"""The one reader of weight images, used by the golden model, the testbenches and ``--inspect``.

:func:`load_image` checks, in this order, and raises :class:`~sw.image.format.ImageError` with
one line naming the file, the section and the byte offset at the first problem: the magic, the
header (format version, byte order, sizes), the section table's bounds and checksum, every
section's bounds (a truncated file names the first section cut off), the file size, every
section's checksum, the whole-file checksum, that reserved fields and the padding between
sections are zero, then the contents of each section (structure, ranges, consistency with the
accelerator config). It imports neither torch nor the golden model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import sys
import zlib

import numpy as np

from sw.config import AcceleratorConfig, ConfigError
from sw.golden.kernels import (GeluConstants, LayerNormConstants, ResidualConstants,
                               SoftmaxConstants)
from sw.image.format import (ARCHITECTURES, BYTE_ORDER_MARK, CONTEXT_FIELDS, EMBEDDING_FIELDS,
                             FILE_CRC_OFFSET, FORMAT_VERSION, GELU_FIELDS, HEAD_FIELDS,
                             HEADER_FIELDS, HEADER_SIZE, LAYER_FIELDS, LAYERNORM_FIELDS,
                             LINEAR_FIELDS, MAGIC, MODEL_FIELDS, NO_LAYER, NO_TENSOR,
                             RESIDUAL_FIELDS, SCALE_POINTS, SECTION_ALIGNMENT,
                             SECTION_ENTRY_FIELDS, SECTION_ENTRY_SIZE, SOFTMAX_FIELDS,
                             STAGE_TENSORS, TENSOR_ROLES, EmbeddingImage, HeadImage, ImageError,
                             LayerImage, LinearImage, ModelInfo, SectionEntry, SectionKind,
                             WeightImage, dense_shape, pruning_block_problem, section_alignment,
                             section_name)
from sw.image.program import check_program, check_stage_program, decode_program, stage_slot
from sw.numerics import SHIFT_WIDTH
from sw.block_sparse import BlockSparseMatrix
from sw.packing import (ByteReader, ImageFormatError, fields_size, unpack_block_sparse,
                        unpack_stream_weights)

__all__ = ["MAX_IMAGE_BYTES", "load_image", "parse_image"]


#: The largest ``file_size`` a header may declare: 4 GiB, 50 times the int8 weights of a dense
#: DeiT-B's linears (84,934,656 bytes). The loader reads no more than this.
MAX_IMAGE_BYTES = 1 << 32


def load_image(path: str | os.PathLike) -> WeightImage:
    """Read and check the image at ``path``.

    The header is read and checked first, then the declared ``file_size`` against the file's
    size (from the section table alone when they differ), and only then the whole file: a file
    that is not an image, or a huge one, is refused after reading its first bytes (``/dev/zero``
    or an 8 GiB sparse file included).

    Raises
    ------
    ImageError
        If the file cannot be read or is not a valid image; the message starts with ``path``.
    """
    source = os.fspath(path)

    def fail(message: str) -> ImageError:
        return ImageError(f"{source}: {message}")

    try:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_SIZE)
            header = _header(head, fail)
            claimed = header["file_size"]
            status = os.fstat(handle.fileno())
            if stat.S_ISREG(status.st_mode) and status.st_size != claimed:
                table_end = HEADER_SIZE + header["section_count"] * SECTION_ENTRY_SIZE
                prefix = head + handle.read(max(0, min(table_end, status.st_size) - len(head)))
                _table(prefix, header, fail, size=status.st_size)   # names what is wrong
            data = head + handle.read(max(0, claimed + 1 - len(head)))   # + 1: trailing bytes
    except FileNotFoundError:
        raise ImageError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{source}: is a directory, not an image file") from None
    except OSError as error:
        raise ImageError(f"{source}: cannot read ({error.strerror})") from None
    return dataclasses.replace(parse_image(data, source=source), path=os.path.abspath(source))


def parse_image(data: bytes, *, source: str = "<bytes>") -> WeightImage:
    """Check and decode the bytes of an image (see the module docstring for the order).

    Raises
    ------
    ImageError
        At the first problem, naming ``source``, the section and the offset.
    """
    def fail(message: str) -> ImageError:
        return ImageError(f"{source}: {message}")

    header = _header(data, fail)
    entries = _table(data, header, fail)
    _check_checksums(data, header, entries, fail)
    _check_reserved(data, header, fail)
    return _decode(data, entries, fail)


# ------------------------------------------------------------------------------------------------
# Framing: header, table, bounds, checksums
# ------------------------------------------------------------------------------------------------

def _header(data: bytes, fail) -> dict:
    size = len(data)
    if data[:len(MAGIC)] != MAGIC:
        if size < len(MAGIC) and MAGIC.startswith(data):
            raise fail(f"truncated: {size} bytes, shorter than the {HEADER_SIZE}-byte header")
        raise fail(f"not a weight image: it starts with {data[:len(MAGIC)].hex(' ')}, expected "
                   f"the magic {MAGIC.hex(' ')}")
    if size < HEADER_SIZE:
        raise fail(f"truncated: {size} bytes, shorter than the {HEADER_SIZE}-byte header")
    header = ByteReader(data, len(MAGIC), HEADER_SIZE).fields(HEADER_FIELDS)
    offsets = _field_offsets()
    if header["byte_order"] != BYTE_ORDER_MARK:
        raise fail(f"byte order mark at offset {offsets['byte_order']} reads "
                   f"0x{header['byte_order']:08x}, expected 0x{BYTE_ORDER_MARK:08x} (a "
                   f"little-endian image)")
    if header["format_version"] != FORMAT_VERSION:
        raise fail(f"format version {header['format_version']} (offset "
                   f"{offsets['format_version']}) is not supported; this build reads version "
                   f"{FORMAT_VERSION}")
    for name, expected in (("header_size", HEADER_SIZE), ("table_offset", HEADER_SIZE)):
        if header[name] != expected:
            raise fail(f"header field {name} at offset {offsets[name]} is {header[name]}, "
                       f"expected {expected}")
    if header["file_size"] > MAX_IMAGE_BYTES:
        raise fail(f"header field file_size at offset {offsets['file_size']} declares "
                   f"{header['file_size']} bytes, more than the {MAX_IMAGE_BYTES} (4 GiB) this "
                   f"loader reads")
    table_end = HEADER_SIZE + header["section_count"] * SECTION_ENTRY_SIZE
    if table_end > header["file_size"]:     # also bounds what load_image reads of the table
        raise fail(f"section count {header['section_count']} (offset "
                   f"{offsets['section_count']}) needs a table up to byte {table_end}, past the "
                   f"image's declared end (file_size {header['file_size']})")
    return header


def _field_offsets() -> dict:
    offsets, position = {}, len(MAGIC)
    for name, dtype in HEADER_FIELDS:
        offsets[name] = position
        position += fields_size(((name, dtype),))
    return offsets


def _truncation(size: int, claimed: int, what: str, start: int, length: int) -> str:
    return (f"truncated: the file has {size} bytes, the header says {claimed}; {what} (offset "
            f"{start}, {length} bytes) is cut off at byte {size}")


def _table(data: bytes, header: dict, fail, *, size: int | None = None) -> list[SectionEntry]:
    """Check the section table and every entry's bounds against the file's ``size`` (default
    ``len(data)``; ``data`` need only hold the bytes up to the end of the table)."""
    size = len(data) if size is None else size
    claimed = header["file_size"]
    count = header["section_count"]
    table_start = header["table_offset"]
    table_length = count * SECTION_ENTRY_SIZE
    table_end = table_start + table_length
    if table_end > size:
        if claimed > size:
            raise fail(_truncation(size, claimed, "the section table", table_start, table_length))
        raise fail(f"section count {count} (offset {_field_offsets()['section_count']}) needs a "
                   f"table up to byte {table_end}, past the end of the file ({size} bytes)")
    table = data[table_start:table_end]
    computed = zlib.crc32(table)
    if computed != header["table_crc32"]:
        raise fail(f"section table (offset {table_start}, {table_length} bytes): checksum "
                   f"mismatch, stored 0x{header['table_crc32']:08x}, computed 0x{computed:08x}")
    entries, previous_end = [], table_end
    for index in range(count):
        fields = ByteReader(data, table_start + index * SECTION_ENTRY_SIZE).fields(
            SECTION_ENTRY_FIELDS)
        entry = SectionEntry(kind=fields["kind"], layer=fields["layer"], tensor=fields["tensor"],
                             offset=fields["offset"], length=fields["length"],
                             crc32=fields["crc32"])
        label = f"section {index} '{entry.name}'"
        end = entry.offset + entry.length
        if end > size:
            if claimed > size and end <= claimed:
                raise fail(_truncation(size, claimed, label, entry.offset, entry.length))
            raise fail(f"{label} (offset {entry.offset}, {entry.length} bytes) ends at byte "
                       f"{end}, past the end of the file ({size} bytes)")
        if entry.offset < previous_end or entry.offset % SECTION_ALIGNMENT:
            raise fail(f"{label} starts at offset {entry.offset}: sections must follow each "
                       f"other from byte {previous_end}, at multiples of {SECTION_ALIGNMENT}")
        previous_end = end
        entries.append(entry)
    if claimed != previous_end:
        raise fail(f"header says the image has {claimed} bytes but its last section ends at "
                   f"byte {previous_end}")
    if size > claimed:
        raise fail(f"{size - claimed} unexpected bytes after the end of the image (byte "
                   f"{claimed})")
    return entries


def _check_checksums(data: bytes, header: dict, entries: list[SectionEntry], fail) -> None:
    for index, entry in enumerate(entries):
        computed = zlib.crc32(data[entry.offset:entry.offset + entry.length])
        if computed != entry.crc32:
            raise fail(f"section {index} '{entry.name}' (offset {entry.offset}, {entry.length} "
                       f"bytes): checksum mismatch, stored 0x{entry.crc32:08x}, computed "
                       f"0x{computed:08x}")
    zeroed = bytearray(data)
    zeroed[FILE_CRC_OFFSET:FILE_CRC_OFFSET + 4] = bytes(4)
    computed = zlib.crc32(zeroed)
    if computed != header["file_crc32"]:
        raise fail(f"file checksum mismatch: stored 0x{header['file_crc32']:08x} (offset "
                   f"{FILE_CRC_OFFSET}), computed 0x{computed:08x}; the header or the padding "
                   f"between sections is corrupt")


def _first_nonzero(data: bytes, start: int, end: int) -> int | None:
    """Offset of the first non-zero byte in ``data[start:end]``, or None."""
    chunk = data[start:end]
    stripped = chunk.lstrip(b"\0")
    return None if not stripped else start + len(chunk) - len(stripped)


def _check_reserved(data: bytes, header: dict, fail) -> None:
    """The header's reserved bytes, the table entries' reserved fields and the bytes between
    sections (checksums valid: a writer put them there) must be zero."""
    header_end = len(MAGIC) + fields_size(HEADER_FIELDS)
    at = _first_nonzero(data, header_end, HEADER_SIZE)
    if at is not None:
        raise fail(f"header bytes {header_end}..{HEADER_SIZE - 1} are reserved and must be zero; "
                   f"byte {at} is 0x{data[at]:02x}")
    table_start = header["table_offset"]
    previous_end = table_start + header["section_count"] * SECTION_ENTRY_SIZE
    for index in range(header["section_count"]):
        entry_at = table_start + index * SECTION_ENTRY_SIZE
        fields = ByteReader(data, entry_at).fields(SECTION_ENTRY_FIELDS)
        for name in ("reserved", "reserved2"):
            if fields[name]:
                raise fail(f"section table entry {index} (offset {entry_at}): field {name} is "
                           f"reserved and must be zero, found {fields[name]}")
        at = _first_nonzero(data, previous_end, fields["offset"])
        if at is not None:
            raise fail(f"padding before section {index} (bytes {previous_end}.."
                       f"{fields['offset'] - 1}) must be zero; byte {at} is 0x{data[at]:02x}")
        previous_end = fields["offset"] + fields["length"]


# ------------------------------------------------------------------------------------------------
# Contents
# ------------------------------------------------------------------------------------------------

class _SectionProblem(ValueError):
    """A content check failed inside the section being decoded."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise _SectionProblem(message)


def _positive_scale(value: float, what: str) -> float:
    _require(math.isfinite(value) and value > 0,
             f"{what} must be a finite positive number, found {value!r}")
    return value


def _decode(data: bytes, entries: list[SectionEntry], fail) -> WeightImage:
    by_key = {}
    for index, entry in enumerate(entries):
        key = (entry.kind, entry.layer, entry.tensor)
        if entry.kind not in SectionKind._value2member_map_:
            raise fail(f"section {index} (offset {entry.offset}) has unknown kind {entry.kind}")
        if key in by_key:
            raise fail(f"section {index} '{entry.name}' (offset {entry.offset}) appears twice")
        by_key[key] = (index, entry)

    def decode(kind, layer, tensor, function, *args):
        key = (int(kind), layer, tensor)
        if key not in by_key:
            raise fail(f"missing section '{section_name(*key)}'")
        index, entry = by_key.pop(key)
        reader = ByteReader(data, entry.offset, entry.offset + entry.length)
        try:
            result = function(reader, *args)
            _require(reader.remaining == 0, f"{reader.remaining} unexpected bytes at offset "
                                            f"{reader.position}, after the section's contents")
        except (ImageFormatError, _SectionProblem) as error:
            raise fail(f"section {index} '{entry.name}' (offset {entry.offset}): {error}") from None
        return result

    def stage(name, kind, record_reader, expected_shape):
        """A stage's record, linear and program (``expected_shape(record)``: its weight's)."""
        tensor = STAGE_TENSORS[name]
        record = decode(kind, NO_LAYER, NO_TENSOR, record_reader, model)
        linear = decode(SectionKind.LINEAR, NO_LAYER, tensor, _linear, name,
                        expected_shape(record), None, config)
        linear = decode(SectionKind.WEIGHT_STREAM, NO_LAYER, tensor, _weight_stream, linear,
                        config)
        program = decode(SectionKind.PROGRAM, NO_LAYER, tensor, _stage_program, name,
                         linear.weights.shape, config)
        return {**record, "linear": linear, "program": program}

    config = decode(SectionKind.CONFIG, NO_LAYER, NO_TENSOR, _config)
    model = decode(SectionKind.MODEL, NO_LAYER, NO_TENSOR, _model, config)
    final_layernorm = decode(SectionKind.FINAL_LAYERNORM, NO_LAYER, NO_TENSOR, _layernorm_record,
                             model.hidden_size, "final LayerNorm")
    block_rows = config.hardware.block_rows
    embedding = EmbeddingImage(**stage(
        "embedding", SectionKind.EMBEDDING, _embedding,
        lambda record: (model.hidden_size, record["channels"] * record["patch_size"] ** 2)))
    head = HeadImage(**stage(
        "head", SectionKind.HEAD, _head,
        lambda record: (-(-record["classes"] // block_rows) * block_rows, model.hidden_size)))
    layers, tokens = [], model.tokens
    for index in range(model.layers):
        layer = decode(SectionKind.LAYER, index, NO_TENSOR, _layer, model, tokens)
        constants = decode(SectionKind.LAYER_CONSTANTS, index, NO_TENSOR, _constants, model)
        linears = {}
        for tensor, role in enumerate(TENSOR_ROLES):
            linear = decode(SectionKind.LINEAR, index, tensor, _linear, role,
                            _expected_shape(role, layer, model), dense_shape(role, model),
                            config)
            linears[role] = decode(SectionKind.WEIGHT_STREAM, index, tensor, _weight_stream,
                                   linear, config)
        program = decode(SectionKind.PROGRAM, index, NO_TENSOR, _program, layer,
                         config.model.norm)
        layers.append(LayerImage(index=index, linears=linears, program=program, **layer,
                                 **constants))
        tokens = layer["token_keep"]
    if by_key:
        index, entry = min(by_key.values())
        raise fail(f"section {index} '{entry.name}' (offset {entry.offset}) does not belong to "
                   f"a {model.layers}-layer image")
    return WeightImage(config=config, model=model, final_layernorm=final_layernorm,
                       embedding=embedding, layers=tuple(layers), head=head,
                       sections=tuple(entries), file_size=len(data))


def _config(reader: ByteReader) -> AcceleratorConfig:
    raw = reader.raw(reader.remaining, "config")
    try:
        text = raw.decode("utf-8")
        document = json.loads(text)
        config = AcceleratorConfig.from_dict(document, source="config")
        config.check_layer_engine()        # the WEIGHT_STREAM sections are laid out for it
        return config
    except UnicodeDecodeError as error:
        raise _SectionProblem(f"config is not UTF-8 text ({error.reason})") from None
    except json.JSONDecodeError as error:
        raise _SectionProblem(f"config is not valid JSON (line {error.lineno} column "
                              f"{error.colno}: {error.msg})") from None
    except RecursionError:
        raise _SectionProblem("config JSON is nested too deeply") from None
    except ConfigError as error:
        raise _SectionProblem(str(error)) from None
    except ValueError:
        # json refuses an integer of more digits than Python converts (JSONDecodeError and
        # ConfigError, ValueErrors too, are caught above)
        raise _SectionProblem(f"config holds an integer of more than "
                              f"{sys.get_int_max_str_digits()} digits") from None


def _model(reader: ByteReader, config: AcceleratorConfig) -> ModelInfo:
    fields = reader.fields(MODEL_FIELDS, "model record")
    _require_reserved_zero(fields, "model record")
    _require(fields["architecture"] in ARCHITECTURES,
             f"unknown architecture code {fields['architecture']}; known: "
             + ", ".join(f"{code} ({name})" for code, name in ARCHITECTURES.items()))
    for name in ("layers", "hidden_size", "num_heads", "head_dim", "ffn_size", "tokens"):
        _require(fields[name] > 0, f"{name} must be positive, found {fields[name]}")
    _require(fields["hidden_size"] == fields["num_heads"] * fields["head_dim"],
             f"hidden_size {fields['hidden_size']} is not num_heads {fields['num_heads']} x "
             f"head_dim {fields['head_dim']}")
    topology = config.model
    for name in ("layers", "hidden_size", "num_heads", "head_dim", "tokens"):
        _require(fields[name] == getattr(topology, name),
                 f"{name} is {fields[name]} but the image's config says "
                 f"{getattr(topology, name)}")
    _require(topology.ffn_size <= fields["ffn_size"],
             f"the config's ffn_size {topology.ffn_size} exceeds the model's {fields['ffn_size']}")
    return ModelInfo(architecture=ARCHITECTURES[fields["architecture"]], layers=fields["layers"],
                     hidden_size=fields["hidden_size"], num_heads=fields["num_heads"],
                     head_dim=fields["head_dim"], ffn_size=fields["ffn_size"],
                     tokens=fields["tokens"],
                     input_scale=_positive_scale(fields["input_scale"], "input_scale"),
                     final_scale=_positive_scale(fields["final_scale"], "final_scale"))


def _require_reserved_zero(fields: dict, what: str) -> None:
    _require(fields["reserved"] == 0,
             f"{what} field reserved must be zero, found {fields['reserved']}")


#: Upper bound of integer constants other than shifts, widths and bit counts: keeps every
#: product the golden kernels form with them inside int64.
CONSTANT_LIMIT = 1 << 48


def _check_constants(fields: dict, what: str) -> None:
    for name, value in fields.items():
        _require(value >= 0, f"{what} {name} must not be negative, found {value}")
        if "shift" in name:
            limit = 1 << SHIFT_WIDTH
        elif "width" in name:
            _require(value >= 1, f"{what} {name} must be at least 1, found {value}")
            limit = 65
        elif name.endswith("bits"):
            limit = 63
        else:
            limit = CONSTANT_LIMIT
        _require(value < limit, f"{what} {name} must be below {limit}, found {value}")


def _layernorm_record(reader: ByteReader, dim: int, what: str) -> LayerNormConstants:
    fields = reader.fields(LAYERNORM_FIELDS, f"{what} record")
    _require(fields["dim"] == dim, f"{what} has {fields['dim']} channels, expected {dim}")
    _check_constants(fields, what)
    gamma = reader.array("i16", dim, f"{what} gamma")
    beta = reader.array("i64", dim, f"{what} beta")
    return LayerNormConstants(gamma=gamma, beta=beta, norm_bits=fields["norm_bits"],
                              multiplier=fields["multiplier"], shift=fields["shift"],
                              in_width=fields["in_width"], out_width=fields["out_width"])


def _indices(reader: ByteReader, count: int, limit: int, what: str) -> tuple:
    start = reader.position
    values = reader.array("u32", count, what)
    _require(bool(np.all(np.diff(values) > 0)) and (count == 0 or int(values[-1]) < limit),
             f"{what} at offset {start} must increase and stay below {limit}, found "
             f"{values.tolist()[:12]}")
    return tuple(int(v) for v in values)


def _layer(reader: ByteReader, model: ModelInfo, tokens: int) -> dict:
    fields = reader.fields(LAYER_FIELDS, "layer record")
    _require(fields["head_dim"] == model.head_dim,
             f"head_dim is {fields['head_dim']}, the model's is {model.head_dim}")
    _require(1 <= fields["kept_heads"] <= model.num_heads,
             f"kept heads {fields['kept_heads']} must lie in 1..{model.num_heads}")
    _require(1 <= fields["kept_ffn"] <= model.ffn_size,
             f"kept FFN neurons {fields['kept_ffn']} must lie in 1..{model.ffn_size}")
    _require(fields["ffn_padding"] < fields["kept_ffn"],
             f"FFN padding {fields['ffn_padding']} must be below the kept neurons "
             f"{fields['kept_ffn']}")
    _require(fields["tokens"] == tokens,
             f"the layer receives {tokens} token rows, its record says {fields['tokens']}")
    _require(1 <= fields["token_keep"] <= tokens,
             f"token keep count {fields['token_keep']} must lie in 1..{tokens}")
    scales = reader.array("f64", len(SCALE_POINTS), "scales")
    scales = {point: _positive_scale(float(value), f"scale of '{point}'")
              for point, value in zip(SCALE_POINTS, scales)}
    return {
        "head_dim": fields["head_dim"],
        "kept_heads": _indices(reader, fields["kept_heads"], model.num_heads, "kept heads"),
        "kept_ffn": _indices(reader, fields["kept_ffn"], model.ffn_size, "kept FFN neurons"),
        "ffn_padding": fields["ffn_padding"], "tokens": fields["tokens"],
        "token_keep": fields["token_keep"], "scales": scales,
    }


def _record(reader: ByteReader, layout, what: str) -> dict:
    fields = reader.fields(layout, f"{what} record")
    _check_constants(fields, what)
    return fields


def _constants(reader: ByteReader, model: ModelInfo) -> dict:
    ln1 = _layernorm_record(reader, model.hidden_size, "LayerNorm 1")
    softmax = SoftmaxConstants(**_record(reader, SOFTMAX_FIELDS, "softmax"))
    context = _record(reader, CONTEXT_FIELDS, "context")
    residual1 = ResidualConstants(**_record(reader, RESIDUAL_FIELDS, "residual 1"))
    ln2 = _layernorm_record(reader, model.hidden_size, "LayerNorm 2")
    gelu = GeluConstants(**_record(reader, GELU_FIELDS, "GELU"))
    residual2 = ResidualConstants(**_record(reader, RESIDUAL_FIELDS, "residual 2"))
    return {"ln1": ln1, "softmax": softmax, "context_multiplier": context["context_multiplier"],
            "context_shift": context["context_shift"], "residual1": residual1, "ln2": ln2,
            "gelu": gelu, "residual2": residual2}


def _expected_shape(role: str, layer: dict, model: ModelInfo) -> tuple[int, int]:
    attention = len(layer["kept_heads"]) * model.head_dim
    ffn = len(layer["kept_ffn"])
    hidden = model.hidden_size
    return {"q": (attention, hidden), "k": (attention, hidden), "v": (attention, hidden),
            "o": (hidden, attention), "fc1": (ffn, hidden), "fc2": (hidden, ffn)}[role]


def _embedding(reader: ByteReader, model: ModelInfo) -> dict:
    fields = reader.fields(EMBEDDING_FIELDS, "embedding record")
    for name in ("patch_size", "channels", "image_size", "protected"):
        _require(fields[name] > 0, f"{name} must be positive, found {fields[name]}")
    size, patch = fields["image_size"], fields["patch_size"]
    _require(size % patch == 0, f"patch_size {patch} does not divide image_size {size}")
    patches = (size // patch) ** 2
    _require(patches + fields["protected"] == model.tokens,
             f"{patches} patches ({size // patch} x {size // patch}) and {fields['protected']} "
             f"protected rows make {patches + fields['protected']} tokens, the model has "
             f"{model.tokens}")
    residual = ResidualConstants(**_record(reader, RESIDUAL_FIELDS, "embedding residual"))
    position = reader.array("i16", model.tokens * model.hidden_size, "position table")
    return {**fields, "residual": residual,
            "position": position.reshape(model.tokens, model.hidden_size)}


def _head(reader: ByteReader, model: ModelInfo) -> dict:
    fields = reader.fields(HEAD_FIELDS, "head record")
    _require_reserved_zero(fields, "head record")
    _require(fields["classes"] > 0, f"classes must be positive, found {fields['classes']}")
    return {"classes": fields["classes"]}


def _stage_program(reader: ByteReader, stage: str, shape: tuple,
                   config: AcceleratorConfig) -> tuple:
    program = decode_program(reader)
    try:
        check_stage_program(program, stage, stage_slot(stage, shape, config))
    except ValueError as error:
        raise _SectionProblem(f"program {error}") from None
    return program


def _linear(reader: ByteReader, role: str, expected: tuple, dense: tuple | None,
            config: AcceleratorConfig) -> LinearImage:
    """A LINEAR section of an ``expected`` ``(out, in)`` weight whose unpruned shape is
    ``dense`` (None: a stage's linear, which is not pruned)."""
    fields = reader.fields(LINEAR_FIELDS, "linear record")
    _require_reserved_zero(fields, "linear record")
    shape = (fields["out_features"], fields["in_features"])
    origin = ("from the kept heads / neurons" if dense is not None
              else "from the model's sizes and the EMBEDDING / HEAD record")
    _require(shape == expected, f"{role} weight is {shape[0]}x{shape[1]}, expected "
                                f"{expected[0]}x{expected[1]} {origin}")
    hw = config.hardware
    block = (fields["block_rows"], fields["block_cols"])
    _require(block == (hw.block_rows, hw.block_cols),
             f"block shape {block[0]}x{block[1]} differs from the config's "
             f"{hw.block_rows}x{hw.block_cols}")
    _require(shape[0] % block[0] == 0 and shape[1] % block[1] == 0,
             f"block shape {block[0]}x{block[1]} does not divide the {shape[0]}x{shape[1]} "
             f"weight")
    grid = (shape[0] // block[0]) * (shape[1] // block[1])
    stored = fields["stored_blocks"]
    _require(stored <= grid, f"{stored} stored blocks, the weight has only {grid}")
    outputs = shape[0]
    length = (fields_size(LINEAR_FIELDS) + 4 * (shape[0] // block[0] + 1) + 4 * stored
              + outputs * (4 + 4 + 1 + 8))
    _require(reader.remaining + fields_size(LINEAR_FIELDS) == length,
             f"section length {reader.remaining + fields_size(LINEAR_FIELDS)} does not match "
             f"the {length} bytes its record implies")
    # the structure alone: the blocks' weights are the WEIGHT_STREAM section's
    weights = unpack_block_sparse(reader, shape, block, stored, with_blocks=False)
    bias = reader.array("i32", outputs, "bias")
    start = reader.position
    multiplier = reader.array("u32", outputs, "multiplier")
    _require(int(multiplier.max(initial=0)) < 1 << hw.multiplier_width,
             f"multiplier at offset {start} exceeds {hw.multiplier_width} bits")
    start = reader.position
    shift = reader.array("u8", outputs, "shift")
    _require(int(shift.max(initial=0)) < 1 << SHIFT_WIDTH,
             f"shift at offset {start} exceeds {SHIFT_WIDTH} bits")
    weight_scale = reader.array("f64", outputs, "weight_scale")
    _require(bool(np.all(np.isfinite(weight_scale)) and np.all(weight_scale > 0)),
             "weight scales must be finite positive numbers")
    pruning = (fields["pruning_block_rows"], fields["pruning_block_cols"])
    if dense is None:
        _require(pruning == (0, 0), f"pruning block shape: {pruning[0]}x{pruning[1]} must be "
                                    f"0x0 (the {role} stage's weight is not pruned)")
    else:
        problem = pruning_block_problem(pruning, dense)
        _require(problem is None, f"pruning block shape: {problem}")
    return LinearImage(weights=weights, pruning_block_shape=pruning, bias=bias,
                       multiplier=multiplier, shift=shift, weight_scale=weight_scale,
                       input_scale=_positive_scale(fields["input_scale"], "input_scale"),
                       output_scale=_positive_scale(fields["output_scale"], "output_scale"))


def _weight_stream(reader: ByteReader, linear: LinearImage,
                   config: AcceleratorConfig) -> LinearImage:
    """The linear's blocks from its weights as the layer engine fetches them."""
    alignment = section_alignment(config, SectionKind.WEIGHT_STREAM)
    _require(reader.position % alignment == 0,
             f"starts at byte {reader.position}, not on a {alignment}-byte AXI burst of the "
             f"config's layer engine")
    hw = config.hardware
    try:
        blocks = unpack_stream_weights(reader.raw(reader.remaining, "weight stream"),
                                       linear.weights, hw.array_rows, hw.array_cols,
                                       hw.data_width)
    except ValueError as error:
        raise _SectionProblem(str(error)) from None
    weights = linear.weights
    matrix = BlockSparseMatrix(shape=weights.shape, block_shape=weights.block_shape,
                               row_ptr=weights.row_ptr, col_idx=weights.col_idx, blocks=blocks)
    return dataclasses.replace(linear, weights=matrix)


def _program(reader: ByteReader, layer: dict, norm: str) -> tuple:
    program = decode_program(reader)
    try:
        check_program(program, kept_heads=layer["kept_heads"], tokens=layer["tokens"],
                      token_keep=layer["token_keep"], norm=norm)
    except ValueError as error:
        raise _SectionProblem(f"program {error}") from None
    return program
