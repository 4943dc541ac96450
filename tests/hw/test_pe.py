# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the systolic array's processing element."""

import numpy as np
import pytest

from hw.gemm.pe import ProcessingElement
from sw.numerics import wrap


def test_rejects_bad_widths():
    with pytest.raises(ValueError, match="Data width must be a positive integer, not 0"):
        ProcessingElement(data_width=0)
    with pytest.raises(ValueError, match=r"^Accumulator width must be at least the activation "
                                         r"plus weight widths \(16\), not 12$"):
        ProcessingElement(data_width=8, acc_width=12)
    with pytest.raises(ValueError, match=r"^Accumulator width must be at least the activation "
                                         r"plus weight widths \(17\), not 16$"):
        ProcessingElement(data_width=8, act_width=9, acc_width=16)


@pytest.mark.parametrize("acc_width", [32, 16])
def test_multiply_accumulate_with_two_banks(run_simulation, acc_width):
    """Registered outputs equal psum_in + act_in * weight[bank_in], wrapping at acc_width."""
    dut = ProcessingElement(data_width=8, acc_width=acc_width)
    rng = np.random.default_rng(1)
    steps = 200
    acts = rng.integers(-128, 128, steps)
    banks = rng.integers(0, 2, steps)
    psums = rng.integers(-(1 << (acc_width - 1)), 1 << (acc_width - 1), steps)
    new_weights = rng.integers(-128, 128, steps)
    write_enables = rng.integers(0, 2, steps)
    write_banks = rng.integers(0, 2, steps)

    async def testbench(ctx):
        weights = [0, 0]
        for step in range(steps):
            ctx.set(dut.act_in, int(acts[step]))
            ctx.set(dut.bank_in, int(banks[step]))
            ctx.set(dut.psum_in, int(psums[step]))
            ctx.set(dut.weight, int(new_weights[step]))
            ctx.set(dut.weight_we, int(write_enables[step]))
            ctx.set(dut.weight_bank, int(write_banks[step]))
            expected = int(wrap(psums[step] + acts[step] * weights[banks[step]], acc_width))
            await ctx.tick()
            assert ctx.get(dut.psum_out) == expected
            assert ctx.get(dut.act_out) == acts[step]
            assert ctx.get(dut.bank_out) == banks[step]
            if write_enables[step]:
                weights[write_banks[step]] = int(new_weights[step])

    run_simulation(dut, testbench)
