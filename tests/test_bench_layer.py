"""The layer benchmark (``bench.layer``): the time at Fmax of the pruned and dense deit_b16 layer
and an image of layers pruned alike, at the placed engine's clock (one line naming the command
without one); the bandwidth sweep and roofline plot on tiny layers."""

from pathlib import Path

from bench.layer import SWEEP_BYTES_PER_CYCLE, bandwidth_sweep, plot_roofline, time_at_fmax
from sim.layer_replay import synthetic_case
from sw.config import load_config

FIXTURES = Path(__file__).parent / "hw" / "synth_fixtures"


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


def test_the_layer_and_an_image_of_alike_layers_at_the_placed_fmax():
    config = load_config("deit_b16")
    placed = FIXTURES / "layer_engine.placed.json"           # 50 MHz, 100 MULT18X18D
    timed, note = time_at_fmax(config, 1_000_000, 4_000_000, 10**9, placed)
    assert note is None
    assert timed["clock"] == {"fmax_mhz": 50.0, "measured": True, "source": str(placed),
                              "dsp": 100}
    # 1e6 cycles at 50 MHz: 20 ms; the dense layer's 1e9 MACs in 20 ms: 100 GOP/s effective
    assert timed["layer"] == {"fmax_mhz": 50.0, "latency_us": 20000.0, "per_second": 50.0,
                              "effective_gops": 100.0, "gops_per_dsp": 1.0}
    assert timed["dense_layer"]["latency_us"] == 80000.0
    assert timed["dense_layer"]["effective_gops"] == 25.0
    # 12 layers: 240 ms an image, the same GOP/s
    assert timed["image"] == {"fmax_mhz": 50.0, "latency_us": 240000.0, "per_second": 4.17,
                              "effective_gops": 100.0, "gops_per_dsp": 1.0}


def test_no_time_without_a_placed_engine(tmp_path):
    timed, note = time_at_fmax(load_config("deit_b16"), 10, 20, 30, tmp_path / "absent.json")
    assert timed is None
    assert note == (f"no time at Fmax: no synthesis report of the layer engine "
                    f"({tmp_path / 'absent.json'}); measure it with "
                    f"`make synth CONFIG=deit_b16`")
