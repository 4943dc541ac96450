"""Memory sizes and port layouts of a GEMM engine, derived from an accelerator config.

Generators, drivers and testbenches all take their widths and depths from here, so that the
hardware and everything that talks to it agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from sw.config import AcceleratorConfig, block_words
from sw.numerics import SHIFT_WIDTH


class LoadTarget(enum.Enum, shape=3):
    """Memory written by a load command."""

    ACTIVATION = 0   #: activation words, ``array_rows`` operands each
    WEIGHT = 1       #: block-compressed weight words, ``array_cols`` operands each
    ROW_PTR = 2      #: BCSR row pointers, one per word
    COL_IDX = 3      #: BCSR block column indices, one per word
    QUANT = 4        #: (bias, multiplier, shift) records, ``array_cols`` per word


def _bits_for(count: int) -> int:
    """Bits of an unsigned value in ``range(count)`` (at least 1)."""
    return max(1, (count - 1).bit_length())


def unsigned_for(count: int):
    """Shape of an unsigned value in ``range(count)`` (at least 1 bit)."""
    return unsigned(_bits_for(count))


@dataclass(frozen=True)
class GemmGeometry:
    """Sizes of one GEMM engine (see ``sw.packing`` for what each memory word holds).

    ``row_ptr_depth`` and ``quant_depth`` default (0) to what one weight of ``max_outer``
    outputs needs; an engine that keeps several weights resident at once (``GemmCore`` inside
    the layer engine) sets them, and ``weight_depth`` (which sizes the column-index memory too),
    larger with ``dataclasses.replace``. ``act_depth`` and ``out_depth`` size the activation and
    output address spaces. ``resident_weight_depth`` (None: ``weight_depth``) sizes the on-chip
    weight memory (:attr:`weight_memory_depth`); a layer engine, whose linears stream their weights from external memory,
    keeps only the staged attention weights there, while ``weight_depth`` still sizes the block
    numbering (the column-index memory and the row pointers).
    """

    array_rows: int
    array_cols: int
    block_rows: int
    block_cols: int
    data_width: int
    acc_width: int
    multiplier_width: int
    max_tokens: int
    max_inner: int
    max_outer: int
    act_depth: int
    weight_depth: int
    out_depth: int
    row_ptr_depth: int = 0
    quant_depth: int = 0
    resident_weight_depth: int | None = None

    def __post_init__(self):
        if not self.row_ptr_depth:
            object.__setattr__(self, "row_ptr_depth", self.max_block_rows + 1)
        if not self.quant_depth:
            object.__setattr__(self, "quant_depth", self.max_out_tiles)

    @classmethod
    def from_config(cls, config: AcceleratorConfig) -> "GemmGeometry":
        hw = config.hardware
        return cls(array_rows=hw.array_rows, array_cols=hw.array_cols,
                   block_rows=hw.block_rows, block_cols=hw.block_cols,
                   data_width=hw.data_width, acc_width=hw.acc_width,
                   multiplier_width=hw.multiplier_width,
                   max_tokens=config.max_gemm_rows, max_inner=config.max_gemm_inner,
                   max_outer=config.max_gemm_outer, act_depth=hw.act_buffer_depth,
                   weight_depth=hw.weight_buffer_depth, out_depth=hw.out_buffer_depth)

    @property
    def weight_memory_depth(self) -> int:
        """Words of the on-chip weight memory."""
        return self.weight_depth if self.resident_weight_depth is None \
            else self.resident_weight_depth

    @property
    def out_tiles_per_block(self) -> int:
        """Array tiles along a block's outputs: ``block_rows / array_cols``."""
        return self.block_rows // self.array_cols

    @property
    def in_tiles_per_block(self) -> int:
        """Array tiles along a block's inputs: ``block_cols / array_rows``."""
        return self.block_cols // self.array_rows

    @property
    def words_per_block(self) -> int:
        """Weight words of one stored block."""
        return block_words(self.block_rows, self.block_cols, self.array_cols)

    @property
    def max_block_rows(self) -> int:
        return self.max_outer // self.block_rows

    @property
    def max_in_blocks(self) -> int:
        return self.max_inner // self.block_cols

    @property
    def max_blocks(self) -> int:
        """Stored blocks the weight memory holds."""
        return self.weight_depth // self.words_per_block

    @property
    def max_out_tiles(self) -> int:
        """Output tiles of the widest job: ``max_outer / array_cols``."""
        return self.max_outer // self.array_cols

    @property
    def depths(self) -> dict[LoadTarget, int]:
        """Words of each loadable memory."""
        return {LoadTarget.ACTIVATION: self.act_depth,
                LoadTarget.WEIGHT: self.weight_memory_depth,
                LoadTarget.ROW_PTR: self.row_ptr_depth,
                LoadTarget.COL_IDX: self.max_blocks, LoadTarget.QUANT: self.quant_depth}

    @cached_property
    def quant_record_layout(self) -> data.StructLayout:
        return data.StructLayout({"bias": signed(self.acc_width),
                                  "multiplier": unsigned(self.multiplier_width),
                                  "shift": unsigned(SHIFT_WIDTH)})

    @cached_property
    def word_shapes(self) -> dict[LoadTarget, object]:
        """Shape of each loadable memory's word."""
        return {
            LoadTarget.ACTIVATION: data.ArrayLayout(signed(self.data_width), self.array_rows),
            LoadTarget.WEIGHT: data.ArrayLayout(signed(self.data_width), self.array_cols),
            LoadTarget.ROW_PTR: unsigned(_bits_for(self.max_blocks + 1)),
            LoadTarget.COL_IDX: unsigned(_bits_for(self.max_in_blocks)),
            LoadTarget.QUANT: data.ArrayLayout(self.quant_record_layout, self.array_cols),
        }

    @cached_property
    def load_layout(self) -> data.StructLayout:
        """Payload of the load port: which memory, which word, the word."""
        addr_bits = max(_bits_for(depth) for depth in self.depths.values())
        data_bits = max(data.Layout.cast(shape).size if isinstance(shape, data.Layout)
                        else shape.width for shape in self.word_shapes.values())
        return data.StructLayout({"target": LoadTarget, "addr": unsigned(addr_bits),
                                  "data": unsigned(data_bits)})

    @cached_property
    def job_layout(self) -> data.StructLayout:
        """Payload of the job port: the GEMM's shape in the engine's units."""
        return data.StructLayout({
            "tokens": unsigned(_bits_for(self.max_tokens + 1)),
            "in_tiles": unsigned(_bits_for(self.max_inner // self.array_rows + 1)),
            "out_block_rows": unsigned(_bits_for(self.max_block_rows + 1)),
        })

    @cached_property
    def core_job_layout(self) -> data.StructLayout:
        """Payload of ``GemmCore``'s job port: the GEMM's shape as in :attr:`job_layout`, where
        its operands live and whether the output is requantized (``raw`` = 0) or the int
        accumulator sums (``raw`` = 1). Activation row ``r``, input tile ``t`` is read at
        ``act_base + r * act_stride + t``; output row ``r``, output tile ``n`` is written at
        ``out_base + r * out_stride + n``; the weight's row pointers start at row-pointer word
        ``row_ptr_base`` (their values are absolute block indices, so the column indices and
        weight words need no base) and its quantization words at ``quant_base``. With
        ``streamed`` the weight words come from the weight stream, tile after tile in the order
        the tiles are computed, instead of the weight memory."""
        return data.StructLayout({
            **{name: member.shape for name, member in self.job_layout},
            "act_base": unsigned(_bits_for(self.act_depth)),
            "act_stride": unsigned(_bits_for(self.act_depth + 1)),
            "out_base": unsigned(_bits_for(self.out_depth)),
            "out_stride": unsigned(_bits_for(self.out_depth + 1)),
            "row_ptr_base": unsigned(_bits_for(self.row_ptr_depth)),
            "quant_base": unsigned(_bits_for(self.quant_depth)),
            "raw": 1,
            "streamed": 1,
        })

    @cached_property
    def sequencer_job_layout(self) -> data.StructLayout:
        """Payload of ``BlockSequencer``'s job port."""
        return data.StructLayout({
            "out_block_rows": self.job_layout["out_block_rows"].shape,
            "row_ptr_base": unsigned(_bits_for(self.row_ptr_depth)),
        })

    @cached_property
    def tile_layout(self) -> data.StructLayout:
        """One tile descriptor from the sequencer to the streamer."""
        return data.StructLayout({
            "act_tile": unsigned(_bits_for(self.max_inner // self.array_rows)),
            "out_tile": unsigned(_bits_for(self.max_out_tiles)),
            "weight_addr": unsigned(_bits_for(self.weight_depth)),
            "first": 1, "last": 1, "zero": 1, "end": 1,
        })

    def field_offsets(self, layout: data.StructLayout) -> dict[str, int]:
        """Bit offset of each field of ``layout`` (for drivers that pack payloads as ints)."""
        return {name: field.offset for name, field in layout}


def check_job_fits(geometry: GemmGeometry, *, tokens: int, inner: int, outer: int,
                   words: dict[LoadTarget, int]) -> None:
    """Raise ``ValueError`` naming the first limit a GEMM job exceeds on this engine.

    ``words`` gives the number of words the job writes into each memory.
    """
    g = geometry
    limits = [("tokens", tokens, g.max_tokens), ("input features", inner, g.max_inner),
              ("output features", outer, g.max_outer)]
    for what, value, limit in limits:
        if not 1 <= value <= limit:
            raise ValueError(f"GEMM {what} ({value}) must lie in 1..{limit} on this engine")
    if inner % g.block_cols or outer % g.block_rows:
        raise ValueError(f"Block shape {g.block_rows}x{g.block_cols} does not divide the "
                         f"{outer}x{inner} weight")
    for target, count in words.items():
        if count > g.depths[target]:
            raise ValueError(f"{target.name.lower()} memory holds {g.depths[target]} words, "
                             f"the job needs {count}")
