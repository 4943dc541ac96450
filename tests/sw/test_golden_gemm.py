"""Tests of the golden block-sparse GEMM: its numbers, its independence of sparsity, its errors."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sw.block_sparse import BlockSparseMatrix
from sw.golden.gemm import GemmOperands, accumulate, block_sparse_gemm
from sw.numerics import requantize



def reference_gemm(x, dense_weight, bias, multiplier, shift, *, data_width=8):
    """Y = requantize(X @ W.T + bias), with a plain int64 matmul on the dense weight."""
    acc = np.asarray(x, dtype=np.int64) @ np.asarray(dense_weight, dtype=np.int64).T
    return requantize(acc + np.asarray(bias, dtype=np.int64), multiplier, shift,
                      out_width=data_width)


def operands(x, dense, block_shape, bias, multiplier, shift, *, keep=None):
    return GemmOperands(
        x=np.asarray(x, dtype=np.int64),
        weights=BlockSparseMatrix.from_dense(dense, block_shape, keep=keep),
        bias=np.asarray(bias, dtype=np.int64), multiplier=np.asarray(multiplier, dtype=np.int64),
        shift=np.asarray(shift, dtype=np.int64),
    )


def test_hand_worked_example_with_an_empty_block_row():
    # W = [[3, 4], [0, 0]] in 1x2 blocks: block row 1 is empty, so output 1 is the bias alone
    job = operands([[1, 2], [-1, 0]], [[3, 4], [0, 0]], (1, 2), bias=[10, -6],
                   multiplier=[1, 1], shift=[1, 2])
    assert job.weights.nnz_blocks == 1
    assert job.shape == (2, 2, 2)
    # row 0: acc = [1*3 + 2*4 + 10, -6] = [21, -6] -> [(21+1)>>1, (-6+2)>>2] = [11, -1]
    # row 1: acc = [-3 + 10, -6] = [7, -6]          -> [(7+1)>>1, -1]         = [4, -1]
    result = block_sparse_gemm(job)
    assert result.dtype == np.int64
    assert result.tolist() == [[11, -1], [4, -1]]


def test_saturates_to_the_data_width():
    job = operands([[100, 100]], [[100, 100], [-100, -100]], (1, 1), bias=[0, 0],
                   multiplier=[1, 1], shift=[0, 0])
    assert block_sparse_gemm(job).tolist() == [[127, -128]]
    assert block_sparse_gemm(job, data_width=16).tolist() == [[20000, -20000]]


@st.composite
def gemm_jobs(draw):
    block_rows, block_cols = draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from([1, 2, 4]))
    grid = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    tokens = draw(st.integers(1, 5))
    mask = np.array(draw(st.lists(st.booleans(), min_size=grid[0] * grid[1],
                                  max_size=grid[0] * grid[1]))).reshape(grid)
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    outer, inner = grid[0] * block_rows, grid[1] * block_cols
    dense = rng.integers(-128, 128, size=(outer, inner))
    dense *= np.kron(mask, np.ones((block_rows, block_cols), dtype=np.int64))
    x = rng.integers(-128, 128, size=(tokens, inner))
    bias = rng.integers(-(1 << 16), 1 << 16, size=outer)
    multiplier = rng.integers(0, 1 << 16, size=outer)
    shift = rng.integers(12, 30, size=outer)
    return x, dense, (block_rows, block_cols), bias, multiplier, shift


@settings(max_examples=60, deadline=None)
@given(job=gemm_jobs())
def test_block_sparse_equals_the_dense_reference(job):
    x, dense, block_shape, bias, multiplier, shift = job
    expected = reference_gemm(x, dense, bias, multiplier, shift)
    sparse = operands(x, dense, block_shape, bias, multiplier, shift)
    assert np.array_equal(block_sparse_gemm(sparse), expected)
    # the zero-filled dense equivalent, every block stored, gives the same numbers
    every_block = np.ones(sparse.weights.grid, dtype=bool)
    stored_dense = operands(x, dense, block_shape, bias, multiplier, shift, keep=every_block)
    assert np.array_equal(block_sparse_gemm(stored_dense), expected)
    # and so does the whole matrix as one block
    one_block = operands(x, dense, dense.shape, bias, multiplier, shift, keep=[[True]])
    assert np.array_equal(block_sparse_gemm(one_block), expected)


def test_a_realistic_shape_against_python_integers():
    rng = np.random.default_rng(11)
    tokens, inner, outer = 17, 64, 32
    dense = rng.integers(-128, 128, size=(outer, inner))
    keep = rng.random((outer // 8, inner // 8)) < 0.4
    dense *= np.kron(keep, np.ones((8, 8), dtype=np.int64))
    x = rng.integers(-128, 128, size=(tokens, inner))
    bias = rng.integers(-5000, 5000, size=outer)
    multiplier = rng.integers(1 << 15, 1 << 16, size=outer)
    shift = rng.integers(20, 26, size=outer)
    job = operands(x, dense, (8, 8), bias, multiplier, shift)
    expected = []
    for row in x.tolist():
        out = []
        for n in range(outer):
            acc = sum(a * w for a, w in zip(row, dense[n].tolist())) + int(bias[n])
            value = (acc * int(multiplier[n]) + (1 << int(shift[n]) >> 1)) >> int(shift[n])
            out.append(min(max(value, -128), 127))
        expected.append(out)
    result = block_sparse_gemm(job)
    assert result.tolist() == expected
    assert len(set(result.ravel().tolist())) > 20      # not all saturated or zero


def test_data_width_other_than_eight():
    x = [[7, -8, 3]]
    dense = [[-8, 7, 1], [0, 0, 0]]
    job = operands(x, dense, (1, 3), bias=[0, 5], multiplier=[1, 1], shift=[2, 0])
    # acc = [-56 - 56 + 3, 5] = [-109, 5]; (-109 + 2) >> 2 = -27 -> saturates to -8 at 4 bits
    assert block_sparse_gemm(job, data_width=4).tolist() == [[-8, 5]]


# errors -----------------------------------------------------------------------------------------

def test_inner_dimensions_must_agree():
    job = operands(np.zeros((2, 3)), np.ones((2, 4)), (1, 1), [0, 0], [1, 1], [0, 0])
    with pytest.raises(ValueError, match=r"^Activations have 3 columns but the weight has 4 "
                                         r"inputs$"):
        block_sparse_gemm(job)


@pytest.mark.parametrize("name", ["bias", "multiplier", "shift"])
@pytest.mark.parametrize("wrong", [[0, 0, 0], [[0, 0]], 0])
def test_per_output_constants_must_have_one_value_per_output(name, wrong):
    constants = {"bias": [0, 0], "multiplier": [1, 1], "shift": [0, 0], name: wrong}
    job = operands(np.zeros((1, 2)), np.ones((2, 2)), (1, 1), **constants)
    found = re.escape(str(np.shape(wrong)))
    with pytest.raises(ValueError, match=rf"^{name} has shape {found}, expected \(2,\)$"):
        block_sparse_gemm(job)


@pytest.mark.parametrize("x, dense, data_width, name", [
    ([[128, 0]], [[1, 1]], 8, "activations"),
    ([[-129, 0]], [[1, 1]], 8, "activations"),
    ([[1, 1]], [[0, 128]], 8, "weights"),
    ([[1, 1]], [[-129, 0]], 8, "weights"),
    ([[8, 0]], [[1, 1]], 4, "activations"),
    ([[0, 0]], [[-9, 0]], 4, "weights"),
])
def test_operands_must_fit_the_data_width(x, dense, data_width, name):
    job = operands(x, dense, (1, 1), [0], [1], [0])
    with pytest.raises(ValueError, match=rf"^{name} exceed {data_width}-bit signed integers$"):
        block_sparse_gemm(job, data_width=data_width)


def test_operands_at_the_data_width_extremes_are_accepted():
    job = operands([[-128, 127]], [[127, -128]], (1, 1), [0], [1], [8])
    # acc = -128*127 + 127*-128 = -32512; (-32512 + 128) >> 8 = -126.5 floored = -127
    assert block_sparse_gemm(job).tolist() == [[-127]]


@pytest.mark.parametrize("bias, found", [
    ([32767 - 4 * 127 * 127], None),              # acc == 32767: fits
    ([32768 - 4 * 127 * 127], "32768..32768"),    # one more overflows
])
def test_accumulator_overflow_at_the_top(bias, found):
    job = operands([[127] * 4], [[127] * 4], (1, 4), bias, [1], [8])
    if found is None:
        assert block_sparse_gemm(job, acc_width=16).tolist() == [[127]]
    else:
        with pytest.raises(OverflowError, match=rf"^Accumulator range {found} exceeds 16-bit "
                                                rf"signed integers$"):
            block_sparse_gemm(job, acc_width=16)


def test_accumulator_overflow_without_bias_and_at_the_bottom():
    job = operands([[127] * 4], [[127] * 4], (1, 4), [0], [1], [8])
    with pytest.raises(OverflowError, match=r"^Accumulator range 64516..64516 exceeds 16-bit "
                                            r"signed integers$"):
        block_sparse_gemm(job, acc_width=16)
    job = operands([[-128, 127]], [[127, -128]], (1, 2), [-256], [1], [0])
    assert int(accumulate(job.x, job.weights.to_dense(), job.bias, acc_width=16)[0, 0]) == -32768
    job = operands([[-128, 127]], [[127, -128]], (1, 2), [-257], [1], [0])
    with pytest.raises(OverflowError, match=r"^Accumulator range -32769..-32769 exceeds 16-bit "
                                            r"signed integers$"):
        block_sparse_gemm(job, acc_width=16)


def test_the_default_accumulator_is_32_bits():
    job = operands([[127] * 4], [[127] * 4], (1, 4), [0], [1], [8])
    assert block_sparse_gemm(job).tolist() == [[127]]
    # acc == 2**31 - 1: (2**31 - 1 + 2**30) >> 31 == 1
    job = operands([[127] * 4], [[127] * 4], (1, 4), [(1 << 31) - 1 - 64516], [1], [31])
    assert block_sparse_gemm(job).tolist() == [[1]]
    job = operands([[127] * 4], [[127] * 4], (1, 4), [(1 << 31) - 64516], [1], [31])
    with pytest.raises(OverflowError, match=r"^Accumulator range 2147483648..2147483648 exceeds "
                                            r"32-bit signed integers$"):
        block_sparse_gemm(job)


def test_requantization_widths_are_checked():
    job = operands([[1]], [[1]], (1, 1), [0], [1], [0])
    with pytest.raises(ValueError, match=r"^acc_width \(48\) \+ multiplier_width \(16\) must not "
                                         r"exceed 62 bits"):
        block_sparse_gemm(job, acc_width=48)


def test_shifts_outside_the_field_are_rejected():
    job = operands([[1]], [[1]], (1, 1), [0], [1], [64])
    with pytest.raises(ValueError, match=r"^Requantization shifts must lie in \[0, 64\)"):
        block_sparse_gemm(job)


def test_multipliers_must_fit_the_multiplier_width():
    job = operands([[1, 1]], [[1, 1], [1, 1]], (1, 1), [0, 0], [1 << 16, 1 << 20], [20, 20])
    with pytest.raises(ValueError):
        block_sparse_gemm(job, multiplier_width=16)


def test_biases_must_fit_the_accumulator_width():
    # acc = -20000 + 40000 = 20000 fits 16 bits, but the bias 40000 does not
    job = operands([[-100, -100]], [[100, 100]], (1, 1), [40000], [1], [0])
    with pytest.raises(ValueError):
        block_sparse_gemm(job, acc_width=16)
