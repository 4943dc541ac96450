"""What the layer engine's memories hold for one layer: the loading plan, in pure Python.

The GEMM engine inside the layer engine keeps every weight of the layer resident: the six
linears (``q k v o fc1 fc2``) back to back in block-compressed rows (``sw.packing``), then two
*staging* regions the engine fills per head (``hw.layer.weight_stager``): ``keys`` (``K_h`` as a
``keys x head_dim`` weight) and ``values`` (``V_h^T``, ``head_dim x keys``), both dense.
Row pointers hold absolute block indices, so one weight is found by its first row pointer
(``row_ptr_base``) alone; its output constants start at ``quant_base``. The tensor table gives
each GEMM of the program those two addresses and its shape in tiles; table entries 0..5 are
the program's ``GEMM`` tensor ids, 6 and 7 the attention products.

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
from sw.isa import TENSOR_ROLES
from sw.packing import pack_resident_weight

#: Tensor-table entries in order (``sw.engine_params.ENGINE_TENSORS``).
TENSORS = ENGINE_TENSORS

__all__ = ["TENSORS", "KEYS", "VALUES", "TensorEntry", "LoadPlan", "gemm_capacity", "load_plan"]


@dataclass(frozen=True)
class TensorEntry:
    """One GEMM the engine can run: where its weight and constants are, its shape in tiles."""

    name: str
    row_ptr_base: int
    quant_base: int
    weight_base: int            #: first weight word (staging regions: where the stager writes)
    in_tiles: int               #: input features / array rows
    out_block_rows: int         #: output features / block rows
    mask: np.ndarray            #: stored-block mask (out blocks x in blocks)

    @property
    def out_features(self) -> int:
        return self.mask.shape[0]


@dataclass(frozen=True)
class LoadPlan:
    """Word lists of the GEMM memories (``{target name: [(addr, word)]}``) and the table."""

    gemm_words: dict
    tensors: tuple
    linear_words: int = 0        #: weight words of the six linears


def gemm_capacity(config: AcceleratorConfig) -> dict:
    """Words each GEMM memory needs for the densest layer of ``config``:
    ``{"weight", "row_ptr", "col_idx", "quant"}`` (``EngineParams.gemm_capacity``)."""
    return EngineParams.from_config(config).gemm_capacity


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


def load_plan(config: AcceleratorConfig, layer: IntegerEncoderLayer) -> LoadPlan:
    """The GEMM memory contents and tensor table that run ``layer`` on ``config``'s engine.

    Raises
    ------
    ValueError
        If a weight is not a whole number of blocks or the layer is larger than the config.
    """
    params = EngineParams.from_config(config)
    hw = config.hardware
    r, c = hw.array_rows, hw.array_cols
    _check_fits(layer, params)
    gemm_words = {"weight": [], "row_ptr": [], "col_idx": [], "quant": []}
    tensors = []
    place = {"first_block": 0, "row_ptr_base": 0, "quant_base": 0}
    widths = {"array_rows": r, "array_cols": c, "data_width": hw.data_width,
              "acc_width": hw.acc_width, "multiplier_width": hw.multiplier_width}

    def add(name, matrix: BlockSparseMatrix, bias, multiplier, shift, *, staged=False):
        nonlocal place
        image = pack_resident_weight(matrix, bias, multiplier, shift, **place, **widths)
        if not staged:                              # the stager writes staged weights
            gemm_words["weight"] += [(image.weight_addr + i, w)
                                     for i, w in enumerate(image.weight)]
        gemm_words["row_ptr"] += [(image.row_ptr_base + i, p)
                                  for i, p in enumerate(image.row_ptr)]
        gemm_words["col_idx"] += [(image.first_block + i, k) for i, k in enumerate(image.col_idx)]
        gemm_words["quant"] += [(image.quant_base + i, w) for i, w in enumerate(image.quant)]
        out_features, in_features = matrix.shape
        tensors.append(TensorEntry(name=name, row_ptr_base=image.row_ptr_base,
                                   quant_base=image.quant_base, weight_base=image.weight_addr,
                                   in_tiles=in_features // r,
                                   out_block_rows=out_features // hw.block_rows,
                                   mask=matrix.block_mask()))
        place = image.next_free

    block = (hw.block_rows, hw.block_cols)
    for role in TENSOR_ROLES:
        linear = getattr(layer, role)
        add(role, BlockSparseMatrix.from_dense(linear.weight, block), linear.bias,
            linear.multiplier, linear.shift)
    linear_words = place["first_block"] * params.words_per_block
    # staging regions: dense, contents written per head by the weight stager
    for name, multiplier, shift in (("keys", 1, 0),
                                    ("values", layer.context_multiplier, layer.context_shift)):
        out_features, in_features = params.role_shapes[name]
        grid = (out_features // block[0], in_features // block[1])
        dense = BlockSparseMatrix.from_dense(np.zeros((out_features, in_features), np.int64),
                                             block, keep=np.ones(grid, bool))
        add(name, dense, np.zeros(out_features, np.int64), np.full(out_features, multiplier),
            np.full(out_features, shift), staged=True)
    return LoadPlan(gemm_words=gemm_words, tensors=tuple(tensors), linear_words=linear_words)
