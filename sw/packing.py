"""Bit and byte order of everything the accelerator's memories hold: the one packing module.

Conventions (worked examples in each docstring):

* A memory *word* holds ``lanes`` equal-width fields; lane ``i`` occupies bits
  ``[i*width, (i+1)*width)``, so lane 0 is the least significant. Signed fields are stored in
  two's complement.
* The GEMM engine's memories are laid out for an ``R x C`` array (``R`` = array rows walks the
  input dimension K, ``C`` = array columns walks the output dimension N):

  - activations ``X (M, K)``: word ``m * (K/R) + kt`` holds ``X[m, kt*R : (kt+1)*R]``;
  - weights, block-compressed rows: stored blocks in BCSR order; inside a block of
    ``block_rows x block_cols`` (outputs x inputs) the array tiles go output tile ``s`` major,
    input tile ``kk`` minor, each tile ``R`` words, word ``r`` holding the ``C`` weights
    ``W[n0 : n0+C, k0 + r]`` that array row ``r`` multiplies;
  - quantization constants: word ``nt`` holds, for the ``C`` outputs ``nt*C ..``, one record per
    lane of ``bias`` (acc_width bits) | ``multiplier`` (multiplier_width) | ``shift``
    (``SHIFT_WIDTH``), bias least significant;
  - outputs ``Y (M, N)``: word ``m * (N/C) + nt`` holds ``Y[m, nt*C : (nt+1)*C]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.block_sparse import BlockSparseMatrix
from sw.numerics import SHIFT_WIDTH


def pack_lanes(values, width: int) -> list[int]:
    """Pack each row of a 2-D integer array into one word, lane 0 in the low bits.

    >>> pack_lanes([[1, -1]], 8)      # 0xff01: lane 1 = -1 -> 0xff, lane 0 = 1 -> 0x01
    [65281]
    """
    values = np.asarray(values, dtype=np.int64)
    if values.ndim != 2:
        raise ValueError(f"Expected a 2-D array of lanes, found shape {values.shape}")
    low, high = -(1 << (width - 1)), (1 << width) - 1
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(f"Values {int(values.min())}..{int(values.max())} do not fit "
                         f"{width}-bit lanes")
    if values.shape[0] == 0:
        return []
    unsigned = np.ascontiguousarray(values & ((1 << width) - 1))
    if width % 8 == 0 and width <= 64:
        nbytes = width // 8
        as_bytes = unsigned.astype(np.uint64).astype("<u8").view(np.uint8)
        as_bytes = as_bytes.reshape(*unsigned.shape, 8)[..., :nbytes]
        rows = as_bytes.reshape(unsigned.shape[0], -1)
        return [int.from_bytes(row.tobytes(), "little") for row in rows]
    words = []
    for row in unsigned.tolist():
        word = 0
        for lane, value in enumerate(row):
            word |= value << (lane * width)
        words.append(word)
    return words


def unpack_lanes(words, lanes: int, width: int, *, signed: bool = True) -> np.ndarray:
    """Inverse of :func:`pack_lanes`: an ``(len(words), lanes)`` int64 array.

    >>> unpack_lanes([0xff01], 2, 8).tolist()
    [[1, -1]]
    """
    words = [int(word) for word in words]
    if not words:
        return np.zeros((0, lanes), dtype=np.int64)
    mask = (1 << width) - 1
    if width in (8, 16, 32):                    # lanes numpy can view directly
        nbytes = width // 8
        raw = b"".join(word.to_bytes(lanes * nbytes, "little") for word in words)
        out = np.frombuffer(raw, dtype=f"<u{nbytes}").astype(np.int64).reshape(len(words), lanes)
    else:
        out = np.array([[(word >> (lane * width)) & mask for lane in range(lanes)]
                        for word in words], dtype=np.int64).reshape(len(words), lanes)
    if signed:
        out = np.where(out >= (1 << (width - 1)), out - (1 << width), out)
    return out


def quant_record_width(acc_width: int, multiplier_width: int) -> int:
    """Bits of one output channel's (bias, multiplier, shift) record."""
    return acc_width + multiplier_width + SHIFT_WIDTH


