"""Tests of the one packing module: lane order, memory word order, round trips, range errors."""

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sw.packing
from sw.block_sparse import BlockSparseMatrix
from sw.golden.gemm import GemmOperands
from sw.numerics import SHIFT_WIDTH
from sw.packing import (
    pack_activations,
    pack_gemm,
    pack_lanes,
    pack_quant,
    pack_weights,
    quant_record_width,
    unpack_lanes,
    unpack_outputs,
    weight_tiles,
)



UNPACK_WIDTHS = list(range(2, 33))


def reference_word(row, width: int) -> int:
    """Lane ``i`` at bits ``[i*width, (i+1)*width)``, two's complement, in Python ints."""
    return sum((int(value) % (1 << width)) << (lane * width) for lane, value in enumerate(row))


def lane_values(width: int, signed: bool):
    low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    return st.integers(low, high)


@st.composite
def lane_arrays(draw, width: int, signed: bool, min_rows: int = 1):
    rows = draw(st.integers(min_rows, 5))
    lanes = draw(st.integers(1, 6))
    values = draw(st.lists(lane_values(width, signed), min_size=rows * lanes,
                           max_size=rows * lanes))
    return np.array(values, dtype=np.int64).reshape(rows, lanes)


# pack_lanes / unpack_lanes ----------------------------------------------------------------------

def test_pack_lanes_24_bit_lanes():
    # the byte-aligned pack path at a width that is not a numpy dtype
    values = [[-(1 << 23), (1 << 23) - 1, -1], [0, 1, (1 << 24) - 1]]
    assert pack_lanes(values, 24) == [reference_word(row, 24) for row in values]


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("width", UNPACK_WIDTHS)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_lanes_round_trip(width, signed, data):
    values = data.draw(lane_arrays(width, signed))
    words = pack_lanes(values, width)
    assert words == [reference_word(row, width) for row in values.tolist()]
    assert all(0 <= word < 1 << (width * values.shape[1]) for word in words)
    result = unpack_lanes(words, values.shape[1], width, signed=signed)
    assert result.dtype == np.int64
    assert np.array_equal(result, values)


@pytest.mark.parametrize("width", [2, 7, 8, 16, 32])
def test_zero_rows(width):
    assert pack_lanes(np.zeros((0, 3), dtype=np.int64), width) == []
    result = unpack_lanes([], 3, width)
    assert result.shape == (0, 3) and result.dtype == np.int64


def test_lane_zero_is_least_significant():
    assert pack_lanes([[1, 2, 3]], 4) == [0x321]
    assert pack_lanes([[1, -1]], 8) == [0xFF01]
    assert pack_lanes([[-1, 5]], 12) == [0x005FFF]
    assert pack_lanes([[0x1234, -2]], 16) == [0xFFFE1234]
    assert pack_lanes([[1], [2]], 8) == [1, 2]
    assert unpack_lanes([0x321], 3, 4).tolist() == [[1, 2, 3]]
    assert unpack_lanes([0xFF01], 2, 8, signed=False).tolist() == [[1, 255]]


def test_unpack_reads_negative_lanes_as_twos_complement():
    assert unpack_lanes([0b1011], 2, 2).tolist() == [[-1, -2]]
    assert unpack_lanes([0b1011], 2, 2, signed=False).tolist() == [[3, 2]]


@pytest.mark.parametrize("values, width, found", [
    ([[256]], 8, "256..256"),
    ([[-129]], 8, "-129..-129"),
    ([[0, 4]], 2, "0..4"),
    ([[-3, 1]], 2, "-3..1"),
    ([[-(1 << 15) - 1, 1 << 16]], 16, "-32769..65536"),
])
def test_pack_lanes_rejects_values_that_do_not_fit(values, width, found):
    with pytest.raises(ValueError, match=rf"^Values {found} do not fit {width}-bit lanes$"):
        pack_lanes(values, width)


def test_pack_lanes_accepts_both_signed_and_unsigned_extremes():
    assert pack_lanes([[-128, 255]], 8) == [0xFF80]


def test_pack_lanes_rejects_other_ranks():
    with pytest.raises(ValueError, match=r"^Expected a 2-D array of lanes, found shape \(2,\)$"):
        pack_lanes([1, 2], 8)


