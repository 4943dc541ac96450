"""Co-simulation of the two row units, softmax and LayerNorm (cocotb + Verilator): bit-exact to
``softmax_int`` / ``layernorm_int``, cycles as ``sw.cycle_model.units``, with idle input cycles
and back-pressure as an axis. Rows end in partial beats (3 lanes)."""

import pytest

from sim.unit_cases import layernorm_jobs, run_unit_jobs, softmax_jobs, three_lane_config, with_gaps
from sw.config import load_config

pytestmark = pytest.mark.sim

CONFIG = three_lane_config(load_config("tiny"))

#: unit -> (its jobs, the longest row, the shortest row the random jobs include)
ROW_UNITS = {"softmax": (softmax_jobs, CONFIG.model.tokens, 1),
             "layernorm": (layernorm_jobs, CONFIG.model.hidden_size, 2)}


@pytest.fixture(scope="module", params=sorted(ROW_UNITS))
def unit(request, built_designs_by_top):
    """``(unit name, its built harness)``."""
    return request.param, built_designs_by_top(CONFIG, f"{request.param}_harness")


def test_over_100k_random_values_and_extremes(unit, tmp_path):
    name, design = unit
    jobs, max_len, shortest = ROW_UNITS[name]
    results = run_unit_jobs(design, name, jobs(max_len, elements=100_000), tmp_path)
    assert sum(r["elements"] for r in results if r["name"].startswith("random")) >= 100_000
    assert {r["length"] for r in results} >= {max_len, shortest}
    for r in results:
        assert r["bit_exact"] and r["mismatches"] == 0, r["name"]
        assert r["cycles"] == r["model_cycles"], r["name"]
    longest = next(r for r in results if r["name"] == f"random_len{max_len}")
    assert longest["beats"] / longest["cycles"] >= 0.95     # one beat per cycle, rows overlap


def test_idle_input_and_back_pressure(unit, tmp_path):
    """Three traffic shapes in one run: idle input cycles, back-pressure, and both."""
    name, design = unit
    jobs, max_len, _ = ROW_UNITS[name]
    gaps = [(128, 0), (0, 128), (200, 200)]
    cases = [job for in_gap, out_gap in gaps for job in with_gaps(
        jobs(max_len, elements=2_000, seed=in_gap + out_gap), in_gap, out_gap)]
    results = run_unit_jobs(design, name, cases, tmp_path)
    for r in results:
        assert r["bit_exact"], r["name"]
        assert r["model_cycles"] <= r["cycles"] <= (r["model_cycles"] + r["in_gated"]
                                                    + r["out_gated"]), r["name"]
        assert (r["in_gated"] > 0) == (r["in_gap"] > 0), r["name"]
        assert (r["out_gated"] > 0) == (r["out_gap"] > 0), r["name"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ROW_UNITS))
def test_deit_b16_benchmark_job(built_designs_by_top, tmp_path, name):
    """The benchmark's job of the unit on deit_b16: exact, and at least 0.95 elements per
    cycle per lane. Minutes: the build dominates."""
    from sim.unit_cases import benchmark_jobs

    config = load_config("deit_b16")
    job = next(job for job in benchmark_jobs(config) if job.unit == name)
    result, = run_unit_jobs(built_designs_by_top(config, f"{name}_harness"), name, [job],
                            tmp_path)
    assert result["bit_exact"] and result["cycles"] == result["model_cycles"]
    assert result["elements_per_cycle_per_lane"] >= 0.95
