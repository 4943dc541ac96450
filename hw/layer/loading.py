"""What the layer engine's memories hold for one layer: the loading plan, in pure Python.

The GEMM engine inside the layer engine numbers the blocks of every weight of the layer: first
the two *staging* regions the engine fills per head (``hw.layer.weight_stager``): ``keys``
(``K_h`` as a ``keys x head_dim`` weight) and ``values`` (``V_h^T``, ``head_dim x keys``), both
dense, whose words are the on-chip weight memory; then the six linears (``q k v o fc1 fc2``),
whose row pointers, column indices and constants are on chip but whose weight words live in
*external memory*, each linear's from a byte ``stream_base`` that is a multiple of a burst, in
the order the GEMM computes its tiles (``sw.packing.pack_stream_weights``), read by the weight
fetcher (``hw.memory.weight_fetcher``). Row pointers hold absolute block indices, so one weight
is found by its first row pointer (``row_ptr_base``) alone; its output constants start at
``quant_base``. The tensor table gives each GEMM of the program those addresses and its shape
in tiles; table entries 0..5 are the program's ``GEMM`` tensor ids, 6 and 7 the attention
products.

The GEMM's epilogue applies GELU by a table of every ``data_width``-bit input
(:func:`gelu_table`, from the layer's GELU constants with the golden kernel itself), which the
plan also carries.

Pure Python (no Amaranth): the generator sizes memories with :func:`gemm_capacity`, the driver
loads :func:`load_plan`, the cycle model reads the block masks from the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.block_sparse import BlockSparseMatrix
from sw.config import AcceleratorConfig
from sw.engine_params import ENGINE_TENSORS, KEYS, VALUES, EngineParams
from sw.golden.encoder_layer import IntegerEncoderLayer
from sw.golden.kernels import GeluConstants, gelu_int
from sw.isa import TENSOR_ROLES
from sw.packing import pack_resident_weight, pack_stream_weights

#: Tensor-table entries in order (``sw.engine_params.ENGINE_TENSORS``).
TENSORS = ENGINE_TENSORS

__all__ = ["TENSORS", "KEYS", "VALUES", "TensorEntry", "LoadPlan", "gemm_capacity", "gelu_table",
           "load_plan"]


@dataclass(frozen=True)
class TensorEntry:
    """One GEMM the engine can run: where its weight and constants are, its shape in tiles."""

    name: str
    row_ptr_base: int
    quant_base: int
    weight_base: int            #: first on-chip weight word (staging regions only)
    stream_base: int            #: first byte of the streamed weight (linears only)
    stream_words: int           #: weight words streamed (linears only)
    in_tiles: int               #: input features / array rows
    out_block_rows: int         #: output features / block rows
    mask: np.ndarray            #: stored-block mask (out blocks x in blocks)

    @property
    def out_features(self) -> int:
        return self.mask.shape[0]


@dataclass(frozen=True)
class LoadPlan:
    """Word lists of the on-chip GEMM memories (``{target name: [(addr, word)]}``), the
    external memory's bytes from address 0, the tensor table and the GELU table
    (``[(addr, entry)]``, :func:`gelu_table`)."""

    gemm_words: dict
    tensors: tuple
    external: bytes = b""
    gelu_table: tuple = ()

    @property
    def linear_words(self) -> int:
        """Weight words of the six linears: what one layer reads from external memory."""
        return sum(t.stream_words for t in self.tensors)


def gemm_capacity(config: AcceleratorConfig) -> dict:
    """Words each GEMM memory needs for the densest layer of ``config``:
    ``{"weight", "row_ptr", "col_idx", "quant"}`` (``EngineParams.gemm_capacity``)."""
    return EngineParams.from_config(config).gemm_capacity


def gelu_table(constants: GeluConstants, data_width: int) -> tuple:
    """The epilogue's GELU table: ``(addr, entry)`` for every ``data_width``-bit input, ``addr``
    the input's two's-complement bits and ``entry`` ``gelu_int`` of it, as unsigned bits.

    Raises
    ------
    ValueError
        If the GELU's inputs are not ``data_width`` bits (the FC1 outputs the table is indexed
        by) or its outputs are wider.
    """
    if constants.in_width != data_width or constants.out_width > data_width:
        raise ValueError(f"GELU of {constants.in_width}-bit inputs to {constants.out_width}-bit "
                         f"outputs is not a table of {data_width}-bit entries")
    inputs = np.arange(-(1 << (constants.in_width - 1)), 1 << (constants.in_width - 1))
    mask = (1 << data_width) - 1
    return tuple((int(x) & mask, int(y) & mask)
                 for x, y in zip(inputs, gelu_int(inputs, constants)))


def _check_fits(layer: IntegerEncoderLayer, params: EngineParams) -> None:
    config, hw = params.config, params.config.hardware
    largest = params.role_shapes
    for role in TENSOR_ROLES:
        weight = getattr(layer, role).weight
        out_features, in_features = weight.shape
        if out_features % hw.block_rows or in_features % hw.block_cols:
            raise ValueError(f"{role} weight {out_features}x{in_features} is not a whole number "
                             f"of {hw.block_rows}x{hw.block_cols} blocks")
        if out_features > largest[role][0] or in_features > largest[role][1]:
            raise ValueError(f"{role} weight {out_features}x{in_features} is larger than config "
                             f"{config.name!r} holds ({largest[role][0]}x{largest[role][1]})")
    if layer.head_dim != params.head_dim:
        raise ValueError(f"head_dim {layer.head_dim} differs from config {config.name!r}'s "
                         f"{params.head_dim}")


def load_plan(config: AcceleratorConfig, layer: IntegerEncoderLayer,
              stream_bases: dict | None = None) -> LoadPlan:
    """The GEMM memory contents and tensor table that run ``layer`` on ``config``'s engine.

    ``stream_bases``: the byte each linear's weights start at in an external memory that
    already holds them (a weight image's WEIGHT_STREAM sections, ``{role: offset}``); without
    it the plan lays them out itself from byte 0 (``LoadPlan.external``).

    Raises
    ------
    ValueError
        If a weight is not a whole number of blocks or the layer is larger than the config.
    """
    params = EngineParams.from_config(config)
    hw = config.hardware
    r, c = hw.array_rows, hw.array_cols
    _check_fits(layer, params)
    gemm_words = {"row_ptr": [], "col_idx": [], "quant": []}
    place = {"first_block": 0, "row_ptr_base": 0, "quant_base": 0}
    widths = {"array_rows": r, "array_cols": c, "data_width": hw.data_width,
              "acc_width": hw.acc_width, "multiplier_width": hw.multiplier_width}

    external = bytearray()
    entries = {}

    def add(name, matrix: BlockSparseMatrix, bias, multiplier, shift, *, staged=False):
        nonlocal place
        image = pack_resident_weight(matrix, bias, multiplier, shift, **place, **widths)
        stream_base = stream_words = 0
        if not staged and stream_bases is not None:
            stream_base = stream_bases[name]
            stream_words = len(image.col_idx) * params.words_per_block
        elif not staged:                            # the stager writes staged weights
            external.extend(bytes(-len(external) % params.burst_bytes))
            stream_base = len(external)
            streamed = pack_stream_weights(matrix, r, c, hw.data_width)
            external.extend(streamed)
            stream_words = len(streamed) // params.word_bytes
        gemm_words["row_ptr"] += [(image.row_ptr_base + i, p)
                                  for i, p in enumerate(image.row_ptr)]
        gemm_words["col_idx"] += [(image.first_block + i, k) for i, k in enumerate(image.col_idx)]
        gemm_words["quant"] += [(image.quant_base + i, w) for i, w in enumerate(image.quant)]
        out_features, in_features = matrix.shape
        entries[name] = TensorEntry(
            name=name, row_ptr_base=image.row_ptr_base, quant_base=image.quant_base,
            weight_base=image.weight_addr, stream_base=stream_base, stream_words=stream_words,
            in_tiles=in_features // r, out_block_rows=out_features // hw.block_rows,
            mask=matrix.block_mask())
        place = image.next_free

    block = (hw.block_rows, hw.block_cols)
    # staging regions first (their words are the on-chip weight memory): dense, contents
    # written per head by the weight stager
    for name, multiplier, shift in (("keys", 1, 0),
                                    ("values", layer.context_multiplier, layer.context_shift)):
        out_features, in_features = params.role_shapes[name]
        grid = (out_features // block[0], in_features // block[1])
        dense = BlockSparseMatrix.from_dense(np.zeros((out_features, in_features), np.int64),
                                             block, keep=np.ones(grid, bool))
        add(name, dense, np.zeros(out_features, np.int64), np.full(out_features, multiplier),
            np.full(out_features, shift), staged=True)
    for role in TENSOR_ROLES:
        linear = getattr(layer, role)
        add(role, BlockSparseMatrix.from_dense(linear.weight, block), linear.bias,
            linear.multiplier, linear.shift)
    return LoadPlan(gemm_words=gemm_words, tensors=tuple(entries[n] for n in TENSORS),
                    external=bytes(external), gelu_table=gelu_table(layer.gelu, hw.data_width))
