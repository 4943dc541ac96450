# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the whole units with one lane and with partial beats: outputs
equal to the golden kernels, cycles equal to ``sw.cycle_model.units``; and their parameter and
constant checks. (The co-simulation in ``sim/`` runs the 100k-value and exhaustive tests.)"""

import numpy as np
import pytest

from hw.units.gelu import Gelu
from hw.units.layernorm import LayerNorm
from hw.units.softmax import Softmax
from sw.config import load_config
from sw.cycle_model.units import gelu_cycles, layernorm_cycles, softmax_cycles
from sw.golden.kernels import (gelu_constants, gelu_int, layernorm_constants, layernorm_int,
                               softmax_constants, softmax_int)
from sw.packing import beats_to_rows, rows_to_beats


def _run_rows(run_simulation, dut, rows, values, affine=()):
    """Stream ``rows`` through ``dut`` (output always ready); return (outputs, cycles from
    the first offered beat to the last output, inclusive)."""
    beats = rows_to_beats(rows, dut.lanes).tolist()
    outputs, cycles = [], []

    async def testbench(ctx):
        for name, value in values.items():
            ctx.set(getattr(dut.constants, name), value)
        for word in affine:
            ctx.set(dut.affine.payload, word)
            ctx.set(dut.affine.valid, 1)
            await ctx.tick()
        if affine:
            ctx.set(dut.affine.valid, 0)
        await ctx.tick().repeat(2)
        ctx.set(dut.o.ready, 1)
        index = cycle = 0
        while len(outputs) < len(beats):
            ctx.set(dut.i.valid, index < len(beats))
            if index < len(beats):
                ctx.set(dut.i.payload, beats[index])
            _, _, in_ready, out_valid, out_payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload)
            index += bool(in_ready and index < len(beats))
            if out_valid:
                outputs.append(list(out_payload))
            cycle += 1
        cycles.append(cycle)

    run_simulation(dut, testbench)
    return beats_to_rows(outputs, rows.shape[1]), cycles[0]


def test_gelu_every_int8_input_one_lane(run_simulation):
    dut = Gelu.from_config(load_config("tiny"))
    c = gelu_constants(0.05, 0.03, in_width=8)
    x = np.arange(-128, 128).reshape(1, -1)
    found, cycles = _run_rows(run_simulation, dut, x, dut.constant_values(c))
    assert found.tolist() == gelu_int(x, c).tolist()
    assert cycles == gelu_cycles(dut.timing, 256).total == 256 + dut.latency


@pytest.mark.parametrize("lanes,length,rows", [(1, 17, 4), (2, 9, 5), (4, 17, 3)])
def test_softmax_rows(run_simulation, lanes, length, rows):
    dut = Softmax(lanes=lanes, max_len=17, in_width=32, frac_bits=10, out_bits=8,
                  multiplier_width=16)
    c = softmax_constants(0.05)
    g = np.random.default_rng(lanes)
    x = g.integers(-300, 300, (rows, length))
    x[0] = 9                                   # all equal
    found, cycles = _run_rows(run_simulation, dut, x, dut.constant_values(c, length))
    assert found.tolist() == softmax_int(x, c).tolist()
    assert cycles == softmax_cycles(dut.timing, rows=rows, length=length).total


@pytest.mark.parametrize("lanes,length,rows", [(1, 64, 3), (3, 10, 5)])
def test_layernorm_rows(run_simulation, lanes, length, rows):
    dut = LayerNorm(lanes=lanes, max_len=64, in_width=16, norm_bits=12, gamma_width=16,
                    out_width=8, multiplier_width=16)
    g = np.random.default_rng(lanes)
    c = layernorm_constants(g.normal(1, 0.3, length), g.normal(0, 0.5, length), 0.05,
                            in_width=16)
    x = g.integers(-30000, 30000, (rows, length))
    x[0] = -7                                  # zero variance
    affine = dut.affine_words(c)
    found, cycles = _run_rows(run_simulation, dut, x, dut.constant_values(c), affine)
    assert found.tolist() == layernorm_int(x, c).tolist()
    assert cycles == layernorm_cycles(dut.timing, rows=rows, length=length).total


def test_units_from_config_follow_the_encoder_layer():
    config = load_config("deit_b16")
    softmax, gelu, norm = (Softmax.from_config(config), Gelu.from_config(config),
                           LayerNorm.from_config(config))
    hw = config.hardware
    assert (softmax.lanes, gelu.lanes, norm.lanes) == (hw.softmax_lanes, hw.gelu_lanes,
                                                       hw.layernorm_lanes) == (8, 16, 8)
    assert softmax.timing.max_len == 197 and norm.timing.max_len == 768
    assert norm.timing.in_width == 16                          # the int16 residual stream
    assert gelu.latency == 9
    assert softmax.latency == softmax_cycles(softmax.timing, rows=1, length=197).latency


def test_constant_checks_name_the_field():
    config = load_config("tiny")
    softmax, gelu = Softmax.from_config(config), Gelu.from_config(config)
    with pytest.raises(ValueError, match=r"Softmax row length must lie in 1..17, not 18"):
        softmax.constant_values(softmax_constants(0.05), 18)
    with pytest.raises(ValueError, match="do not fit a unit of frac_bits 10, out_bits 8"):
        softmax.constant_values(softmax_constants(0.05, out_bits=15), 17)
    with pytest.raises(ValueError, match="do not fit a unit of frac_bits 10, widths 8->8"):
        gelu.constant_values(gelu_constants(0.05, 0.05, in_width=32))
    norm = LayerNorm.from_config(config)
    with pytest.raises(ValueError, match="LayerNorm rows must have 2..64 values, not 65"):
        norm.constant_values(layernorm_constants(np.ones(65), np.zeros(65), 0.05,
                                                 in_width=16))
    with pytest.raises(ValueError, match="Lanes must be a positive integer, not 0"):
        Gelu(lanes=0, in_width=8, out_width=8, frac_bits=10, multiplier_width=16)
