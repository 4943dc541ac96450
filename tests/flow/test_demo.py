"""The demo's own checks and counts, without Verilator: non-zero MACs of replayed instructions,
the same-engine check of the dense and pruned configs, ``make bench``'s runs and their cycles."""

import json
from pathlib import Path

import numpy as np
import pytest

from flow.demo import (DemoFailed, bench_runs, check_same_engine, cycle_model_cycles,
                       engine_clocks, nonzero_macs)
from sim.layer_replay import image_cases, model_cycles, synthetic_case
from sw.config import load_config
from sw.image.export import ExportRequest, export
from sw.synthetic_deit import save_pruned_deit


def test_nonzero_macs_count_nonzero_weights_of_linears_and_every_attention_mac():
    config = load_config("tiny")
    case = synthetic_case(config, kept_heads=[0, 2], kept_ffn=64, density=0.5, seed=3)
    tokens = case.x.shape[0]
    fc1 = case.layer.fc1.weight
    assert 0 < np.count_nonzero(fc1) < fc1.size        # pruned: zeros must not count
    assert nonzero_macs(case, {"opcode": "GEMM", "unit": "fc1", "macs": 0,
                               "rows": tokens}) == tokens * np.count_nonzero(fc1)
    # after a token gather the FFN sees fewer rows
    assert nonzero_macs(case, {"opcode": "GEMM", "unit": "fc1", "macs": 0,
                               "rows": 5}) == 5 * np.count_nonzero(fc1)
    assert nonzero_macs(case, {"opcode": "ATTENTION_SCORES", "unit": "attention_scores",
                               "macs": 1234}) == 1234
    assert nonzero_macs(case, {"opcode": "SOFTMAX", "unit": "softmax", "macs": 0}) == 0


def test_dense_and_pruned_configs_must_share_the_engine():
    dense = load_config("tiny")
    pruned = dense.replace(name="pruned", hardware={"weight_buffer_depth": 512})
    check_same_engine(dense, pruned)                 # buffer depths may differ
    other = dense.replace(name="other", hardware={"array_cols": 8})
    with pytest.raises(DemoFailed, match="config 'other' has array_cols 8, the dense model's "
                                         "'tiny' 4: not the same engine"):
        check_same_engine(dense, other)


def test_bench_runs_read_make_bench_documents_and_leave_filled_runs_out(tmp_path, capsys):
    pruning = tmp_path / "pruning.json"
    pruning.write_text(json.dumps({"runs": [
        {"target_linear_density": 0.25, "linear_density": 0.26, "accuracy": 0.96,
         "filled": False},
        {"target_linear_density": 0.25, "linear_density": 0.44, "accuracy": 0.95,
         "filled": True}]}))
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"runs": [
        {"name": "keep0.7_block", "keep_rate": 0.7, "block_pruned": True, "seed": 0,
         "accuracy": 0.9611, "linear_density": 0.25},
        {"name": "keep0.7_block_seed2", "keep_rate": 0.7, "block_pruned": True, "seed": 2,
         "accuracy": 0.9417, "linear_density": 0.25},
        {"name": "keep0.5_dense", "keep_rate": 0.5, "block_pruned": False, "seed": 0,
         "accuracy": 0.9583, "linear_density": 1.0}]}))
    broken = tmp_path / "broken.json"
    broken.write_text('{"runs": [{"accuracy": 1}]}')
    runs = bench_runs([(pruning, tmp_path / "p", "bench pruned"),
                       (tmp_path / "absent.json", tmp_path / "a", "bench pruned"),
                       (tokens, tmp_path / "t", "bench tokens"),
                       (broken, tmp_path / "b", "bench pruned")])
    assert [(run["label"], run["kind"], run["accuracy"], run["linear_density"],
             run["directory"]) for run in runs] == [
        ("bench: block pruning to 0.25", "bench pruned", 0.96, 0.26,
         tmp_path / "p" / "density_0.25"),
        ("bench: keep 0.7, block pruned", "bench tokens", 0.9611, 0.25,
         tmp_path / "t" / "keep0.7_block"),
        ("bench: keep 0.7, block pruned, seed 2", "bench tokens", 0.9417, 0.25,
         tmp_path / "t" / "keep0.7_block_seed2"),
        ("bench: keep 0.5, weights dense", "bench tokens", 0.9583, 1.0,
         tmp_path / "t" / "keep0.5_dense")]
    assert capsys.readouterr().out == (f"      note: ignoring {broken} (KeyError: "
                                       f"'target_linear_density')\n")


def test_cycle_model_cycles_fall_with_pruning(tmp_path):
    """Per image, all layers, on the exported engine: fewer for the pruned model of the same
    shape, and the cycle model's sum over every layer's program."""
    dense = export(ExportRequest(model_dir=save_pruned_deit(
        tmp_path / "dense", removed_heads={}, removed_neurons={}, block_density=1.0),
        config="tiny", calibration_images=4))
    pruned = export(ExportRequest(model_dir=save_pruned_deit(
        tmp_path / "pruned", removed_heads={0: [1], 1: [0, 3]},
        removed_neurons={0: list(range(32))}, block_density=0.5),
        config="tiny", calibration_images=4))
    dense_cycles, pruned_cycles = cycle_model_cycles(dense), cycle_model_cycles(pruned)
    x = pruned.integer_model.embed(pruned.calibration[:1])[0]
    per_layer = [sum(entry.cycles for entry in model_cycles(pruned.config, case))
                 for case in image_cases(pruned.image, x)]
    assert len(per_layer) == 2 and pruned_cycles == sum(per_layer)
    assert 0 < pruned_cycles < dense_cycles


def test_engine_clocks_come_from_placed_synthesis_reports(tmp_path, monkeypatch):
    import flow.demo
    fixtures = Path(__file__).parents[1] / "hw" / "synth_fixtures"
    reports = {"digits_dense": fixtures / "layer_engine.placed.json",
               "digits_pruned": tmp_path / "absent.json"}
    monkeypatch.setattr(flow.demo, "report_path", lambda config, top: reports[config.name])
    tiny = load_config("tiny")
    configs = {"dense": tiny.replace(name="digits_dense"),
               "pruned": tiny.replace(name="digits_pruned")}
    clocks = engine_clocks(configs, {"dense": tmp_path / "dense", "pruned": tmp_path / "pruned"})
    assert clocks["dense"] == {"note": None, "clock": {
        "fmax_mhz": 50.0, "measured": True, "source": str(reports["digits_dense"]), "dsp": 100}}
    assert clocks["pruned"] == {"clock": None, "note": (
        f"no time at Fmax: no synthesis report of the layer engine ({tmp_path / 'absent.json'})"
        f"; measure it with `make synth CONFIG={tmp_path / 'pruned' / 'params.json'}`")}
