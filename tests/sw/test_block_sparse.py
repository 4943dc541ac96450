"""Tests of block-compressed-row storage: compression, index arrays, masks, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sw.block_sparse import BlockSparseMatrix

# 4x6 weight in 2x2 blocks (a 2x3 grid); stored blocks (0, 0), (0, 2), (1, 1)
HAND_DENSE = np.array([
    [1, 0, 0, 0, 0, 3],
    [0, 2, 0, 0, 0, 0],
    [0, 0, 0, -4, 0, 0],
    [0, 0, 5, 0, 0, 0],
])


def test_hand_example_index_arrays():
    matrix = BlockSparseMatrix.from_dense(HAND_DENSE, (2, 2))
    assert matrix.shape == (4, 6)
    assert matrix.block_shape == (2, 2)
    assert matrix.grid == (2, 3)
    assert matrix.row_ptr.tolist() == [0, 2, 3]
    assert matrix.col_idx.tolist() == [0, 2, 1]
    assert matrix.row_ptr.dtype == matrix.col_idx.dtype == matrix.blocks.dtype == np.int64
    assert matrix.blocks.tolist() == [
        [[1, 0], [0, 2]],      # block (0, 0)
        [[0, 3], [0, 0]],      # block (0, 2)
        [[0, -4], [5, 0]],     # block (1, 1)
    ]
    assert matrix.block_row_of_each_block().tolist() == [0, 0, 1]
    assert np.array_equal(matrix.to_dense(), HAND_DENSE)


def test_hand_example_mask_and_counts():
    matrix = BlockSparseMatrix.from_dense(HAND_DENSE, (2, 2))
    assert matrix.block_mask().tolist() == [[True, False, True], [False, True, False]]
    assert matrix.block_mask().dtype == bool
    assert matrix.nnz_blocks == 3
    assert matrix.block_density == 0.5


def test_rectangular_blocks():
    matrix = BlockSparseMatrix.from_dense(HAND_DENSE, (4, 2))
    assert matrix.grid == (1, 3)
    assert matrix.row_ptr.tolist() == [0, 3]
    assert matrix.col_idx.tolist() == [0, 1, 2]
    matrix = BlockSparseMatrix.from_dense(HAND_DENSE, (1, 3))
    assert matrix.grid == (4, 2)
    assert matrix.row_ptr.tolist() == [0, 2, 3, 4, 5]
    assert matrix.col_idx.tolist() == [0, 1, 0, 1, 0]
    assert matrix.blocks.tolist() == [[[1, 0, 0]], [[0, 0, 3]], [[0, 2, 0]], [[-4, 0, 0]],
                                      [[0, 0, 5]]]


def test_keep_forces_an_all_zero_block_to_be_stored():
    keep = np.array([[True, True, True], [False, True, False]])
    matrix = BlockSparseMatrix.from_dense(HAND_DENSE, (2, 2), keep=keep)
    assert matrix.row_ptr.tolist() == [0, 3, 4]
    assert matrix.col_idx.tolist() == [0, 1, 2, 1]
    assert matrix.blocks[1].tolist() == [[0, 0], [0, 0]]
    assert matrix.nnz_blocks == 4
    assert matrix.block_density == 4 / 6
    assert np.array_equal(matrix.block_mask(), keep)
    assert np.array_equal(matrix.to_dense(), HAND_DENSE)


def test_keep_drops_a_block_it_does_not_keep():
    # the pruning mask decides: a non-zero block outside it is not stored and reads back as 0
    keep = np.array([[True, False, False], [False, True, False]])
    matrix = BlockSparseMatrix.from_dense(HAND_DENSE, (2, 2), keep=keep)
    expected = HAND_DENSE.copy()
    expected[0:2, 4:6] = 0
    assert matrix.col_idx.tolist() == [0, 1]
    assert np.array_equal(matrix.to_dense(), expected)


def test_all_zero_matrix_stores_nothing():
    matrix = BlockSparseMatrix.from_dense(np.zeros((4, 6), dtype=np.int64), (2, 3))
    assert matrix.nnz_blocks == 0
    assert matrix.block_density == 0.0
    assert matrix.row_ptr.tolist() == [0, 0, 0]
    assert matrix.blocks.shape == (0, 2, 3)
    assert not matrix.block_mask().any()
    assert np.array_equal(matrix.to_dense(), np.zeros((4, 6)))


@st.composite
def block_sparse_dense(draw):
    block_rows, block_cols = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    grid = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    mask = np.array(draw(st.lists(st.booleans(), min_size=grid[0] * grid[1],
                                  max_size=grid[0] * grid[1]))).reshape(grid)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    # sparse values inside the kept blocks, so some kept blocks end up all zero as well
    dense = rng.integers(-3, 4, size=(grid[0] * block_rows, grid[1] * block_cols))
    dense *= np.kron(mask, np.ones((block_rows, block_cols), dtype=np.int64))
    return dense, (block_rows, block_cols)


@settings(max_examples=60, deadline=None)
@given(case=block_sparse_dense())
def test_round_trip_and_index_invariants(case):
    dense, block_shape = case
    block_rows, block_cols = block_shape
    matrix = BlockSparseMatrix.from_dense(dense, block_shape)
    assert np.array_equal(matrix.to_dense(), dense)
    grid = dense.shape[0] // block_rows, dense.shape[1] // block_cols
    nonzero = np.array([[dense[i * block_rows:(i + 1) * block_rows,
                               j * block_cols:(j + 1) * block_cols].any()
                         for j in range(grid[1])] for i in range(grid[0])], dtype=bool)
    assert np.array_equal(matrix.block_mask(), nonzero)
    assert matrix.nnz_blocks == int(nonzero.sum())
    assert matrix.block_density == nonzero.sum() / nonzero.size
    assert matrix.row_ptr.tolist() == [0, *np.cumsum(nonzero.sum(axis=1)).tolist()]
    assert matrix.col_idx.tolist() == [j for i in range(grid[0]) for j in range(grid[1])
                                       if nonzero[i, j]]
    for block, i, j in zip(matrix.blocks, matrix.block_row_of_each_block(), matrix.col_idx):
        assert np.array_equal(block, dense[i * block_rows:(i + 1) * block_rows,
                                           j * block_cols:(j + 1) * block_cols])


@settings(max_examples=30, deadline=None)
@given(case=block_sparse_dense(), seed=st.integers(0, 2 ** 32 - 1))
def test_any_keep_mask_that_covers_the_non_zeros_round_trips(case, seed):
    dense, block_shape = case
    nonzero = BlockSparseMatrix.from_dense(dense, block_shape).block_mask()
    keep = nonzero | (np.random.default_rng(seed).random(nonzero.shape) < 0.5)
    matrix = BlockSparseMatrix.from_dense(dense, block_shape, keep=keep)
    assert np.array_equal(matrix.block_mask(), keep)
    assert np.array_equal(matrix.to_dense(), dense)


@pytest.mark.parametrize("block_shape, message", [
    ((3, 2), "Block shape 3x2 does not divide the 4x6 matrix"),
    ((2, 4), "Block shape 2x4 does not divide the 4x6 matrix"),
    ((0, 2), "Block shape 0x2 does not divide the 4x6 matrix"),
    ((2, -3), "Block shape 2x-3 does not divide the 4x6 matrix"),
])
def test_block_shape_must_divide_the_matrix(block_shape, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        BlockSparseMatrix.from_dense(HAND_DENSE, block_shape)


@pytest.mark.parametrize("keep_shape", [(3, 2), (2, 2), (6,)])
def test_keep_mask_must_match_the_block_grid(keep_shape):
    shape_text = str(keep_shape).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"^Block mask shape {shape_text} does not match the "
                                         rf"2x3 blocks of the matrix$"):
        BlockSparseMatrix.from_dense(HAND_DENSE, (2, 2), keep=np.ones(keep_shape, dtype=bool))


@pytest.mark.parametrize("dense, shape_text", [
    (np.arange(6), r"\(6,\)"),
    (np.zeros((2, 2, 2)), r"\(2, 2, 2\)"),
    (np.int64(3), r"\(\)"),
])
def test_weights_must_be_2d(dense, shape_text):
    with pytest.raises(ValueError, match=rf"^Expected a 2-D weight matrix, found shape "
                                         rf"{shape_text}$"):
        BlockSparseMatrix.from_dense(dense, (1, 1))