def test_pack_lanes_of_a_transposed_array():
    values = np.array([[1, 2], [3, 4]]).T          # rows [1, 3] and [2, 4], Fortran-ordered
    assert pack_lanes(values, 8) == [0x0301, 0x0402]


def test_pack_lanes_of_a_transposed_array_generic_path():
    values = np.array([[1, 2], [3, 4]]).T
    assert pack_lanes(values, 7) == [1 | 3 << 7, 2 | 4 << 7]


def test_doctests_pass():
    result = doctest.testmod(sw.packing)
    assert result.attempted >= 4
    assert result.failed == 0


# activations ------------------------------------------------------------------------------------

def test_activation_word_order():
    x = np.array([[1, 2, 3, 4], [-1, -2, -3, -4]])
    # word m*(K/R) + kt holds X[m, kt*R:(kt+1)*R], lane 0 = lowest column
    assert pack_activations(x, 2, 8) == [0x0201, 0x0403, 0xFEFF, 0xFCFD]
    assert pack_activations(x, 4, 8) == [0x04030201, 0xFCFDFEFF]
    assert pack_activations(x, 1, 8) == [1, 2, 3, 4, 0xFF, 0xFE, 0xFD, 0xFC]


def test_activations_round_trip():
    rng = np.random.default_rng(1)
    x = rng.integers(-8, 8, size=(5, 12))
    words = pack_activations(x, 3, 4)
    assert len(words) == 5 * 12 // 3
    assert np.array_equal(unpack_lanes(words, 3, 4).reshape(5, 12), x)


def test_activations_reject_a_width_not_tiled_by_the_array():
    with pytest.raises(ValueError, match=r"^Input width 6 is not a multiple of array_rows \(4\)$"):
        pack_activations(np.zeros((2, 6), dtype=np.int64), 4, 8)


# weights ----------------------------------------------------------------------------------------

def test_weight_tiles_of_one_block_spelled_out():
    # W[i, j] = 4*i + j; one 4x4 block on a 2x2 array: out tiles s and in tiles kk, 2 each.
    # Tile t = s*2 + kk, entry [r, c] = W[s*2 + c, kk*2 + r].
    w = np.arange(16).reshape(4, 4)
    matrix = BlockSparseMatrix.from_dense(w, (4, 4))
    expected = np.array([
        [[0, 4], [1, 5]],        # s=0, kk=0: W[0:2, 0:2].T
        [[2, 6], [3, 7]],        # s=0, kk=1: W[0:2, 2:4].T
        [[8, 12], [9, 13]],      # s=1, kk=0: W[2:4, 0:2].T
        [[10, 14], [11, 15]],    # s=1, kk=1: W[2:4, 2:4].T
    ])
    assert np.array_equal(weight_tiles(matrix, 2, 2), expected)


def test_weight_tiles_follow_bcsr_block_order():
    # 4x8 weight, 2x4 blocks (grid 2x2), stored blocks (0,1), (1,0), (1,1); array R=2, C=2:
    # one out tile, two in tiles per block, so tiles 2j and 2j+1 belong to stored block j.
    w = np.zeros((4, 8), dtype=np.int64)
    w[0:2, 4:8] = [[1, 2, 3, 4], [5, 6, 7, 8]]
    w[2:4, 0:4] = [[9, 10, 11, 12], [13, 14, 15, 16]]
    w[2:4, 4:8] = [[17, 18, 19, 20], [21, 22, 23, 24]]
    matrix = BlockSparseMatrix.from_dense(w, (2, 4))
    expected = np.array([
        [[1, 5], [2, 6]], [[3, 7], [4, 8]],
        [[9, 13], [10, 14]], [[11, 15], [12, 16]],
        [[17, 21], [18, 22]], [[19, 23], [20, 24]],
    ])
    assert np.array_equal(weight_tiles(matrix, 2, 2), expected)


