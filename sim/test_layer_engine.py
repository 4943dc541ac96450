"""Whole encoder layers through the layer engine's RTL: bit-exact to the golden layer, every
instruction's cycles equal to the cycle model (cocotb + Verilator, ``tiny`` preset)."""

import pytest

from sim.harness import build
from sim.layer_replay import replay, synthetic_case
from sw.config import load_config

pytestmark = pytest.mark.sim


def test_tiny_layers_dense_and_pruned(tmp_path):
    config = load_config("tiny")
    cases = [
        synthetic_case(config, kept_heads=range(4), kept_ffn=128, density=1.0, seed=0),
        synthetic_case(config, kept_heads=[0, 2, 3], kept_ffn=64, density=0.5, seed=1),
        synthetic_case(config, kept_heads=[1], kept_ffn=32, density=0.25, seed=2),
    ]
    results = replay(build(config, "layer_engine"), cases, tmp_path)
    for result in results:
        assert result["bit_exact"], result["name"]
        assert result["cycles"] == result["model_cycles"], result["name"]
        for entry in result["instructions"]:
            assert entry["cycles"] == entry["model_cycles"], (result["name"], entry)
    # the pruned layers are faster, instruction by instruction where they shrink
    assert results[0]["cycles"] > results[1]["cycles"] > results[2]["cycles"]
