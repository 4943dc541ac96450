"""Co-simulation of the LayerNorm unit (cocotb + Verilator): bit-exact to ``layernorm_int``, cycles
as ``sw.cycle_model.units``, with idle input cycles and back-pressure as an axis."""

import pytest

from sim.unit_cases import run_unit_jobs, layernorm_jobs, three_lane_config, with_gaps
from sw.config import load_config

pytestmark = pytest.mark.sim

CONFIG = three_lane_config(load_config("tiny"))
MAX_LEN = CONFIG.model.hidden_size


@pytest.fixture(scope="module")
def design(built_designs_by_top):
    return built_designs_by_top(CONFIG, "layernorm_harness")


def test_over_100k_random_values_and_extremes(design, tmp_path):
    results = run_unit_jobs(design, "layernorm", layernorm_jobs(MAX_LEN, elements=100_000),
                            tmp_path)
    assert sum(r["elements"] for r in results if r["name"].startswith("random")) >= 100_000
    assert {r["length"] for r in results} >= {MAX_LEN, 2}
    for r in results:
        assert r["bit_exact"] and r["mismatches"] == 0, r["name"]
        assert r["cycles"] == r["model_cycles"], r["name"]
    longest = next(r for r in results if r["name"] == f"random_len{MAX_LEN}")
    assert longest["beats"] / longest["cycles"] >= 0.95     # one beat per cycle, rows overlap


def test_idle_input_and_back_pressure(design, tmp_path):
    """Three traffic shapes in one run: idle input cycles, back-pressure, and both."""
    gaps = [(128, 0), (0, 128), (200, 200)]
    jobs = [job for in_gap, out_gap in gaps for job in with_gaps(
        layernorm_jobs(MAX_LEN, elements=2_000, seed=in_gap + out_gap), in_gap, out_gap)]
    results = run_unit_jobs(design, "layernorm", jobs, tmp_path)
    for r in results:
        assert r["bit_exact"], r["name"]
        assert r["model_cycles"] <= r["cycles"] <= (r["model_cycles"] + r["in_gated"]
                                                    + r["out_gated"]), r["name"]
        assert (r["in_gated"] > 0) == (r["in_gap"] > 0), r["name"]
        assert (r["out_gated"] > 0) == (r["out_gap"] > 0), r["name"]


@pytest.mark.slow
def test_deit_b16_benchmark_job(built_designs_by_top, tmp_path):
    """The benchmark's layernorm job on the deit_b16 unit: exact, and at least 0.95 elements per
    cycle per lane. Minutes: the build dominates."""
    from bench.units import bench_jobs
    from sw.config import load_config

    config = load_config("deit_b16")
    job = next(job for job in bench_jobs(config) if job.unit == "layernorm")
    result, = run_unit_jobs(built_designs_by_top(config, "layernorm_harness"), "layernorm", [job],
                            tmp_path)
    assert result["bit_exact"] and result["cycles"] == result["model_cycles"]
    assert result["elements_per_cycle_per_lane"] >= 0.95