def rebuild_dense(matrix: BlockSparseMatrix, tiles: np.ndarray, rows: int, cols: int):
    """The dense weight from memory-order tiles and the BCSR index, by the documented formula."""
    block_rows, block_cols = matrix.block_shape
    out_tiles, in_tiles = block_rows // cols, block_cols // rows
    dense = np.zeros(matrix.shape, dtype=np.int64)
    block_row_of = np.repeat(np.arange(len(matrix.row_ptr) - 1), np.diff(matrix.row_ptr))
    for j, (block_row, block_col) in enumerate(zip(block_row_of, matrix.col_idx)):
        for s in range(out_tiles):
            for kk in range(in_tiles):
                tile = tiles[j * out_tiles * in_tiles + s * in_tiles + kk]
                for r in range(rows):
                    for c in range(cols):
                        dense[block_row * block_rows + s * cols + c,
                              block_col * block_cols + kk * rows + r] = tile[r, c]
    return dense


@st.composite
def tiled_weights(draw):
    rows, cols = draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from([1, 2, 4]))
    block_rows = cols * draw(st.integers(1, 3))
    block_cols = rows * draw(st.integers(1, 3))
    grid = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    mask = np.array(draw(st.lists(st.booleans(), min_size=grid[0] * grid[1],
                                  max_size=grid[0] * grid[1]))).reshape(grid)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    dense = np.random.default_rng(seed).integers(-128, 128, size=(grid[0] * block_rows,
                                                                  grid[1] * block_cols))
    dense *= np.kron(mask, np.ones((block_rows, block_cols), dtype=np.int64))
    return BlockSparseMatrix.from_dense(dense, (block_rows, block_cols)), rows, cols


@settings(max_examples=60, deadline=None)
@given(case=tiled_weights())
def test_tiles_and_bcsr_rebuild_the_dense_weight(case):
    matrix, rows, cols = case
    tiles = weight_tiles(matrix, rows, cols)
    block_rows, block_cols = matrix.block_shape
    assert tiles.shape == (matrix.nnz_blocks * block_rows * block_cols // (rows * cols),
                           rows, cols)
    assert np.array_equal(rebuild_dense(matrix, tiles, rows, cols), matrix.to_dense())


@settings(max_examples=30, deadline=None)
@given(case=tiled_weights(), data_width=st.sampled_from([8, 4, 16]))
def test_pack_weights_is_the_tiles_row_by_row(case, data_width):
    matrix, rows, cols = case
    clipped = BlockSparseMatrix(shape=matrix.shape, block_shape=matrix.block_shape,
                                row_ptr=matrix.row_ptr, col_idx=matrix.col_idx,
                                blocks=np.clip(matrix.blocks, -(1 << (data_width - 1)),
                                               (1 << (data_width - 1)) - 1))
    words = pack_weights(clipped, rows, cols, data_width)
    tiles = weight_tiles(clipped, rows, cols)
    block_rows, block_cols = matrix.block_shape
    assert len(words) == matrix.nnz_blocks * block_rows * block_cols // cols
    # word t*R + r is array row r of tile t: the C weights it multiplies
    expected = [reference_word(tiles[t, r], data_width)
                for t in range(tiles.shape[0]) for r in range(rows)]
    assert words == expected


def test_pack_weights_of_one_stored_block():
    # a 16x16 array with 16x32 blocks, pruned down to one block: 1 out tile x 2 in tiles
    dense = np.zeros((64, 64), dtype=np.int64)
    dense[16:32, 32:64] = np.arange(16 * 32).reshape(16, 32) % 256 - 128
    matrix = BlockSparseMatrix.from_dense(dense, (16, 32))
    tiles = weight_tiles(matrix, 16, 16)
    words = pack_weights(matrix, 16, 16, 8)
    assert words == [reference_word(tiles[t, r], 8) for t in range(2) for r in range(16)]


def test_weight_tiles_reject_an_array_that_does_not_tile_the_block():
    matrix = BlockSparseMatrix.from_dense(np.ones((4, 6), dtype=np.int64), (4, 6))
    with pytest.raises(ValueError, match=r"^A 4x2 array does not tile 4x6 blocks$"):
        weight_tiles(matrix, 4, 2)
    with pytest.raises(ValueError, match=r"^A 2x8 array does not tile 4x6 blocks$"):
        pack_weights(matrix, 2, 8, 8)


# quantization constants -------------------------------------------------------------------------

def test_quant_record_width():
    assert quant_record_width(32, 16) == 32 + 16 + SHIFT_WIDTH == 54
    assert quant_record_width(8, 4) == 18


