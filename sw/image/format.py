"""What a weight image holds: its constants, record layouts and in-memory dataclasses.

``docs/image-format.md`` is the human-readable form of this file; the writer
(:mod:`sw.image.writer`) and the loader (:mod:`sw.image.loader`) both take every magic number,
field order and element type from here, and every byte order from :mod:`sw.packing`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from sw.block_sparse import BlockSparseMatrix
from sw.config import AcceleratorConfig
from sw.engine_params import EngineParams
from sw.isa import TENSOR_ROLES  # linears by ``tensor`` id, GEMM's ``arg``
from sw.golden.kernels import (GeluConstants, LayerNormConstants, ResidualConstants,
                               SoftmaxConstants)
from sw.quantize.linear import QuantizedLinear

__all__ = [
    "MAGIC", "FORMAT_VERSION", "BYTE_ORDER_MARK", "HEADER_SIZE", "HEADER_FIELDS",
    "FILE_CRC_OFFSET", "SECTION_ALIGNMENT", "SECTION_ENTRY_FIELDS", "SECTION_ENTRY_SIZE",
    "NO_LAYER", "NO_TENSOR", "SectionKind", "TENSOR_ROLES", "ARCHITECTURES", "MODEL_FIELDS",
    "LAYER_FIELDS", "SCALE_POINTS", "LAYERNORM_FIELDS", "SOFTMAX_FIELDS", "CONTEXT_FIELDS",
    "RESIDUAL_FIELDS", "GELU_FIELDS", "LINEAR_FIELDS", "EMBEDDING_FIELDS", "HEAD_FIELDS",
    "STAGE_TENSORS", "ImageError", "SectionEntry", "section_alignment",
    "ModelInfo", "LinearImage", "LayerImage", "EmbeddingImage", "HeadImage", "WeightImage",
    "section_name", "dense_shape", "pruning_block_problem",
]

#: First 8 bytes of every image. The non-ASCII first byte and the CR LF pair catch 7-bit and
#: line-ending conversions, as in PNG's signature.
MAGIC = b"\x89SPIMG\r\n"

#: Version of the layout described here; a loader reads exactly the versions it knows.
#: Version 3 added the model around the encoder (EMBEDDING, HEAD and their linears and
#: programs); version 2 held the encoder only.
FORMAT_VERSION = 3

#: Written as a u32: the bytes ``04 03 02 01`` on disk say the image is little-endian.
BYTE_ORDER_MARK = 0x01020304

#: Bytes of the header, which the section table follows.
HEADER_SIZE = 64

#: Header fields after the 8-byte magic, then zero padding up to :data:`HEADER_SIZE`.
HEADER_FIELDS = (
    ("format_version", "u32"),
    ("byte_order", "u32"),
    ("header_size", "u32"),
    ("section_count", "u32"),
    ("file_size", "u64"),
    ("table_offset", "u64"),
    ("table_crc32", "u32"),
    ("file_crc32", "u32"),
)

#: Offset of ``file_crc32``: the file's CRC-32 is computed with these 4 bytes read as zero.
FILE_CRC_OFFSET = 44

#: Every section starts at a multiple of this many bytes (zero bytes pad the gaps).
SECTION_ALIGNMENT = 8

#: One entry of the section table.
SECTION_ENTRY_FIELDS = (
    ("kind", "u16"),
    ("layer", "u16"),
    ("tensor", "u16"),
    ("reserved", "u16"),
    ("offset", "u64"),
    ("length", "u64"),
    ("crc32", "u32"),
    ("reserved2", "u32"),
)
SECTION_ENTRY_SIZE = 32

#: ``layer`` of a section that belongs to the whole model; ``tensor`` of a non-LINEAR section.
NO_LAYER = 0xFFFF
NO_TENSOR = 0xFFFF

#: ``tensor`` of the model-wide LINEAR, WEIGHT_STREAM and PROGRAM sections of the two stages
#: around the encoder (``layer`` is NO_LAYER): the patch embedding's linear and program, the
#: classifier and the head program. Layer linears are 0..5 (TENSOR_ROLES).
STAGE_TENSORS = {"embedding": 6, "head": 7}


class SectionKind(enum.IntEnum):
    """What a section holds (the ``kind`` field of its table entry)."""

    CONFIG = 1            #: the accelerator configuration, UTF-8 JSON (params.json's bytes)
    MODEL = 2             #: model-wide numbers (MODEL_FIELDS)
    FINAL_LAYERNORM = 3   #: the encoder's final LayerNorm (a LAYERNORM record)
    EMBEDDING = 4         #: the patch geometry, the embedding's residual add, the position table
    HEAD = 5              #: the classifier's class count
    LAYER = 16            #: one layer's sizes, scales, kept heads and FFN neurons
    LAYER_CONSTANTS = 17  #: one layer's LayerNorm / softmax / context / residual / GELU constants
    LINEAR = 18           #: one linear's block structure and quantization constants
    PROGRAM = 19          #: one layer's or stage's program (sw.image.program)
    WEIGHT_STREAM = 20    #: one linear's weights as the layer engine fetches them


#: Model architectures, by their ``architecture`` code.
ARCHITECTURES = {1: "deit", 2: "vit"}

MODEL_FIELDS = (
    ("architecture", "u32"),
    ("layers", "u32"),
    ("hidden_size", "u32"),
    ("num_heads", "u32"),
    ("head_dim", "u32"),
    ("ffn_size", "u32"),
    ("tokens", "u32"),
    ("reserved", "u32"),
    ("input_scale", "f64"),
    ("final_scale", "f64"),
)

#: Start of a LAYER section; ``len(SCALE_POINTS)`` f64 scales and the index lists follow.
LAYER_FIELDS = (
    ("head_dim", "u32"),
    ("kept_heads", "u32"),
    ("kept_ffn", "u32"),
    ("ffn_padding", "u32"),
    ("tokens", "u32"),
    ("token_keep", "u32"),
)

#: Activation points whose real scale a LAYER section stores, in this order
#: (``sw.quantize.calibration.ACTIVATION_POINTS``).
SCALE_POINTS = ("input", "ln1", "q", "k", "v", "context", "attn", "residual1", "ln2", "fc1",
                "gelu", "fc2", "output")

#: Scalars of a LAYERNORM record; ``gamma`` (i16 x dim) and ``beta`` (i64 x dim) follow.
LAYERNORM_FIELDS = tuple((name, "i64") for name in (
    "dim", "norm_bits", "multiplier", "shift", "in_width", "out_width"))
SOFTMAX_FIELDS = tuple((name, "i64") for name in (
    "multiplier", "shift", "frac_bits", "poly_b", "poly_c", "recip_bits", "out_bits", "max_len",
    "in_width"))
CONTEXT_FIELDS = (("context_multiplier", "i64"), ("context_shift", "i64"))
RESIDUAL_FIELDS = tuple((name, "i64") for name in (
    "multiplier_a", "multiplier_b", "shift", "in_width", "out_width"))
GELU_FIELDS = tuple((name, "i64") for name in (
    "clip_width", "erf_multiplier", "erf_shift", "frac_bits", "erf_b", "erf_c", "multiplier",
    "shift", "in_width", "out_width"))

#: Start of a LINEAR section; the BCSR row pointers and column indices and the per-output
#: arrays follow (the blocks' weights are the linear's WEIGHT_STREAM section).
LINEAR_FIELDS = (
    ("out_features", "u32"),
    ("in_features", "u32"),
    ("block_rows", "u32"),
    ("block_cols", "u32"),
    ("pruning_block_rows", "u32"),
    ("pruning_block_cols", "u32"),
    ("stored_blocks", "u32"),
    ("reserved", "u32"),
    ("input_scale", "f64"),
    ("output_scale", "f64"),
)


#: Start of the EMBEDDING section; a RESIDUAL record and the int16 position table
#: ``(tokens, hidden_size)`` follow.
EMBEDDING_FIELDS = (
    ("patch_size", "u32"),
    ("channels", "u32"),
    ("image_size", "u32"),
    ("protected", "u32"),
)

#: The HEAD section.
HEAD_FIELDS = (
    ("classes", "u32"),
    ("reserved", "u32"),
)


class ImageError(ValueError):
    """A weight image cannot be read or written; one line naming the file, section and offset."""


@dataclass(frozen=True)
class SectionEntry:
    """One entry of the section table."""

    kind: int
    layer: int
    tensor: int
    offset: int
    length: int
    crc32: int

    @property
    def name(self) -> str:
        return section_name(self.kind, self.layer, self.tensor)


def section_alignment(config, kind: int) -> int:
    """Bytes a section's offset is a multiple of: a WEIGHT_STREAM starts on a whole AXI burst
    of the config's layer engine (``EngineParams.burst_bytes``), so that the engine fetches it
    in place; every other section on :data:`SECTION_ALIGNMENT`."""
    if kind != SectionKind.WEIGHT_STREAM:
        return SECTION_ALIGNMENT
    return max(SECTION_ALIGNMENT, EngineParams.from_config(config).burst_bytes)


def section_name(kind: int, layer: int, tensor: int) -> str:
    """``"layer 1 fc1 (LINEAR)"``, ``"MODEL"``: how messages and summaries name a section."""
    try:
        kind_name = SectionKind(kind).name
    except ValueError:
        kind_name = f"kind {kind}"
    parts = []
    if layer != NO_LAYER:
        parts.append(f"layer {layer}")
    stages = {number: stage for stage, number in STAGE_TENSORS.items()}
    if tensor != NO_TENSOR:
        parts.append(TENSOR_ROLES[tensor] if tensor < len(TENSOR_ROLES)
                     else stages.get(tensor, f"tensor {tensor}"))
    return f"{' '.join(parts)} ({kind_name})" if parts else kind_name


@dataclass(frozen=True)
class ModelInfo:
    """Model-wide numbers of the MODEL section: the unpruned shapes and the outer scales."""

    architecture: str          #: "deit" or "vit"
    layers: int
    hidden_size: int
    num_heads: int             #: heads per layer before pruning
    head_dim: int
    ffn_size: int              #: FFN width before pruning
    tokens: int                #: sequence length entering the encoder (CLS, distillation)
    input_scale: float         #: real scale of the int16 embeddings entering layer 0
    final_scale: float         #: real scale of the int8 final-LayerNorm output


def dense_shape(role: str, model) -> tuple[int, int]:
    """``(out, in)`` of the linear ``role`` in the unpruned ``model`` (a :class:`ModelInfo` or
    anything with its ``hidden_size``, ``num_heads``, ``head_dim`` and ``ffn_size``)."""
    hidden, attention, ffn = model.hidden_size, model.num_heads * model.head_dim, model.ffn_size
    return {"q": (attention, hidden), "k": (attention, hidden), "v": (attention, hidden),
            "o": (hidden, attention), "fc1": (ffn, hidden), "fc2": (hidden, ffn)}[role]


def pruning_block_problem(block, dense: tuple[int, int]) -> str | None:
    """What is wrong with a linear's pruning block shape, or None: it is ``(0, 0)`` (not pruned
    or unknown) or a shape of positive integers that divides the unpruned ``dense`` weight."""
    rows, cols = block
    if (rows, cols) == (0, 0):
        return None
    if (all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in (rows, cols))
            and dense[0] % rows == 0 and dense[1] % cols == 0):
        return None
    shown = "x".join(str(n) if isinstance(n, int) else repr(n) for n in (rows, cols))
    return f"{shown} must be 0x0 (not pruned) or divide the unpruned {dense[0]}x{dense[1]} weight"


@dataclass(frozen=True, eq=False)
class LinearImage:
    """One linear of a layer as stored: BCSR int8 weights in the hardware's block shape."""

    weights: BlockSparseMatrix      #: (out, in) after head / neuron removal
    pruning_block_shape: tuple      #: (rows, cols) the pruner used; (0, 0) if not pruned
    bias: np.ndarray                #: (out,) int32, accumulator units
    multiplier: np.ndarray          #: (out,) requantization multipliers
    shift: np.ndarray               #: (out,) requantization shifts
    weight_scale: np.ndarray        #: (out,) f64 real scale of each output channel's weights
    input_scale: float
    output_scale: float

    def quantized(self) -> QuantizedLinear:
        """The golden model's form (dense weight, zeros where no block is stored)."""
        return QuantizedLinear(weight=self.weights.to_dense(), weight_scale=self.weight_scale,
                               bias=self.bias, multiplier=self.multiplier, shift=self.shift,
                               input_scale=self.input_scale, output_scale=self.output_scale)


