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

* The weight image (``docs/image-format.md``) is a byte stream: every multi-byte value is
  little-endian, integers are two's complement, floats IEEE 754 binary64. Its records are
  sequences of named fields (:class:`ByteWriter` / :class:`ByteReader`); a block-sparse matrix is
  ``row_ptr`` (u32), ``col_idx`` (u32), then the stored blocks' int8 values, each block row-major
  (:func:`pack_block_sparse`): independent of the array shape, which tiles the blocks at load.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.block_sparse import BlockSparseMatrix
from sw.config import block_words
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


def stream_tiles(matrix: BlockSparseMatrix, array_rows: int, array_cols: int) -> np.ndarray:
    """The tiles of :func:`weight_tiles` in the order the GEMM computes them: ``(tiles, R, C)``.

    The block sequencer (``hw.gemm.block_sequencer``) walks block row ``i``, output tile ``s``
    of the row, stored block ``j`` of the row, input tile ``kk`` of the block; a weight streamed
    from external memory is stored in that order, so that the engine reads it front to back.
    """
    tiles = weight_tiles(matrix, array_rows, array_cols)
    order = _stream_order(matrix, matrix.block_shape[0] // array_cols,
                          matrix.block_shape[1] // array_rows)
    return tiles[order]


def _stream_order(matrix: BlockSparseMatrix, out_tiles: int, in_tiles: int) -> np.ndarray:
    """Indices into :func:`weight_tiles`' tiles in compute order."""
    order = []
    for row in range(len(matrix.row_ptr) - 1):
        blocks = range(int(matrix.row_ptr[row]), int(matrix.row_ptr[row + 1]))
        for s in range(out_tiles):
            for j in blocks:
                first = (j * out_tiles + s) * in_tiles
                order.extend(range(first, first + in_tiles))
    return np.asarray(order, dtype=np.int64)


def pack_stream_weights(matrix: BlockSparseMatrix, array_rows: int, array_cols: int,
                        data_width: int) -> bytes:
    """A weight as external memory holds it: the words of :func:`stream_tiles`, ``R`` per tile,
    each ``C`` lanes of ``data_width`` bits little-endian (``C * data_width / 8`` bytes, the AXI
    data bus of the layer engine)."""
    tiles = stream_tiles(matrix, array_rows, array_cols)
    if data_width == 8:
        return np.ascontiguousarray(tiles, dtype="<i1").tobytes()
    word_bytes = array_cols * data_width // 8
    words = pack_lanes(tiles.reshape(-1, array_cols), data_width)
    return b"".join(int(w).to_bytes(word_bytes, "little") for w in words)


def unpack_stream_weights(data: bytes, structure: BlockSparseMatrix, array_rows: int,
                          array_cols: int, data_width: int) -> np.ndarray:
    """The stored blocks ``(stored, block_rows, block_cols)`` of a weight whose
    :func:`pack_stream_weights` bytes are ``data`` and whose row pointers and column indices
    are ``structure``'s (its blocks are not read): the inverse of :func:`pack_stream_weights`.

    Raises
    ------
    ValueError
        If ``data`` is not the length the structure implies.
    """
    block_rows, block_cols = structure.block_shape
    stored = len(structure.col_idx)
    word_bytes = array_cols * data_width // 8
    words = stored * block_words(block_rows, block_cols, array_cols)
    if len(data) != words * word_bytes:
        raise ValueError(f"{len(data)} weight stream bytes, the {stored} stored blocks need "
                         f"{words * word_bytes}")
    if data_width == 8:
        lanes = np.frombuffer(data, dtype="<i1").astype(np.int64)
    else:
        packed = [int.from_bytes(data[i:i + word_bytes], "little")
                  for i in range(0, len(data), word_bytes)]
        lanes = unpack_lanes(packed, array_cols, data_width)
    out_tiles, in_tiles = block_rows // array_cols, block_cols // array_rows
    in_order = lanes.reshape(-1, array_rows, array_cols)
    tiles = np.empty_like(in_order)
    order = _stream_order(structure, out_tiles, in_tiles)
    tiles[order] = in_order
    # (block, s, kk, r, c) -> (block, s, c, kk, r), as weight_tiles cut them
    blocks = tiles.reshape(stored, out_tiles, in_tiles, array_rows, array_cols)
    return blocks.transpose(0, 1, 4, 2, 3).reshape(stored, block_rows, block_cols)


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


@dataclass(frozen=True)
class ResidentWeightImage:
    """One weight's words for a GEMM core that keeps several weights resident, and where they go.

    Its blocks are numbered from ``first_block`` on: column index ``j`` is word ``first_block +
    j`` of the column-index memory, its tiles start at weight word ``weight_addr`` (``first_block
    * words_per_block``), and its row pointers (word ``row_ptr_base`` on) hold those absolute
    block numbers. Its quantization words start at ``quant_base``.
    """

    first_block: int
    row_ptr_base: int
    quant_base: int
    weight_addr: int
    weight: list[int]
    row_ptr: list[int]
    col_idx: list[int]
    quant: list[int]

    @property
    def next_free(self) -> dict[str, int]:
        """``first_block``, ``row_ptr_base`` and ``quant_base`` of a weight placed after this
        one."""
        return {"first_block": self.first_block + len(self.col_idx),
                "row_ptr_base": self.row_ptr_base + len(self.row_ptr),
                "quant_base": self.quant_base + len(self.quant)}


def pack_resident_weight(matrix: BlockSparseMatrix, bias, multiplier, shift, *, first_block: int,
                         row_ptr_base: int, quant_base: int, array_rows: int, array_cols: int,
                         data_width: int, acc_width: int,
                         multiplier_width: int) -> ResidentWeightImage:
    """The words of one weight placed at ``first_block`` / ``row_ptr_base`` / ``quant_base``.

    >>> from sw.block_sparse import BlockSparseMatrix
    >>> m = BlockSparseMatrix.from_dense([[1, 0], [0, 0]], (1, 1))
    >>> image = pack_resident_weight(m, [0, 0], [1, 1], [0, 0], first_block=3, row_ptr_base=2,
    ...     quant_base=1, array_rows=1, array_cols=1, data_width=8, acc_width=32,
    ...     multiplier_width=16)
    >>> image.row_ptr, image.col_idx, image.weight_addr
    ([3, 4, 4], [0], 3)
    """
    for name, value in (("first_block", first_block), ("row_ptr_base", row_ptr_base),
                        ("quant_base", quant_base)):
        if value < 0:
            raise ValueError(f"{name} must be a non-negative word address, not {value}")
    block_rows, block_cols = matrix.block_shape
    words_per_block = block_words(block_rows, block_cols, array_cols)
    return ResidentWeightImage(
        first_block=first_block, row_ptr_base=row_ptr_base, quant_base=quant_base,
        weight_addr=first_block * words_per_block,
        weight=pack_weights(matrix, array_rows, array_cols, data_width),
        row_ptr=[first_block + int(v) for v in matrix.row_ptr],
        col_idx=[int(v) for v in matrix.col_idx],
        quant=pack_quant(bias, multiplier, shift, array_cols, acc_width, multiplier_width),
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


# ------------------------------------------------------------------------------------------------
# Weight-image byte order
# ------------------------------------------------------------------------------------------------

#: Element types of the weight image: name -> numpy dtype (all little-endian).
IMAGE_DTYPES = {
    "u8": np.dtype("<u1"), "i8": np.dtype("<i1"), "u16": np.dtype("<u2"), "i16": np.dtype("<i2"),
    "u32": np.dtype("<u4"), "i32": np.dtype("<i4"), "u64": np.dtype("<u8"), "i64": np.dtype("<i8"),
    "f64": np.dtype("<f8"),
}


def _image_dtype(name: str) -> np.dtype:
    if name not in IMAGE_DTYPES:
        raise ValueError(f"Unknown image element type {name!r}; known: {', '.join(IMAGE_DTYPES)}")
    return IMAGE_DTYPES[name]


def pack_array(values, dtype: str) -> bytes:
    """Little-endian bytes of ``values`` as ``dtype`` (``"u8"`` .. ``"i64"``, ``"f64"``).

    Integers are range-checked, never wrapped.

    >>> pack_array([1, -2], "i16").hex()
    '0100feff'

    Raises
    ------
    ValueError
        If an integer does not fit ``dtype`` or a float array gets non-numbers.
    """
    target = _image_dtype(dtype)
    if target.kind == "f":
        return np.ascontiguousarray(np.asarray(values, dtype=np.float64), dtype=target).tobytes()
    if isinstance(values, np.ndarray):
        if values.size and values.dtype.kind not in "iu":
            raise ValueError(f"{dtype} values must be integers, not {values.dtype}")
        array = values
    else:                       # Python integers of any size: check them before numpy casts
        items = np.asarray(values, dtype=object).reshape(-1).tolist()
        kinds = {type(v).__name__ for v in items
                 if not isinstance(v, (int, np.integer)) or isinstance(v, bool)}
        if kinds:
            raise ValueError(f"{dtype} values must be integers, not {', '.join(sorted(kinds))}")
        array = np.asarray(items, dtype=object)
    info = np.iinfo(target)
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            raise ValueError(f"Values {low}..{high} do not fit {dtype} ({info.min}..{info.max})")
    return np.ascontiguousarray(array, dtype=target).tobytes()


class ImageFormatError(ValueError):
    """Bytes that cannot be what a reader expects there; the message names the offset."""


class ByteWriter:
    """Appends fields and arrays to a growing little-endian byte string.

    >>> writer = ByteWriter()
    >>> writer.fields((("rows", "u16"), ("scale", "f64")), {"rows": 3, "scale": 0.5})
    >>> writer.array([7, 8], "u8")
    >>> writer.getvalue().hex()
    '0300000000000000e03f0708'
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def raw(self, data: bytes) -> None:
        """Append ``data`` unchanged."""
        self._parts.append(bytes(data))
        self._size += len(data)

    def array(self, values, dtype: str) -> None:
        """Append :func:`pack_array` of ``values``."""
        self.raw(pack_array(values, dtype))

    def fields(self, layout, values: dict) -> None:
        """Append one value per ``(name, dtype)`` of ``layout``, in that order, from ``values``."""
        for name, dtype in layout:
            self.array([values[name]], dtype)

    def align(self, alignment: int) -> None:
        """Append zero bytes up to the next multiple of ``alignment``."""
        self.raw(bytes(-self._size % alignment))

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class ByteReader:
    """Reads fields and arrays from ``buffer[start:end]``, refusing to read past ``end``.

    Offsets in messages are absolute (from the start of ``buffer``).

    >>> ByteReader(bytes.fromhex("0300000000000000e03f0708")).fields(
    ...     (("rows", "u16"), ("scale", "f64")))
    {'rows': 3, 'scale': 0.5}
    """

    def __init__(self, buffer: bytes, start: int = 0, end: int | None = None) -> None:
        self._buffer = memoryview(buffer)
        self.position = start
        self.end = len(buffer) if end is None else end

    @property
    def remaining(self) -> int:
        """Bytes left before ``end``."""
        return self.end - self.position

    def raw(self, count: int, what: str = "bytes") -> bytes:
        """The next ``count`` bytes.

        Raises
        ------
        ImageFormatError
            If fewer than ``count`` bytes are left.
        """
        if count < 0 or count > self.remaining:
            raise ImageFormatError(f"{what} need {count} bytes at offset {self.position}, only "
                                   f"{max(self.remaining, 0)} left before offset {self.end}")
        data = bytes(self._buffer[self.position:self.position + count])
        self.position += count
        return data

    def array(self, dtype: str, count: int, what: str = "array") -> np.ndarray:
        """The next ``count`` elements of ``dtype``: float64, uint64 for ``"u64"``, else int64."""
        target = _image_dtype(dtype)
        data = self.raw(count * target.itemsize, what)
        values = np.frombuffer(data, dtype=target)
        if target.kind == "f":
            return values.astype(np.float64)
        return values.astype(np.uint64 if dtype == "u64" else np.int64)

    def fields(self, layout, what: str = "record") -> dict:
        """One value per ``(name, dtype)`` of ``layout``: Python ``int`` or ``float``."""
        size = fields_size(layout)
        if size > self.remaining:
            raise ImageFormatError(f"{what} needs {size} bytes at offset {self.position}, only "
                                   f"{max(self.remaining, 0)} left before offset {self.end}")
        result = {}
        for name, dtype in layout:
            value = self.array(dtype, 1, what)[0]
            result[name] = float(value) if IMAGE_DTYPES[dtype].kind == "f" else int(value)
        return result


def fields_size(layout) -> int:
    """Bytes of one record of ``layout``."""
    return sum(_image_dtype(dtype).itemsize for _, dtype in layout)


def block_sparse_size(shape, block_shape, stored_blocks: int) -> int:
    """Bytes of :func:`pack_block_sparse` for these dimensions."""
    rows, _ = shape
    block_rows, block_cols = block_shape
    return (4 * (rows // block_rows + 1) + 4 * stored_blocks
            + stored_blocks * block_rows * block_cols)


def pack_block_sparse(matrix: BlockSparseMatrix) -> bytes:
    """``row_ptr`` (u32 each), ``col_idx`` (u32 each), then every stored block row-major (i8).

    >>> m = BlockSparseMatrix.from_dense([[0, 0, 1, -1], [0, 0, 2, 3]], (2, 2))
    >>> pack_block_sparse(m).hex()     # row_ptr 0 1 | col_idx 1 | block [[1, -1], [2, 3]]
    '00000000010000000100000001ff0203'
    """
    writer = ByteWriter()
    writer.array(matrix.row_ptr, "u32")
    writer.array(matrix.col_idx, "u32")
    writer.array(matrix.blocks.reshape(-1), "i8")
    return writer.getvalue()


def unpack_block_sparse(reader: ByteReader, shape, block_shape, stored_blocks: int, *,
                        with_blocks: bool = True) -> BlockSparseMatrix:
    """Read what :func:`pack_block_sparse` wrote, checking the BCSR structure; with
    ``with_blocks`` False, only ``row_ptr`` and ``col_idx`` are there (the blocks, zeros in the
    result, come from elsewhere: a weight image's WEIGHT_STREAM section).

    Raises
    ------
    ImageFormatError
        If the bytes run out, ``row_ptr`` does not start at 0, decreases or does not end at
        ``stored_blocks``, or a block column is out of range or not increasing within its row.
    """
    rows, cols = shape
    block_rows, block_cols = block_shape
    grid_rows, grid_cols = rows // block_rows, cols // block_cols
    start = reader.position
    row_ptr = reader.array("u32", grid_rows + 1, "row_ptr")
    col_idx = reader.array("u32", stored_blocks, "col_idx")
    blocks = reader.array("i8", stored_blocks * block_rows * block_cols, "blocks") \
        if with_blocks else np.zeros(stored_blocks * block_rows * block_cols, np.int8)
    if row_ptr[0] != 0 or row_ptr[-1] != stored_blocks or np.any(np.diff(row_ptr) < 0):
        raise ImageFormatError(f"row_ptr at offset {start} is not a block-row pointer list "
                               f"from 0 to {stored_blocks} (found {row_ptr.tolist()[:8]}...)")
    if stored_blocks and int(col_idx.max()) >= grid_cols:
        raise ImageFormatError(f"col_idx at offset {start + 4 * (grid_rows + 1)} has block "
                               f"column {int(col_idx.max())}, the matrix has {grid_cols}")
    for row in range(grid_rows):
        columns = col_idx[row_ptr[row]:row_ptr[row + 1]]
        if np.any(np.diff(columns) <= 0):
            raise ImageFormatError(f"col_idx at offset {start + 4 * (grid_rows + 1)}: block "
                                   f"columns of block row {row} are not increasing")
    return BlockSparseMatrix(shape=(rows, cols), block_shape=(block_rows, block_cols),
                             row_ptr=row_ptr, col_idx=col_idx,
                             blocks=blocks.reshape(stored_blocks, block_rows, block_cols))
