"""bench/layer.py's time at Fmax: the pruned and dense deit_b16 layer, and an image of layers
pruned alike, at the placed engine's clock; one line naming the command without one."""

from pathlib import Path

from bench.layer import time_at_fmax
from sw.config import load_config

FIXTURES = Path(__file__).parent / "hw" / "synth_fixtures"


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
