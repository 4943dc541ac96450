"""``sw.quantize.linear``: per-channel weight scales, and all-zero weight rows whose bias is not
zero (the surgery's folded units) quantized exactly instead of overflowing the bias."""

import numpy as np
import pytest

from sw.golden.gemm import linear_int
from sw.quantize.linear import quantize_linear, weight_scales

INPUT_SCALE, OUTPUT_SCALE = 0.02, 0.05


def test_a_row_with_weights_keeps_its_max_abs_scale():
    weight = np.array([[0.5, -1.27, 0.0], [0.0, 0.0, 0.0]])
    scales = weight_scales(weight, input_scale=INPUT_SCALE, output_scale=OUTPUT_SCALE)
    assert scales[0] == 1.27 / 127
    assert scales[1] == OUTPUT_SCALE / INPUT_SCALE


def test_all_zero_row_with_a_bias_is_the_rounded_constant():
    # rows 1 and 2 have no weights; with the old 1e-12 floor, 0.5 / (0.02 * 1e-12 / 127) needed
    # 52 bits and the export failed ("quantized bias exceeds 32-bit integers")
    weight = np.array([[0.3, -0.2, 0.1, 0.05], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    bias = np.array([0.01, 0.5, -0.73, 100.0])
    quantized = quantize_linear(weight, bias, input_scale=INPUT_SCALE, output_scale=OUTPUT_SCALE)
    assert quantized.bias.tolist()[1:] == [10, -15, 2000]     # round(b / s_out)
    assert quantized.multiplier.tolist()[1:] == [1 << 15] * 3   # rescale exactly 1
    assert quantized.shift.tolist()[1:] == [15] * 3
    assert not quantized.weight[1:].any()
    x = np.random.default_rng(0).integers(-128, 128, size=(5, 4))
    out = linear_int(x, quantized.weight, quantized.bias, quantized.multiplier,
                     quantized.shift)
    # the constant output, saturated to int8 (100 / 0.05 = 2000 -> 127), for every input
    assert (out[:, 1:] == np.array([10, -15, 127])).all()


def test_all_zero_row_without_a_bias_outputs_zero():
    quantized = quantize_linear(np.zeros((2, 3)), None, input_scale=INPUT_SCALE,
                                output_scale=OUTPUT_SCALE)
    assert quantized.bias.tolist() == [0, 0]
    out = linear_int(np.full((1, 3), 127), quantized.weight, quantized.bias,
                     quantized.multiplier, quantized.shift)
    assert out.tolist() == [[0, 0]]


def test_a_bias_that_still_overflows_names_its_channel():
    weight = np.array([[0.3, 0.1], [1e-9, 0.0]])     # tiny but non-zero weights: scale 7.9e-12
    with pytest.raises(ValueError, match=r"^output channel 1: bias 1 is 6.35e\+12 accumulator "
                                         r"units \(input scale 0.02 x weight scale 7.87402e-12\)"
                                         r", beyond 32-bit integers$"):
        quantize_linear(weight, np.array([0.0, 1.0]), input_scale=INPUT_SCALE,
                        output_scale=OUTPUT_SCALE)
