"""The layer benchmark's bandwidth sweep and roofline plot (``bench.layer``), on tiny layers."""

from bench.layer import SWEEP_BYTES_PER_CYCLE, bandwidth_sweep, plot_roofline
from sim.layer_replay import synthetic_case
from sw.config import load_config


def test_the_sweep_falls_with_bandwidth_and_pruning_moves_fewer_bytes(tmp_path):
    config = load_config("tiny")
    dense = synthetic_case(config, kept_heads=range(4), kept_ffn=128, density=1.0, seed=0)
    pruned = synthetic_case(config, kept_heads=[0, 1], kept_ffn=64, density=0.25, seed=1)
    sweep = bandwidth_sweep(config, dense, pruned)
    assert [p["bytes_per_cycle"] for p in sweep] == list(SWEEP_BYTES_PER_CYCLE)
    for slower, faster in zip(sweep, sweep[1:]):
        assert slower["cycles_dense"] >= faster["cycles_dense"]
        assert slower["cycles_pruned"] >= faster["cycles_pruned"]
    assert all(p["cycles_pruned"] < p["cycles_dense"] for p in sweep)
    # at one byte a cycle the weights' bytes dominate: 4 d^2 + 2 d f = 32,768 for dense tiny
    assert sweep[0]["cycles_dense"] > 32_768
    # from the bus width on (4 bytes: one word a cycle) the memory no longer matters
    assert sweep[2]["cycles_dense"] == sweep[-1]["cycles_dense"]
    path = tmp_path / "roofline.png"
    plot_roofline({"config": "tiny", "axi_bytes_per_cycle": 4, "bandwidth_sweep": sweep}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