@dataclass(frozen=True, eq=False)
class LayerImage:
    """Everything the accelerator needs for one encoder layer."""

    index: int
    head_dim: int
    kept_heads: tuple              #: original indices of the heads present, increasing
    kept_ffn: tuple                #: original indices of the FFN neurons present, increasing
    ffn_padding: int               #: how many of ``kept_ffn`` were added only to fill a block
    tokens: int                    #: token rows entering the layer
    token_keep: int                #: token rows kept after attention (== tokens: no gather)
    scales: dict                   #: SCALE_POINTS -> real scale
    ln1: LayerNormConstants
    softmax: SoftmaxConstants
    context_multiplier: int
    context_shift: int
    residual1: ResidualConstants
    ln2: LayerNormConstants
    gelu: GeluConstants
    residual2: ResidualConstants
    linears: dict                  #: TENSOR_ROLES -> LinearImage
    program: tuple                 #: Instructions (sw.image.program)


@dataclass(frozen=True, eq=False)
class EmbeddingImage:
    """The stage before the encoder: what the host cuts from the image, the patch linear,
    the position table its residual epilogue adds, and the program that runs them."""

    patch_size: int                #: side of a square patch, in pixels (the conv's stride)
    channels: int                  #: input channels
    image_size: int                #: side of the square input image, in pixels
    protected: int                 #: leading rows without a patch (class, distillation)
    residual: ResidualConstants    #: position table (int16) + linear output (int8) -> int16
    position: np.ndarray           #: int16 (tokens, hidden), class / distillation folded in
    linear: LinearImage            #: (hidden, channels * patch_size ** 2), not pruned
    program: tuple                 #: sw.image.program.embedding_program of its tensor slot

    @property
    def patch_scale(self) -> float:
        """Real value of one unit of the int8 patch rows the host loads."""
        return self.linear.input_scale


@dataclass(frozen=True, eq=False)
class HeadImage:
    """The stage after the encoder: the final LayerNorm (``WeightImage.final_layernorm``) and
    the classifier on the class token, and the program that runs them."""

    classes: int                   #: real classes; the linear's further rows are zero padding
    linear: LinearImage            #: (classes padded to block_rows, hidden), int8 logits
    program: tuple                 #: sw.image.program.head_program of its tensor slot

    @property
    def logit_scale(self) -> float:
        """Real value of one unit of the int8 logits."""
        return self.linear.output_scale


@dataclass(frozen=True, eq=False)
class WeightImage:
    """A whole image: the accelerator config, the model, its stages and layers.

    ``sections`` and ``file_size`` are filled in by the loader (empty / 0 before writing),
    ``path`` by ``load_image`` (the file the co-simulation's AXI memory is loaded with).
    """

    config: AcceleratorConfig
    model: ModelInfo
    final_layernorm: LayerNormConstants
    embedding: EmbeddingImage
    layers: tuple                  #: LayerImage per encoder layer
    head: HeadImage
    sections: tuple = field(default=())
    file_size: int = 0
    path: str | None = None