def pack_activations(x, array_rows: int, data_width: int) -> list[int]:
    """Activation words of ``X (M, K)``: word ``m*(K/R) + kt`` = ``X[m, kt*R:(kt+1)*R]``.

    >>> pack_activations([[1, 2, 3, 4]], 2, 8)   # K/R = 2 words: [1, 2] and [3, 4]
    [513, 1027]
    """
    x = np.asarray(x, dtype=np.int64)
    tokens, inner = x.shape
    if inner % array_rows:
        raise ValueError(f"Input width {inner} is not a multiple of array_rows ({array_rows})")
    return pack_lanes(x.reshape(tokens * (inner // array_rows), array_rows), data_width)


def weight_tiles(matrix: BlockSparseMatrix, array_rows: int, array_cols: int) -> np.ndarray:
    """The stored blocks cut into array tiles, in memory order: ``(tiles, R, C)``.

    Tile ``t`` of block ``j`` is ``j * tiles_per_block + s * (block_cols/R) + kk`` and its entry
    ``[r, c]`` is ``W[s*C + c, kk*R + r]`` of that block (the tile is transposed: rows walk K).
    """
    block_rows, block_cols = matrix.block_shape
    if block_rows % array_cols or block_cols % array_rows:
        raise ValueError(f"A {array_rows}x{array_cols} array does not tile "
                         f"{block_rows}x{block_cols} blocks")
    out_tiles, in_tiles = block_rows // array_cols, block_cols // array_rows
    blocks = matrix.blocks.reshape(-1, out_tiles, array_cols, in_tiles, array_rows)
    # (block, s, c, kk, r) -> (block, s, kk, r, c)
    return blocks.transpose(0, 1, 3, 4, 2).reshape(-1, array_rows, array_cols)


def pack_weights(matrix: BlockSparseMatrix, array_rows: int, array_cols: int,
                 data_width: int) -> list[int]:
    """Weight words: every tile of :func:`weight_tiles` as ``R`` words of ``C`` lanes."""
    tiles = weight_tiles(matrix, array_rows, array_cols)
    return pack_lanes(tiles.reshape(-1, array_cols), data_width)


def pack_quant(bias, multiplier, shift, array_cols: int, acc_width: int,
               multiplier_width: int) -> list[int]:
    """Quantization words: one per ``C`` outputs, each lane a (bias, multiplier, shift) record.

    >>> hex(pack_quant([-1], [3], [5], 1, 8, 4)[0])   # shift 5 | multiplier 3 | bias 0xff
    '0x53ff'
    """
    bias, multiplier, shift = (np.asarray(v, dtype=np.int64) for v in (bias, multiplier, shift))
    if not bias.shape == multiplier.shape == shift.shape or bias.ndim != 1:
        raise ValueError("bias, multiplier and shift must be 1-D arrays of the same length")
    if bias.size % array_cols:
        raise ValueError(f"{bias.size} outputs are not a multiple of array_cols ({array_cols})")
    low, high = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    if bias.size and (bias.min() < low or bias.max() > high):
        raise ValueError(f"Biases must fit {acc_width}-bit signed integers")
    if np.any(multiplier >= (1 << multiplier_width)) or np.any(multiplier < 0):
        raise ValueError(f"Multipliers must lie in [0, 2**{multiplier_width})")
    if np.any(shift >= (1 << SHIFT_WIDTH)) or np.any(shift < 0):
        raise ValueError(f"Shifts must lie in [0, 2**{SHIFT_WIDTH})")
    record_width = quant_record_width(acc_width, multiplier_width)
    words = []
    for start in range(0, bias.size, array_cols):
        word = 0
        for lane in range(array_cols):
            n = start + lane
            record = ((int(bias[n]) & ((1 << acc_width) - 1))
                      | (int(multiplier[n]) << acc_width)
                      | (int(shift[n]) << (acc_width + multiplier_width)))
            word |= record << (lane * record_width)
        words.append(word)
    return words


def unpack_outputs(words, tokens: int, out_features: int, array_cols: int,
                   data_width: int) -> np.ndarray:
    """Output words back to ``Y (M, N)``: word ``m*(N/C) + nt`` = ``Y[m, nt*C:(nt+1)*C]``."""
    expected = tokens * out_features // array_cols
    if len(words) != expected:
        raise ValueError(f"Expected {expected} output words, found {len(words)}")
    return unpack_lanes(words, array_cols, data_width).reshape(tokens, out_features)


@dataclass(frozen=True)
class GemmMemoryImage:
    """Contents of each GEMM-engine memory for one block-sparse GEMM, as word lists."""

    activation: list[int]
    weight: list[int]
    row_ptr: list[int]
    col_idx: list[int]
    quant: list[int]


def pack_gemm(operands, *, array_rows: int, array_cols: int, data_width: int, acc_width: int,
              multiplier_width: int) -> GemmMemoryImage:
    """Every memory's words for one ``sw.golden.gemm.GemmOperands`` job."""
    matrix = operands.weights
    return GemmMemoryImage(
        activation=pack_activations(operands.x, array_rows, data_width),
        weight=pack_weights(matrix, array_rows, array_cols, data_width),
        row_ptr=[int(v) for v in matrix.row_ptr],
        col_idx=[int(v) for v in matrix.col_idx],
        quant=pack_quant(operands.bias, operands.multiplier, operands.shift, array_cols,
                         acc_width, multiplier_width),
    )


def rows_to_beats(rows, lanes: int) -> np.ndarray:
    """The beats of a special-function unit for ``rows`` ``(R, n)``: ``(R * ceil(n / lanes),
    lanes)``, element ``k * lanes + j`` of a row in lane ``j`` of its beat ``k``, the last
    beat's unused lanes 0.

    >>> rows_to_beats([[1, 2, 3], [4, 5, 6]], 2).tolist()
    [[1, 2], [3, 0], [4, 5], [6, 0]]
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 2:
        raise ValueError(f"Expected a 2-D array of rows, found shape {rows.shape}")
    count, length = rows.shape
    beats = -(-length // lanes)
    padded = np.zeros((count, beats * lanes), dtype=np.int64)
    padded[:, :length] = rows
    return padded.reshape(count * beats, lanes)


def beats_to_rows(beats, length: int) -> np.ndarray:
    """Inverse of :func:`rows_to_beats` for rows of ``length`` elements (padding dropped)."""
    beats = np.asarray(beats, dtype=np.int64)
    lanes = beats.shape[1]
    per_row = -(-length // lanes)
    return beats.reshape(-1, per_row * lanes)[:, :length]
