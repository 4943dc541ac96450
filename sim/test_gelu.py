"""Co-simulation of the GELU unit (cocotb + Verilator): every int8 input under several scale
pairs, bit-exact to ``gelu_int``, cycles as ``sw.cycle_model.units``, with idle input cycles and
back-pressure as an axis."""

import pytest

from sim.unit_cases import gelu_jobs, run_unit_jobs, three_lane_config, with_gaps
from sw.config import load_config

pytestmark = pytest.mark.sim

CONFIG = three_lane_config(load_config("tiny"))


@pytest.fixture(scope="module")
def design(built_designs_by_top):
    return built_designs_by_top(CONFIG, "gelu_harness")


def test_every_int8_input_under_every_traffic_shape(design, tmp_path):
    """Ungated (cycles equal to the model), idle input cycles, back-pressure, both; one run."""
    gaps = [(0, 0), (128, 0), (0, 128), (200, 200)]
    jobs = [job for in_gap, out_gap in gaps for job in with_gaps(gelu_jobs(), in_gap, out_gap)]
    results = run_unit_jobs(design, "gelu", jobs, tmp_path)
    assert len(results) == len(jobs) == 4 * len(gelu_jobs())
    for r in results:
        assert r["elements"] == 256 and r["bit_exact"], r["name"]
        if r["in_gap"] or r["out_gap"]:
            assert r["model_cycles"] <= r["cycles"] <= (r["model_cycles"] + r["in_gated"]
                                                        + r["out_gated"]), r["name"]
            assert r["in_gated"] + r["out_gated"] > 0, r["name"]
        else:
            assert r["cycles"] == r["model_cycles"], r["name"]


@pytest.mark.slow
def test_deit_b16_benchmark_job(built_designs_by_top, tmp_path):
    """The benchmark's gelu job on the deit_b16 unit: exact, and at least 0.95 elements per
    cycle per lane. Minutes: the build dominates."""
    from sim.unit_cases import benchmark_jobs
    from sw.config import load_config

    config = load_config("deit_b16")
    job = next(job for job in benchmark_jobs(config) if job.unit == "gelu")
    result, = run_unit_jobs(built_designs_by_top(config, "gelu_harness"), "gelu", [job],
                            tmp_path)
    assert result["bit_exact"] and result["cycles"] == result["model_cycles"]
    assert result["elements_per_cycle_per_lane"] >= 0.95