def test_quant_field_layout_spelled_out():
    # record = bias (8 bits, two's complement) | multiplier (4 bits) << 8 | shift (6 bits) << 12
    first = 0xFF | 3 << 8 | 5 << 12            # bias -1, multiplier 3, shift 5 -> 0x053FF
    second = 0x02 | 15 << 8 | 63 << 12         # bias 2, multiplier 15, shift 63 -> 0x3FF02
    assert (first, second) == (0x053FF, 0x3FF02)
    words = pack_quant([-1, 2, -128, 127], [3, 15, 0, 1], [5, 63, 0, 1], 2, 8, 4)
    assert words == [first | second << 18, 0x80 | 0x7F << 18 | 1 << (18 + 8) | 1 << (18 + 12)]


def decode_quant(words, lanes, acc_width, multiplier_width):
    record_width = acc_width + multiplier_width + SHIFT_WIDTH
    records = [(word >> (lane * record_width)) & ((1 << record_width) - 1)
               for word in words for lane in range(lanes)]
    bias = [record & ((1 << acc_width) - 1) for record in records]
    bias = [value - (1 << acc_width) if value >> (acc_width - 1) else value for value in bias]
    multiplier = [(record >> acc_width) & ((1 << multiplier_width) - 1) for record in records]
    shift = [record >> (acc_width + multiplier_width) for record in records]
    return bias, multiplier, shift


@settings(max_examples=40, deadline=None)
@given(data=st.data(), lanes=st.integers(1, 4), groups=st.integers(1, 3),
       acc_width=st.sampled_from([8, 16, 32]), multiplier_width=st.sampled_from([4, 16]))
def test_pack_quant_fields_decode(data, lanes, groups, acc_width, multiplier_width):
    n = lanes * groups
    bias = data.draw(st.lists(st.integers(-(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1),
                              min_size=n, max_size=n))
    multiplier = data.draw(st.lists(st.integers(0, (1 << multiplier_width) - 1),
                                    min_size=n, max_size=n))
    shift = data.draw(st.lists(st.integers(0, 63), min_size=n, max_size=n))
    words = pack_quant(bias, multiplier, shift, lanes, acc_width, multiplier_width)
    assert len(words) == groups
    assert decode_quant(words, lanes, acc_width, multiplier_width) == (bias, multiplier, shift)


@pytest.mark.parametrize("bias, multiplier, shift, message", [
    ([128, 0], [0, 0], [0, 0], r"^Biases must fit 8-bit signed integers$"),
    ([-129, 0], [0, 0], [0, 0], r"^Biases must fit 8-bit signed integers$"),
    ([0, 0], [16, 0], [0, 0], r"^Multipliers must lie in \[0, 2\*\*4\)$"),
    ([0, 0], [0, -1], [0, 0], r"^Multipliers must lie in \[0, 2\*\*4\)$"),
    ([0, 0], [0, 0], [64, 0], r"^Shifts must lie in \[0, 2\*\*6\)$"),
    ([0, 0], [0, 0], [0, -1], r"^Shifts must lie in \[0, 2\*\*6\)$"),
    ([0, 0, 0], [0, 0, 0], [0, 0, 0], r"^3 outputs are not a multiple of array_cols \(2\)$"),
    ([0, 0], [0, 0], [0], r"^bias, multiplier and shift must be 1-D arrays of the same length$"),
    ([[0, 0]], [[0, 0]], [[0, 0]],
     r"^bias, multiplier and shift must be 1-D arrays of the same length$"),
])
def test_pack_quant_range_errors(bias, multiplier, shift, message):
    with pytest.raises(ValueError, match=message):
        pack_quant(bias, multiplier, shift, 2, 8, 4)


def test_pack_quant_accepts_the_field_extremes():
    words = pack_quant([-128, 127], [0, 15], [0, 63], 2, 8, 4)
    assert decode_quant(words, 2, 8, 4) == ([-128, 127], [0, 15], [0, 63])


# outputs ----------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), tokens=st.integers(1, 5), cols=st.sampled_from([1, 2, 4]),
       out_tiles=st.integers(1, 3), data_width=st.sampled_from([8, 5, 16]))
