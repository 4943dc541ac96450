"""bench/synth.py's derived figures: the non-GEMM LUT share of the deit_b16 engine, and a dense
image's time at a placed engine's Fmax."""

from pathlib import Path

from bench.synth import DESIGNS, engine_time, nongemm_lut_share
from hw.synth.throughput import at_fmax
from sw.config import load_config
from sw.cycle_model.layer import LayerPruning, layer_cycles


def test_nongemm_share_is_what_the_engine_has_beyond_its_gemm():
    assert nongemm_lut_share({"layer_engine": 100_000, "block_sparse_gemm": 33_130,
                              "gelu": 35_307}) == 0.6687
    assert nongemm_lut_share({"gelu": 35_307, "block_sparse_gemm": 33_130}) is None


def test_every_deit_b16_unit_and_both_engines_are_measured():
    assert {top for name, top, _ in DESIGNS if name == "deit_b16"} == {
        "gemm_epilogue", "softmax", "layernorm", "token_gather", "block_sparse_gemm",
        "layer_engine"}
    assert ("tiny", "layer_engine", True) in DESIGNS
    assert ("ulx3s_85f", "layer_engine", True) in DESIGNS      # the board preset, placed
    assert not any(place for name, _, place in DESIGNS if name == "deit_b16")


FIXTURES = Path(__file__).parent / "synth_fixtures"


def test_engine_time_is_a_dense_image_at_the_placed_fmax():
    config = load_config("tiny")
    layer = layer_cycles(config, LayerPruning.dense(config))
    entry = engine_time(config, FIXTURES / "layer_engine.placed.json")     # 50 MHz, 100 blocks
    cycles, macs = 2 * layer.total, 2 * layer.macs
    assert (entry["dense_image_cycles"], entry["dense_image_macs"]) == (cycles, macs)
    assert entry["at_fmax"] == {
        "clock": {"fmax_mhz": 50.0, "measured": True, "dsp": 100,
                  "source": str(FIXTURES / "layer_engine.placed.json")},
        **at_fmax(cycles, 50.0, dense_macs=macs, dsp=100)}
    assert entry["at_fmax"]["latency_us"] == round(cycles / 50, 3)
    assert entry["at_fmax_note"] is None


def test_engine_time_without_a_placed_engine_says_why():
    entry = engine_time(load_config("tiny"), FIXTURES / "layer_engine.overflow.json")
    assert entry["at_fmax"] is None
    assert entry["at_fmax_note"] == (
        f"no time at Fmax: {FIXTURES / 'layer_engine.overflow.json'}: the layer engine does not "
        f"fit LFE5U-85F speed 6 (MULT18X18D 164 > 156), so it was not placed and routed; "
        f"measure it with `make synth CONFIG=tiny`")
