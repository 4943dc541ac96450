"""The single description of one accelerator instance: model topology, hardware knobs, checks, JSON.

An :class:`AcceleratorConfig` is what the exporter writes, what ``make verilog CONFIG=...`` reads,
and what every build directory keeps beside its Verilog. Presets live in ``configs/*.json`` and
are byte-for-byte the output of :meth:`AcceleratorConfig.to_json`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import reprlib
import sys
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sw.printable import printable, printable_int

__all__ = [
    "SCHEMA_VERSION",
    "CONFIGS_DIR",
    "MAX_MODEL_SIZE",
    "MAX_ARRAY_SIDE",
    "MAX_BUFFER_DEPTH",
    "MAX_CONFIG_BYTES",
    "ConfigError",
    "ModelTopology",
    "HardwareParams",
    "AcceleratorConfig",
    "minimum_buffers",
    "block_words",
    "preset_names",
    "load_config",
]

#: Version of the JSON layout this build reads and writes.
SCHEMA_VERSION = 1

#: Directory holding the preset files (``<repo>/configs``).
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"

#: Largest model dimension, head count, token count and layer count: the weight image numbers
#: layers in 16 bits (``0xFFFF`` is "no layer") and the layer program carries token counts and
#: head indices in 16-bit arguments.
MAX_MODEL_SIZE = 0xFFFF

#: ``ModelTopology.norm`` values: LayerNorm before (DeiT, ViT) or after (BERT) each sublayer.
NORMS = ("pre", "post")

#: Largest systolic array side and lane count of a special-function unit (TPU v1's array side).
MAX_ARRAY_SIDE = 256

#: Largest buffer depth, in words: 16 Mi words, 256 MiB for a 16-column array of 8-bit
#: operands, far beyond any FPGA's on-chip memory; the generator builds memories of this many
#: words in Python.
MAX_BUFFER_DEPTH = 1 << 24

#: Largest configuration file read (a preset is 516 to 537 bytes, `wc -c configs/*.json`).
MAX_CONFIG_BYTES = 1 << 20

_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")


class _ShortRepr(reprlib.Repr):
    # A JSON value of the wrong type, shown bounded in depth and length whatever the file
    # holds; ``repr`` already escapes what is not printable in a string.
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother = 2, 30, 30

    def repr_int(self, x: int, level: int) -> str:
        return printable_int(x)


_SHORT_REPR = _ShortRepr()


class ConfigError(ValueError):
    """A configuration is invalid; the message names the file/field, expected vs found."""


def _int_field(human: str, default: int | None = None, *, maximum: int | None = None) -> Any:
    # ``human`` is the field's name in messages ("Array rows must be a positive integer, ...");
    # ``maximum`` its upper bound (None: a width, whose range ``_check_bits`` checks).
    metadata = {"human": human, "maximum": maximum}
    if default is None:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def _is_int(value: object) -> bool:
    # ``True`` is an ``int`` to Python but never a size or a width here.
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: object) -> str:
    # A value in a message: never more than one short line of printable characters.
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _require_positive(value: object, human: str, maximum: int | None = None) -> None:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{human} must be a positive integer, not {_shown(value)}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{human} must be at most {maximum}, not {_shown(value)}")


def _check_positive_fields(instance: object) -> None:
    # Every field first, so that no check after this one computes with an unbounded number.
    for spec in fields(instance):
        if "choices" in spec.metadata:
            continue
        _require_positive(getattr(instance, spec.name), spec.metadata["human"],
                          spec.metadata["maximum"])


def _check_bits(instance: object, name: str, low: int, high: int) -> None:
    value = getattr(instance, name)
    if not low <= value <= high:
        human = next(spec for spec in fields(instance) if spec.name == name).metadata["human"]
        raise ConfigError(f"{human} must be between {low} and {high} bits, not {_shown(value)}")


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def block_words(block_rows: int, block_cols: int, array_cols: int) -> int:
    """Weight words of one pruning block, stored as words of ``array_cols`` operands (the one
    definition: ``sw.engine_params``, ``sw.packing`` and ``hw.gemm.geometry`` call it).

    >>> block_words(32, 32, 16)
    64
    """
    return _ceil_div(block_rows * block_cols, array_cols)


@dataclass(frozen=True, kw_only=True)
class ModelTopology:
    """Shape of the transformer encoder the accelerator runs.

    Parameters
    ----------
    hidden_size : int
        Width of the residual stream (768 for DeiT-B and BERT-base).
    num_heads : int
        Attention heads per layer, before any head pruning.
    head_dim : int
        Width of one head; ``hidden_size == num_heads * head_dim``.
    ffn_size : int
        Width of the feed-forward intermediate layer (HF ``intermediate_size``).
    tokens : int
        Sequence length, CLS token included (197 for a 224x224 image in 16x16 patches).
    layers : int
        Number of encoder layers.
    norm : str, default "pre"
        Where each layer normalises: ``"pre"`` (DeiT, ViT: LayerNorm before attention and
        before the FFN) or ``"post"`` (BERT: LayerNorm after each residual add). It decides the
        layer program (``sw.image.program.layer_program``); one engine runs both.

    Raises
    ------
    ConfigError
        If a size is not a positive integer at most :data:`MAX_MODEL_SIZE`,
        ``hidden_size != num_heads * head_dim``, or ``norm`` is not one of :data:`NORMS`.
    """

    hidden_size: int = _int_field("Hidden size", maximum=MAX_MODEL_SIZE)
    num_heads: int = _int_field("Number of heads", maximum=MAX_MODEL_SIZE)
    head_dim: int = _int_field("Head dimension", maximum=MAX_MODEL_SIZE)
    ffn_size: int = _int_field("FFN size", maximum=MAX_MODEL_SIZE)
    tokens: int = _int_field("Tokens", maximum=MAX_MODEL_SIZE)
    layers: int = _int_field("Layers", maximum=MAX_MODEL_SIZE)
    norm: str = field(default="pre", metadata={"human": "Norm", "choices": NORMS})

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ConfigError(f"Norm must be one of {', '.join(map(repr, NORMS))}, not "
                              f"{_shown(self.norm)}")
        _check_positive_fields(self)
        product = self.num_heads * self.head_dim
        if self.hidden_size != product:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) must equal num_heads ({self.num_heads}) x "
                f"head_dim ({self.head_dim}) = {product}"
            )


@dataclass(frozen=True, kw_only=True)
class HardwareParams:
    """Hardware knobs of one generated accelerator.

    A GEMM computes ``(tokens x K) @ (K x N)``; the systolic array's rows walk ``K`` (the
    weight's input dimension) and its columns walk ``N`` (the output dimension). A weight is
    stored in HF ``nn.Linear`` layout ``(out, in)`` and pruned in blocks of ``block_rows``
    outputs x ``block_cols`` inputs.

    Parameters
    ----------
    array_rows : int
        Systolic array rows ``R``: operands of ``K`` consumed per step.
    array_cols : int
        Systolic array columns ``C``: outputs of ``N`` produced per step.
    block_rows : int
        Pruning block size along a weight's output dimension; a multiple of ``array_cols``.
    block_cols : int
        Pruning block size along a weight's input dimension; a multiple of ``array_rows``.
    data_width : int, default 8
        Width in bits of a signed operand (weights and activations), 2..16.
    acc_width : int, default 32
        Width in bits of a signed accumulator, at least ``2 * data_width`` and at most 64.
    multiplier_width : int, default 16
        Width in bits of the unsigned requantization multiplier, 2..32.
    act_buffer_depth : int
        Activation buffer depth in words of ``array_rows`` operands.
    weight_buffer_depth : int
        Weight buffer depth in words of ``array_cols`` operands; holds at least one block.
    out_buffer_depth : int
        Output buffer depth in words of ``array_cols`` operands.
    softmax_lanes, gelu_lanes, layernorm_lanes : int, default 1
        Parallel lanes of each special-function unit.
    axi_burst_beats : int, default 16
        Beats of one AXI4 read burst of the layer engine's weight fetcher (a power of two; a
        burst is at most 4096 bytes). The AXI data width is one weight word,
        ``array_cols * data_width`` bits.
    axi_max_outstanding : int, default 2
        AXI4 read bursts the weight fetcher keeps in flight, 1..16.
    weight_stream_bytes : int, default 4096
        Bytes of the layer engine's on-chip weight stream buffer (the FIFO between the AXI
        read master and the array), a whole number of weight words.

    Raises
    ------
    ConfigError
        If a field is not a positive integer or exceeds its bound (:data:`MAX_ARRAY_SIDE`,
        :data:`MAX_MODEL_SIZE`, :data:`MAX_BUFFER_DEPTH`), a width is out of range, the array
        does not tile the block, or the weight buffer cannot hold one block.
    """

    array_rows: int = _int_field("Array rows", maximum=MAX_ARRAY_SIDE)
    array_cols: int = _int_field("Array columns", maximum=MAX_ARRAY_SIDE)
    block_rows: int = _int_field("Block rows", maximum=MAX_MODEL_SIZE)
    block_cols: int = _int_field("Block columns", maximum=MAX_MODEL_SIZE)
    data_width: int = _int_field("Data width", 8)
    acc_width: int = _int_field("Accumulator width", 32)
    multiplier_width: int = _int_field("Multiplier width", 16)
    act_buffer_depth: int = _int_field("Activation buffer depth", maximum=MAX_BUFFER_DEPTH)
    weight_buffer_depth: int = _int_field("Weight buffer depth", maximum=MAX_BUFFER_DEPTH)
    out_buffer_depth: int = _int_field("Output buffer depth", maximum=MAX_BUFFER_DEPTH)
    softmax_lanes: int = _int_field("Softmax lanes", 1, maximum=MAX_ARRAY_SIDE)
    gelu_lanes: int = _int_field("GELU lanes", 1, maximum=MAX_ARRAY_SIDE)
    layernorm_lanes: int = _int_field("LayerNorm lanes", 1, maximum=MAX_ARRAY_SIDE)
    axi_burst_beats: int = _int_field("AXI burst beats", 16, maximum=256)
    axi_max_outstanding: int = _int_field("AXI outstanding reads", 2, maximum=16)
    weight_stream_bytes: int = _int_field("Weight stream bytes", 4096,
                                          maximum=MAX_BUFFER_DEPTH)

    def __post_init__(self) -> None:
        _check_positive_fields(self)
        _check_bits(self, "data_width", 2, 16)
        _check_bits(self, "acc_width", 2, 64)
        if self.acc_width < 2 * self.data_width:
            raise ConfigError(
                f"acc_width ({self.acc_width}) must be at least 2 x data_width "
                f"({self.data_width}) = {2 * self.data_width}"
            )
        _check_bits(self, "multiplier_width", 2, 32)
        if self.block_rows % self.array_cols:
            raise ConfigError(
                f"block_rows ({self.block_rows}) must be a multiple of array_cols "
                f"({self.array_cols}), so the array tiles the block"
            )
        if self.block_cols % self.array_rows:
            raise ConfigError(
                f"block_cols ({self.block_cols}) must be a multiple of array_rows "
                f"({self.array_rows}), so the array tiles the block"
            )
        needed = block_words(self.block_rows, self.block_cols, self.array_cols)
        if self.weight_buffer_depth < needed:
            raise ConfigError(
                f"weight_buffer_depth ({self.weight_buffer_depth}) is too small: one block_rows "
                f"({self.block_rows}) x block_cols ({self.block_cols}) block / array_cols "
                f"({self.array_cols}) needs {needed} words"
            )


def minimum_buffers(
    model: ModelTopology, *, array_rows: int, array_cols: int, block_rows: int, block_cols: int
) -> dict[str, int]:
    """Smallest buffer depths that :class:`AcceleratorConfig` accepts for this model and array.

    Parameters
    ----------
    model : ModelTopology
        The model the buffers must hold.
    array_rows, array_cols : int
        Systolic array shape.
    block_rows, block_cols : int
        Pruning block shape.

    Returns
    -------
    dict of str to int
        ``act_buffer_depth`` (``tokens * max(hidden_size, ffn_size) / array_rows``),
        ``weight_buffer_depth`` (one block: ``block_rows * block_cols / array_cols``) and
        ``out_buffer_depth`` (``tokens * max(hidden_size, ffn_size) / array_cols``), each rounded
        up; the keys are :class:`HardwareParams` field names.

    Raises
    ------
    ConfigError
        If ``model`` is not a :class:`ModelTopology` or a size is not a positive integer.

    Examples
    --------
    >>> tiny = ModelTopology(hidden_size=64, num_heads=4, head_dim=16, ffn_size=128, tokens=17,
    ...                      layers=2)
    >>> minimum_buffers(tiny, array_rows=4, array_cols=4, block_rows=8, block_cols=8)
    {'act_buffer_depth': 544, 'weight_buffer_depth': 16, 'out_buffer_depth': 544}
    """
    if not isinstance(model, ModelTopology):
        raise ConfigError(f"model must be a ModelTopology, not {type(model).__name__}")
    for value, human in (
        (array_rows, "Array rows"),
        (array_cols, "Array columns"),
        (block_rows, "Block rows"),
        (block_cols, "Block columns"),
    ):
        _require_positive(value, human)
    widest = max(model.hidden_size, model.ffn_size)
    return {
        "act_buffer_depth": _ceil_div(model.tokens * widest, array_rows),
        "weight_buffer_depth": block_words(block_rows, block_cols, array_cols),
        "out_buffer_depth": _ceil_div(model.tokens * widest, array_cols),
    }


@dataclass(frozen=True, kw_only=True)
class AcceleratorConfig:
    """One accelerator instance: a name, the model it runs and its hardware parameters.

    Parameters
    ----------
    name : str
        Letters, digits, ``_``, ``.`` and ``-``, not starting with ``.``; used as the build
        directory name (``build/<name>/``).
    model : ModelTopology
        The model topology.
    hardware : HardwareParams
        The hardware knobs.

    Raises
    ------
    ConfigError
        If a field is invalid, a pruning block does not divide the model's dimensions, or an
        activation or output buffer cannot hold the widest GEMM operand.
    """

    name: str
    model: ModelTopology
    hardware: HardwareParams

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ConfigError(f"Name must be a string, not {_shown(self.name)}")
        if not _NAME_PATTERN.fullmatch(self.name) or self.name.startswith("."):
            raise ConfigError(
                f"Name must be letters, digits, '_', '.' or '-' and not start with '.', "
                f"not {_shown(self.name)}"
            )
        if not isinstance(self.model, ModelTopology):
            raise ConfigError(f"model must be a ModelTopology, not {type(self.model).__name__}")
        if not isinstance(self.hardware, HardwareParams):
            raise ConfigError(
                f"hardware must be a HardwareParams, not {type(self.hardware).__name__}"
            )
        self._check_blocks()
        self._check_buffers()

    def _check_blocks(self) -> None:
        model, hw = self.model, self.hardware
        for block_name, block, dim_name, dim, why in (
            ("block_cols", hw.block_cols, "hidden_size", model.hidden_size, ""),
            ("block_cols", hw.block_cols, "ffn_size", model.ffn_size, ""),
            ("block_rows", hw.block_rows, "hidden_size", model.hidden_size, ""),
            ("block_rows", hw.block_rows, "ffn_size", model.ffn_size, ""),
            # Q/K/V split their output rows by head and the attention output projection splits
            # its input columns by head; a block that straddled two heads could not be skipped
            # with either head.
            ("block_rows", hw.block_rows, "head_dim", model.head_dim,
             ", so a pruning block never straddles two heads"),
            ("block_cols", hw.block_cols, "head_dim", model.head_dim,
             ", so a pruning block never straddles two heads"),
        ):
            if dim % block:
                raise ConfigError(f"{block_name} ({block}) must divide {dim_name} ({dim}){why}")

    def _check_buffers(self) -> None:
        model, hw = self.model, self.hardware
        minimum = minimum_buffers(
            model,
            array_rows=hw.array_rows,
            array_cols=hw.array_cols,
            block_rows=hw.block_rows,
            block_cols=hw.block_cols,
        )
        widest = self.max_gemm_inner
        if hw.act_buffer_depth < minimum["act_buffer_depth"]:
            raise ConfigError(
                f"act_buffer_depth ({hw.act_buffer_depth}) is too small: tokens ({model.tokens}) "
                f"x widest input ({widest}) / array_rows ({hw.array_rows}) needs "
                f"{minimum['act_buffer_depth']} words"
            )
        widest = self.max_gemm_outer
        if hw.out_buffer_depth < minimum["out_buffer_depth"]:
            raise ConfigError(
                f"out_buffer_depth ({hw.out_buffer_depth}) is too small: tokens ({model.tokens}) "
                f"x widest output ({widest}) / array_cols ({hw.array_cols}) needs "
                f"{minimum['out_buffer_depth']} words"
            )

    def check_layer_engine(self) -> None:
        """Check the limits of the layer engine, the whole accelerator (``make verilog``).

        A configuration may describe a block-sparse GEMM or a special-function unit that the
        layer engine cannot host (the co-simulations use non-square arrays and three-lane units
        on their own); whatever targets the layer engine (the exporter, ``hw.generate``'s
        default top, the layer cycle model) calls this first, so that a configuration fails
        where it enters, not at ``make verilog``. ``sw.engine_params`` asks it too.

        Raises
        ------
        ConfigError
            ``config 'tiny': the layer engine needs array_rows (4) equal to array_cols (8): it
            transposes key tiles in place``, or a unit's lanes that do not divide
            ``array_cols``.
        """
        hw = self.hardware
        if hw.array_rows != hw.array_cols:
            raise ConfigError(
                f"config '{self.name}': the layer engine needs array_rows ({hw.array_rows}) "
                f"equal to array_cols ({hw.array_cols}): it transposes key tiles in place"
            )
        for lanes_field in ("softmax_lanes", "gelu_lanes", "layernorm_lanes"):
            lanes = getattr(hw, lanes_field)
            if hw.array_cols % lanes:
                raise ConfigError(
                    f"config '{self.name}': the layer engine needs {lanes_field} ({lanes}) to "
                    f"divide array_cols ({hw.array_cols}): a unit takes whole scratchpad "
                    f"vectors of array_cols values in beats of its lanes"
                )
        self._check_weight_stream()

    def _check_weight_stream(self) -> None:
        # the AXI data bus is one weight word: a power of two of whole bytes
        hw = self.hardware
        bits = hw.array_cols * hw.data_width
        word = bits // 8
        if bits % 8 or word & (word - 1):
            raise ConfigError(
                f"config '{self.name}': the layer engine's AXI data bus is one weight word, "
                f"array_cols x data_width = {bits} bits, which must be a power of two of whole "
                f"bytes")
        beats = hw.axi_burst_beats
        if beats & (beats - 1) or beats * word > 4096:
            raise ConfigError(
                f"config '{self.name}': axi_burst_beats ({beats}) must be a power of two whose "
                f"burst ({beats} x {word} bytes) is at most 4096 bytes (an AXI burst does not "
                f"cross a 4 KiB boundary)")
        words, left = divmod(hw.weight_stream_bytes, word)
        needed = hw.array_rows + beats
        if left or words < needed:
            raise ConfigError(
                f"config '{self.name}': weight_stream_bytes ({hw.weight_stream_bytes}) must be "
                f"a whole number of {word}-byte weight words and hold at least one tile and "
                f"one burst: array_rows + axi_burst_beats = {needed} words "
                f"({needed * word} bytes)")

    @property
    def schema_version(self) -> int:
        """Version of the JSON layout, :data:`SCHEMA_VERSION`."""
        return SCHEMA_VERSION

    @property
    def max_gemm_rows(self) -> int:
        """Most rows (``M``, tokens) of any GEMM operand: ``model.tokens``."""
        return self.model.tokens

    @property
    def max_gemm_inner(self) -> int:
        """Widest reduction dimension ``K`` of a weight GEMM: ``max(hidden_size, ffn_size)``."""
        return max(self.model.hidden_size, self.model.ffn_size)

    @property
    def max_gemm_outer(self) -> int:
        """Widest output dimension ``N`` of a weight GEMM: ``max(hidden_size, ffn_size)``."""
        return max(self.model.hidden_size, self.model.ffn_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form: ``schema_version``, ``name``, ``model``, ``hardware``.

        Keys within ``model`` and ``hardware`` are in dataclass field order.
        """
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "model": dataclasses.asdict(self.model),
            "hardware": dataclasses.asdict(self.hardware),
        }

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`, indented by 2 and ending in a newline.

        The same configuration always gives the same bytes.
        """
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: object, *, source: str = "<dict>") -> AcceleratorConfig:
        """Build and validate a configuration from its :meth:`to_dict` form.

        Fields of :class:`HardwareParams` that have a default may be left out.

        Parameters
        ----------
        data : dict
            Parsed JSON.
        source : str
            Where ``data`` came from; every error message starts with it.

        Raises
        ------
        ConfigError
            If the top level is not an object, ``schema_version`` is missing or not
            :data:`SCHEMA_VERSION`, a field is missing, unknown or of the wrong type, or the
            values do not validate.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: top level must be a JSON object, found {_found(data)}")
        if "schema_version" not in data:
            raise ConfigError(f"{source}: missing field 'schema_version'")
        version = data["schema_version"]
        if not _is_int(version):
            raise ConfigError(
                f"{source}: field 'schema_version' must be an integer, found {_found(version)}"
            )
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"{source}: schema_version {printable_int(version)} is not supported "
                f"(this build reads {SCHEMA_VERSION})"
            )
        top_fields = ["schema_version", *(spec.name for spec in fields(cls))]
        _check_keys(data, top_fields, set(top_fields), "", source)
        if not isinstance(data["name"], str):
            raise ConfigError(
                f"{source}: field 'name' must be a string, found {_found(data['name'])}"
            )
        model_fields = _section(data["model"], ModelTopology, "model", source)
        hardware_fields = _section(data["hardware"], HardwareParams, "hardware", source)
        try:
            return cls(
                name=data["name"],
                model=ModelTopology(**model_fields),
                hardware=HardwareParams(**hardware_fields),
            )
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> AcceleratorConfig:
        """Read and validate a configuration from a JSON file.

        Raises
        ------
        ConfigError
            If the file cannot be read, is not UTF-8 JSON, repeats a key, or
            :meth:`from_dict` rejects it; the message starts with ``path``.
        """
        source = os.fspath(path)
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_CONFIG_BYTES + 1)     # /dev/zero is not read to the end
        except FileNotFoundError:
            raise ConfigError(f"{source}: no such file") from None
        except OSError as error:
            raise ConfigError(f"{source}: cannot read ({error.strerror or error})") from None
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES} bytes, not an "
                              f"accelerator config")
        return cls.from_json_text(raw, source=source)

    @classmethod
    def from_json_text(cls, text: str | bytes, *, source: str = "<text>") -> AcceleratorConfig:
        """Parse and validate the JSON text of a configuration (bytes must be UTF-8).

        Every key or value echoed from ``text`` into a message is escaped
        (:func:`sw.printable.printable`), so a message is always one line.

        Raises
        ------
        ConfigError
            If ``text`` is not UTF-8, not JSON, holds an integer of more digits than Python
            converts or nesting deeper than it parses, repeats a key, or :meth:`from_dict`
            rejects it; the message starts with ``source``.
        """
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ConfigError(f"{source}: not UTF-8 text ({error.reason})") from None
        try:
            data = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
        except json.JSONDecodeError as error:
            raise ConfigError(
                f"{source}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
            ) from None
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
        except ValueError:
            # Python refuses to convert an integer of more digits than this.
            raise ConfigError(f"{source}: invalid JSON: an integer of more than "
                              f"{sys.get_int_max_str_digits()} digits") from None
        except RecursionError:
            raise ConfigError(f"{source}: invalid JSON: nested too deeply") from None
        return cls.from_dict(data, source=source)

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_json` to ``path`` atomically and return ``path``.

        The text goes to a temporary file in the same directory, which then replaces ``path``;
        a reader sees the old file or the new one, never a partial one. An existing file keeps
        its permissions; a new one gets ``0o644``. The directory must exist.
        """
        path = Path(path)
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
        handle = tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", newline="\n", dir=path.parent, prefix=f".{path.name}.",
            suffix=".tmp", delete=False,
        )
        try:
            with handle:
                handle.write(self.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(handle.name, mode)
            os.replace(handle.name, path)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
        return path

    def replace(self, **changes: Any) -> AcceleratorConfig:
        """Return a copy with some fields changed, validated like a new configuration.

        Parameters
        ----------
        name : str, optional
            New name.
        model : ModelTopology or dict, optional
            A whole new topology, or a dict of the topology fields to change.
        hardware : HardwareParams or dict, optional
            A whole new set of hardware parameters, or a dict of the fields to change.

        Raises
        ------
        ConfigError
            If a field is unknown or the result does not validate.

        Examples
        --------
        >>> tiny = load_config("tiny")
        >>> tiny.replace(name="tiny_8x8", hardware={"array_rows": 8, "array_cols": 8}).name
        'tiny_8x8'
        """
        _check_keys(changes, [spec.name for spec in fields(self)], set(), "", "replace()")
        for section, section_cls in (("model", ModelTopology), ("hardware", HardwareParams)):
            value = changes.get(section)
            if isinstance(value, dict):
                names = [spec.name for spec in fields(section_cls)]
                _check_keys(value, names, set(), f"{section}.", "replace()")
                changes[section] = dataclasses.replace(getattr(self, section), **value)
        return dataclasses.replace(self, **changes)


def _found(value: object) -> str:
    # "str '197'", "list [1, 2]", "null": the JSON value as the user wrote it, with its type.
    if value is None:
        return "null"
    return f"{type(value).__name__} {_shown(value)}"


def _check_keys(
    data: dict, known: list[str], required: set[str], prefix: str, source: str
) -> None:
    for key in data:
        if key not in known:
            message = f"{source}: unknown field '{prefix}{printable(key)}'"
            close = difflib.get_close_matches(str(key), known, n=1)
            if close:
                message += f" (did you mean '{prefix}{close[0]}'?)"
            raise ConfigError(message)
    for key in known:
        if key in required and key not in data:
            raise ConfigError(f"{source}: missing field '{prefix}{key}'")


def _section(data: object, section_cls: type, section: str, source: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: field '{section}' must be an object, found {_found(data)}")
    specs = fields(section_cls)
    required = {spec.name for spec in specs if spec.default is dataclasses.MISSING}
    _check_keys(data, [spec.name for spec in specs], required, f"{section}.", source)
    choices = {spec.name: spec.metadata["choices"] for spec in specs
               if "choices" in spec.metadata}
    for key, value in data.items():
        if key in choices:
            if value not in choices[key]:
                raise ConfigError(f"{source}: field '{section}.{key}' must be one of "
                                  f"{', '.join(map(repr, choices[key]))}, found {_found(value)}")
        elif not _is_int(value):
            raise ConfigError(
                f"{source}: field '{section}.{key}' must be an integer, found {_found(value)}"
            )
    return data


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ConfigError(f"duplicate key '{printable(key)}'")
        result[key] = value
    return result


def preset_names() -> list[str]:
    """Names of the presets in :data:`CONFIGS_DIR`, sorted."""
    return sorted(path.stem for path in CONFIGS_DIR.glob("*.json"))


def load_config(preset_or_path: str | os.PathLike) -> AcceleratorConfig:
    """Load a preset by name (``"tiny"``, ``"deit_b16"``) or a configuration file by path.

    A string is a path when it contains a path separator or ends in ``.json``; otherwise it is a
    preset name, or, if no preset has that name, a path to an existing file. A non-string
    ``os.PathLike`` is always a path.

    Raises
    ------
    ConfigError
        If the preset is unknown (the message lists the presets) or the file is invalid.
    """
    if not isinstance(preset_or_path, str):
        return _load_file(preset_or_path)
    text = preset_or_path
    looks_like_path = "/" in text or os.sep in text or text.endswith(".json")
    if not looks_like_path:
        preset = CONFIGS_DIR / f"{text}.json"
        if text in preset_names():
            return AcceleratorConfig.from_json_file(preset)
        if not Path(text).is_file():
            names = ", ".join(preset_names()) or "(none)"
            raise ConfigError(f"unknown preset {_shown(text)}; presets: {names}")
    return _load_file(text)


#: What the exporter writes beside the image: the image's own config, which is the truth.
_EXPORT_PARAMS, _EXPORT_IMAGE = "params.json", "weights.bin"


def _flat_fields(config: AcceleratorConfig) -> dict[str, Any]:
    # "name", "model.tokens", "hardware.array_rows", ...: the fields as messages name them.
    flat: dict[str, Any] = {}
    for key, value in config.to_dict().items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": item for inner, item in value.items()})
        else:
            flat[key] = value
    return flat


def _load_file(path: str | os.PathLike) -> AcceleratorConfig:
    """Read a configuration file; a ``params.json`` with a ``weights.bin`` beside it must be
    the config inside that image (an edited one would build hardware the image does not fit)."""
    config = AcceleratorConfig.from_json_file(path)
    path = Path(path)
    image_path = path.parent / _EXPORT_IMAGE
    if path.name != _EXPORT_PARAMS or not image_path.exists():
        return config
    # The image format builds on this module, so it is imported only when needed.
    from sw.image.loader import load_image
    try:
        built_for = load_image(image_path).config
    except ValueError as error:                  # ImageError, one line naming the image
        raise ConfigError(f"{path}: cannot check it against the image beside it: "
                          f"{error}") from None
    expected, found = _flat_fields(built_for), _flat_fields(config)
    for name, value in expected.items():
        if found[name] != value:
            raise ConfigError(
                f"{path}: field '{name}' disagrees with the image beside it ({image_path}): "
                f"expected {_shown(value)}, found {_shown(found[name])}; re-export instead of "
                f"editing {_EXPORT_PARAMS}"
            )
    return config