def test_unpack_outputs_reads_the_documented_word_order(seed, tokens, cols, out_tiles,
                                                          data_width):
    out_features = cols * out_tiles
    y = np.random.default_rng(seed).integers(-(1 << (data_width - 1)), 1 << (data_width - 1),
                                             size=(tokens, out_features))
    # word m*(N/C) + nt holds Y[m, nt*C:(nt+1)*C]
    words = [reference_word(y[m, nt * cols:(nt + 1) * cols], data_width)
             for m in range(tokens) for nt in range(out_tiles)]
    result = unpack_outputs(words, tokens, out_features, cols, data_width)
    assert result.shape == (tokens, out_features)
    assert np.array_equal(result, y)


def test_unpack_outputs_rejects_the_wrong_word_count():
    with pytest.raises(ValueError, match=r"^Expected 4 output words, found 3$"):
        unpack_outputs([0, 0, 0], 2, 4, 2, 8)
    with pytest.raises(ValueError, match=r"^Expected 4 output words, found 5$"):
        unpack_outputs([0] * 5, 2, 4, 2, 8)


# a whole job ------------------------------------------------------------------------------------

def test_pack_gemm_word_counts_and_contents():
    rng = np.random.default_rng(3)
    tokens, inner, outer = 5, 16, 8
    rows, cols, block = 2, 4, (4, 8)
    dense = rng.integers(-128, 128, size=(outer, inner))
    dense[0:4, 8:16] = 0                    # drop block (0, 1): 3 of 4 blocks stored
    matrix = BlockSparseMatrix.from_dense(dense, block)
    operands = GemmOperands(
        x=rng.integers(-128, 128, size=(tokens, inner)), weights=matrix,
        bias=rng.integers(-1000, 1000, size=outer), multiplier=rng.integers(0, 1 << 16, size=outer),
        shift=rng.integers(0, 64, size=outer),
    )
    image = pack_gemm(operands, array_rows=rows, array_cols=cols, data_width=8, acc_width=32,
                      multiplier_width=16)
    assert len(image.activation) == tokens * inner // rows == 40
    assert len(image.weight) == 3 * 4 * 8 // cols == 24
    assert image.row_ptr == [0, 1, 3]
    assert image.col_idx == [0, 0, 1]
    assert len(image.quant) == outer // cols == 2
    assert image.activation == pack_activations(operands.x, rows, 8)
    assert image.weight == pack_weights(matrix, rows, cols, 8)
    assert image.quant == pack_quant(operands.bias, operands.multiplier, operands.shift, cols,
                                     32, 16)
    assert decode_quant(image.quant, cols, 32, 16) == (operands.bias.tolist(),
                                                       operands.multiplier.tolist(),
                                                       operands.shift.tolist())


# weight-image byte order ------------------------------------------------------------------------

from sw.packing import (IMAGE_DTYPES, ByteReader, ByteWriter, ImageFormatError,  # noqa: E402
                        block_sparse_size, pack_array, pack_block_sparse, unpack_block_sparse)


@pytest.mark.parametrize("dtype", [name for name in IMAGE_DTYPES if name != "f64"])
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_image_integer_arrays_round_trip_little_endian(dtype, data):
    info = np.iinfo(IMAGE_DTYPES[dtype])
    values = data.draw(st.lists(st.integers(int(info.min), int(info.max)), max_size=6))
    packed = pack_array(values, dtype)
    size = IMAGE_DTYPES[dtype].itemsize
    assert packed == b"".join(int(v).to_bytes(size, "little", signed=info.min < 0)
                              for v in values)
    assert ByteReader(packed).array(dtype, len(values)).tolist() == values


