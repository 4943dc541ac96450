"""Co-simulation of BlockSparseGemm (cocotb + Verilator): bit-exact and cycle-exact.

Hardware shape is the pytest axis (one Verilator build per shape per session); each case is one
run of ``sim/tb_block_sparse_gemm.py``, whose scoreboard compares with the golden model and the
cycle model. The test re-reads its measurements and asserts them too.
"""

import json
import os

import pytest

from sim.gemm_cases import GemmCase, make_operands, save_operands
from sim.hardware_shapes import hardware_shapes
from sim.harness import run_testbench
from sw.config import load_config

pytestmark = pytest.mark.sim

SHAPES = hardware_shapes()


def cases_for(config) -> list[GemmCase]:
    """The density sweep on the FFN-up shape, and edge cases on both FFN shapes."""
    m = config.model
    up = dict(tokens=m.tokens, in_features=m.hidden_size, out_features=m.ffn_size)
    down = dict(tokens=m.tokens, in_features=m.ffn_size, out_features=m.hidden_size)
    return [
        *(GemmCase(f"density{d}", density=d, seed=i, **up)
          for i, d in enumerate((1.0, 0.5, 0.25, 0.1))),
        GemmCase("all_zero", pattern="all_zero", **up),
        GemmCase("empty_block_rows", density=0.5, pattern="empty_block_rows", seed=5, **down),
        GemmCase("single_block", pattern="single_block", seed=6, **down),
        GemmCase("saturate", pattern="saturate", seed=7, **up),
        # fewer rows than the shortest tile period: the engine pads each tile period
        GemmCase("few_tokens", tokens=3, in_features=m.hidden_size, out_features=m.ffn_size,
                 density=0.5, seed=8),
    ]


PARAMS = [pytest.param(shape, case, id=f"{shape}-{case.name}")
          for shape, config in SHAPES.items() for case in cases_for(config)]


def test_jobs_in_sequence_without_reset(built_designs, tmp_path):
    """FFN-up then FFN-down then a job of other rows on one engine, no reset between them: no
    state (weight banks, descriptor queue, accumulators, counters, done) leaks into the next.
    The load stream has idle cycles (valid low, garbage payload) that must not write."""
    config = SHAPES["tiny_4x8"]
    m = config.model
    cases = [GemmCase("up", m.tokens, m.hidden_size, m.ffn_size, density=0.5, seed=11),
             GemmCase("down", m.tokens, m.ffn_size, m.hidden_size, density=0.25, seed=12),
             GemmCase("few", 5, m.hidden_size, m.hidden_size, pattern="empty_block_rows",
                      density=0.5, seed=13)]
    paths = []
    for case in cases:
        paths.append(tmp_path / f"{case.name}.npz")
        save_operands(make_operands(case, config.hardware), paths[-1])
    run_testbench(built_designs(config), "sim.tb_block_sparse_gemm", tmp_path, extra_env={
        "GEMM_OPERANDS": os.pathsep.join(str(path) for path in paths),
        "GEMM_RESULT": str(tmp_path / "result.json"),
        "GEMM_LOAD_GAPS": "1",
    })
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["shape"] == [5, m.hidden_size, m.hidden_size]      # the last job's
    assert result["bit_exact"]
    assert result["cycles"] == result["model_cycles"] == result["edge_cycles"]


@pytest.mark.parametrize("shape,case", PARAMS)
def test_gemm_matches_golden_and_cycle_model(shape, case, built_designs, tmp_path):
    config = SHAPES[shape]
    operands = make_operands(case, config.hardware)
    save_operands(operands, tmp_path / "operands.npz")
    run_testbench(built_designs(config), "sim.tb_block_sparse_gemm", tmp_path, extra_env={
        "GEMM_OPERANDS": str(tmp_path / "operands.npz"),
        "GEMM_RESULT": str(tmp_path / "result.json"),
    })
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["bit_exact"] and result["mismatches"] == 0
    assert result["cycles"] == result["model_cycles"] == result["edge_cycles"]
    assert result["busy"] == result["model_busy"]
    assert result["stall"] == result["model_stall"]
    if case.pattern == "saturate":
        assert result["saturated_outputs"] > 0


@pytest.mark.slow
def test_deit_b16_ffn_gemm_at_quarter_density(built_designs, tmp_path):
    """The benchmark's shape: 197 x 768 times 768 x 3072 on the deit_b16 engine (16 x 16 array,
    32 x 32 blocks), a quarter of the blocks stored. Minutes: the build dominates."""
    config = load_config("deit_b16")
    m = config.model
    case = GemmCase("deit_b16_ffn", m.tokens, m.hidden_size, m.ffn_size, density=0.25, seed=2)
    save_operands(make_operands(case, config.hardware), tmp_path / "operands.npz")
    run_testbench(built_designs(config), "sim.tb_block_sparse_gemm", tmp_path, extra_env={
        "GEMM_OPERANDS": str(tmp_path / "operands.npz"),
        "GEMM_RESULT": str(tmp_path / "result.json"),
    })
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["bit_exact"]
    assert result["cycles"] == result["model_cycles"] == result["edge_cycles"]
    assert result["ideal_cycles"] / result["cycles"] >= 0.85