def test_image_arrays_refuse_out_of_range_and_reads_past_the_end():
    with pytest.raises(ValueError, match=r"Values 0\.\.256 do not fit u8 \(0\.\.255\)"):
        pack_array([0, 256], "u8")
    with pytest.raises(ValueError, match="i32 values must be integers, not float"):
        pack_array([0.5], "i32")
    with pytest.raises(ValueError, match="must be integers, not float64"):
        pack_array(np.array([0.5]), "i32")
    assert pack_array([2**64 - 1, 0], "u64") == b"\xff" * 8 + bytes(8)
    assert ByteReader(pack_array([0.1, -2.5], "f64")).array("f64", 2).tolist() == [0.1, -2.5]
    reader = ByteReader(bytes(10), 2, 8)
    with pytest.raises(ImageFormatError, match=r"bias need 8 bytes at offset 2, only 6 left "
                                               r"before offset 8"):
        reader.array("i64", 1, "bias")
    writer = ByteWriter()
    writer.raw(b"abc")
    writer.align(8)
    assert writer.getvalue() == b"abc" + bytes(5) and writer.size == 8


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), density=st.floats(0.0, 1.0))
def test_block_sparse_bytes_round_trip(seed, density):
    rng = np.random.default_rng(seed)
    keep = rng.random((3, 4)) < density
    dense = rng.integers(-128, 128, (12, 16)) * np.kron(keep, np.ones((4, 4), dtype=np.int64))
    matrix = BlockSparseMatrix.from_dense(dense, (4, 4))
    packed = pack_block_sparse(matrix)
    assert len(packed) == block_sparse_size((12, 16), (4, 4), matrix.nnz_blocks)
    back = unpack_block_sparse(ByteReader(packed), (12, 16), (4, 4), matrix.nnz_blocks)
    assert np.array_equal(back.to_dense(), matrix.to_dense())
    assert back.row_ptr.tolist() == matrix.row_ptr.tolist()


def test_block_sparse_structure_is_checked():
    matrix = BlockSparseMatrix.from_dense(np.ones((4, 8), dtype=np.int64), (4, 4))
    packed = bytearray(pack_block_sparse(matrix))           # row_ptr 0 2, col_idx 0 1
    packed[8:12] = pack_array([1], "u32")                   # col_idx 1 1: not increasing
    with pytest.raises(ImageFormatError, match="block columns of block row 0 are not increasing"):
        unpack_block_sparse(ByteReader(bytes(packed)), (4, 8), (4, 4), 2)
    packed[8:12] = pack_array([2], "u32")                   # column 2 of a 2-column grid
    with pytest.raises(ImageFormatError, match="has block column 2, the matrix has 2"):
        unpack_block_sparse(ByteReader(bytes(packed)), (4, 8), (4, 4), 2)


def test_stream_tiles_follow_the_block_sequencers_walk():
    """Streamed weights are stored in compute order: block row, output tile, block, input tile
    (a 1x1 array cuts each 2x1 block into two output tiles, visited for both blocks of the row
    before the next output tile), unlike ``weight_tiles``' block-major memory order."""
    from sw.packing import pack_stream_weights, stream_tiles
    dense = np.array([[1, 0, 3],
                      [2, 0, 4],
                      [0, 5, 0],
                      [0, 6, 0]])
    matrix = BlockSparseMatrix.from_dense(dense, (2, 1))
    assert stream_tiles(matrix, 1, 1).reshape(-1).tolist() == [1, 3, 2, 4, 5, 6]
    assert weight_tiles(matrix, 1, 1).reshape(-1).tolist() == [1, 2, 3, 4, 5, 6]
    assert pack_stream_weights(matrix, 1, 1, 8) == bytes([1, 3, 2, 4, 5, 6])
    assert pack_stream_weights(matrix, 1, 1, 16) == b"\x01\x00\x03\x00\x02\x00\x04\x00" \
                                                     b"\x05\x00\x06\x00"


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), density=st.floats(0, 1), width=st.sampled_from([4, 8, 16]))
def test_stream_weights_round_trip(seed, density, width):
    """unpack_stream_weights inverts pack_stream_weights given the BCSR structure alone."""
    from sw.packing import pack_stream_weights, unpack_stream_weights
    rng = np.random.default_rng(seed)
    dense = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (16, 24))
    keep = rng.random((2, 3)) < density
    matrix = BlockSparseMatrix.from_dense(dense, (8, 8), keep=keep)
    data = pack_stream_weights(matrix, 4, 4, width)
    assert len(data) == matrix.nnz_blocks * 64 * width // 8
    structure = BlockSparseMatrix(shape=matrix.shape, block_shape=matrix.block_shape,
                                  row_ptr=matrix.row_ptr, col_idx=matrix.col_idx,
                                  blocks=np.zeros_like(matrix.blocks))
    assert np.array_equal(unpack_stream_weights(data, structure, 4, 4, width), matrix.blocks)
    with pytest.raises(ValueError, match="weight stream bytes"):
        unpack_stream_weights(data + b"\0", structure, 4, 4, width)
