"""``python sim/replay.py``: an exported tiny image replayed on the layer engine's RTL (bit-exact,
cycles equal to the cycle model, replay.json), and every kind of bad input refused with one line
and status 2 before anything is written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.layer_replay import image_cases, model_cycles
from sim.replay import (RESULT_FILE, WAVES_FILE, LayerResult, ReplayError, ReplayReport,
                        encoder_inputs, layer_results, main, parse_layers)
from sw.image.export import ExportRequest, export, write
from sw.image.loader import load_image
from sw.synthetic_deit import save_pruned_deit

REPO = Path(__file__).resolve().parents[2]
#: A fixed config name: the engine's build is cached across sessions by its Verilog.
NAME = "replay_tiny"


def _pruned_model(directory: Path, seed: int = 0) -> Path:
    """A 16 px DeiT (18 tokens, hidden 64, 4 heads, 2 layers) with heads, neurons and blocks
    removed and token pruning at keep rate 0.7 in both layers."""
    return save_pruned_deit(directory, removed_heads={0: [1], 1: [0, 3]},
                            removed_neurons={0: list(range(37)), 1: list(range(0, 80, 2))},
                            block_density=0.5, image_size=16, seed=seed,
                            tokens={"keep_rate": 0.7, "layers": [0, 1], "fuse": True,
                                    "warmup": True, "protected": 2})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``(image directory, model directory)`` of the tiny pruned DeiT exported for ``tiny``."""
    root = tmp_path_factory.mktemp("replay")
    model = _pruned_model(root / "run")
    state = export(ExportRequest(model_dir=model, config="tiny", name=NAME))
    write(state, root / "image")
    return root / "image", model


def _copy(image: Path, to: Path) -> Path:
    to.mkdir()
    for name in ("weights.bin", "params.json", "manifest.json"):
        (to / name).write_bytes((image / name).read_bytes())
    return to


def _refused(capsys, argv, message):
    """``main(argv)`` exits 2 with exactly ``sim/replay.py: error: <message>``."""
    assert main([str(arg) for arg in argv]) == 2
    assert capsys.readouterr().err == f"sim/replay.py: error: {message}\n"


# ------------------------------------------------------------------------------------------------
# Bad input: one line, status 2, nothing written (no Verilator needed)
# ------------------------------------------------------------------------------------------------

def test_missing_image_directory(tmp_path, capsys):
    _refused(capsys, ["--image", tmp_path / "absent"],
             f"{tmp_path / 'absent'}: image directory not found")


def test_directory_without_an_image(tmp_path, capsys):
    (tmp_path / "params.json").write_text("{}")
    _refused(capsys, ["--image", tmp_path],
             f"{tmp_path}: no weights.bin (not an export_sparse.py output directory)")


def test_corrupt_image(exported, tmp_path, capsys):
    image = _copy(exported[0], tmp_path / "image")
    (image / "weights.bin").write_bytes(b"not an image")
    assert main(["--image", str(image)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sim/replay.py: error: {image / 'weights.bin'}: ")
    assert err.count("\n") == 1
    assert not (image / "replay").exists()


def test_params_json_of_another_config(exported, tmp_path, capsys):
    image = _copy(exported[0], tmp_path / "image")
    params = json.loads((image / "params.json").read_text())
    params["name"] = "other"
    (image / "params.json").write_text(json.dumps(params))
    _refused(capsys, ["--image", image],
             f"{image / 'params.json'}: field 'name' disagrees with the image beside it "
             f"({image / 'weights.bin'}): expected '{NAME}', found 'other'; re-export instead "
             f"of editing params.json")


@pytest.mark.parametrize("layers, message", [
    ("0,x", "--layers: '0,x' is not 'all' or layer indices separated by commas (e.g. 0,1)"),
    ("", "--layers: '' is not 'all' or layer indices separated by commas (e.g. 0,1)"),
    ("-1", "--layers: '-1' is not 'all' or layer indices separated by commas (e.g. 0,1)"),
    ("0,2", "--layers: layer 2 is out of range; the image has 2 layers (0 to 1)"),
])
def test_bad_layer_lists(exported, capsys, layers, message):
    image, _ = exported
    _refused(capsys, ["--image", image, f"--layers={layers}"], message)
    assert not (image / "replay").exists()


def test_layer_lists():
    assert parse_layers("all", 3) == (0, 1, 2)
    assert parse_layers("2, 0,2", 3) == (0, 2)
    with pytest.raises(ReplayError, match="layer 3 is out of range; the image has 3 layers"):
        parse_layers("3", 3)


def test_inputs_must_be_positive(exported, capsys):
    image, _ = exported
    _refused(capsys, ["--image", image, "--inputs", "0"],
             "--inputs must be a positive integer, not 0")


def test_more_inputs_than_calibration_images(exported, capsys):
    image, _ = exported
    _refused(capsys, ["--image", image, "--inputs", "65"],
             "--inputs 65: the image was calibrated on 64 images; at most that many inputs")


def test_an_image_without_a_calibration_record(exported, tmp_path, capsys):
    image = _copy(exported[0], tmp_path / "image")
    manifest = json.loads((image / "manifest.json").read_text())
    del manifest["calibration"]
    (image / "manifest.json").write_text(json.dumps(manifest))
    _refused(capsys, ["--image", image],
             f"{image / 'manifest.json'}: calibration: missing (exported before the manifest "
             f"recorded its calibration data; export it again)")
    assert not (image / "replay").exists()


def test_the_inputs_are_the_exporters_embedding_of_the_recorded_calibration(exported):
    """Without --model, and with it (the run directory or its pruned/), the inputs are what the
    exporter's integer model computed from the images it calibrated on, bit for bit."""
    image_dir, model = exported
    image = load_image(image_dir / "weights.bin")
    state = export(ExportRequest(model_dir=model, config="tiny", name=NAME))
    expected = state.integer_model.embed(state.calibration[:3])
    assert expected.shape == (3, 18, 64) and expected.any()
    for override in (None, model, model / "pruned"):
        x = encoder_inputs(image_dir, image, 3, model_dir=override)
        assert x.dtype == expected.dtype and np.array_equal(x, expected), override


def test_missing_model_directory(exported, tmp_path, capsys):
    _refused(capsys, ["--image", exported[0], "--model", tmp_path / "absent"],
             f"--model: {tmp_path / 'absent'}: model directory not found")


def test_a_recorded_model_that_moved(exported, tmp_path, capsys):
    image = _copy(exported[0], tmp_path / "image")
    manifest = json.loads((image / "manifest.json").read_text())
    manifest["calibration"]["model"] = str(tmp_path / "moved")
    (image / "manifest.json").write_text(json.dumps(manifest))
    _refused(capsys, ["--image", image],
             f"the model recorded in manifest.json: {tmp_path / 'moved'}: model directory not "
             f"found; pass --model with where it is now")
    assert not (image / "replay").exists()


def test_a_model_of_another_shape(exported, tmp_path, capsys):
    """--model is not re-exported (only its patch embedding is used), but one whose embedding
    does not fit the image is refused."""
    image, _ = exported
    other = save_pruned_deit(tmp_path / "other", removed_heads={}, removed_neurons={},
                             image_size=16, hidden_size=32, num_heads=2, intermediate_size=64)
    _refused(capsys, ["--image", image, "--model", other],
             f"--model: {other / 'pruned'} embeds an image into 18 tokens x 32, the image's "
             f"layer 0 takes 18 x 64: not the model it was exported from")
    assert not (image / "replay").exists()


def test_a_replay_directory_with_the_users_files_is_not_replaced(exported, tmp_path, capsys):
    image = _copy(exported[0], tmp_path / "image")
    (image / "replay").mkdir()
    (image / "replay" / "notes.txt").write_text("mine")
    _refused(capsys, ["--image", image],
             f"{image / 'replay'}: not empty and not an earlier output of this tool (no "
             f"{RESULT_FILE}); refusing to replace it")
    assert (image / "replay" / "notes.txt").read_text() == "mine"


def test_bad_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--image", "x", "--inputs", "many"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == ("sim/replay.py: error: argument --inputs: invalid int "
                                       "value: 'many' (see --help)\n")


def test_runs_as_a_script_path(tmp_path):
    """``python sim/replay.py`` (not only ``-m sim.replay``) finds the packages."""
    done = subprocess.run([sys.executable, str(REPO / "sim" / "replay.py"), "--image",
                           str(tmp_path / "absent")], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 2
    assert done.stderr == f"sim/replay.py: error: {tmp_path / 'absent'}: image directory not " \
                          f"found\n"


# ------------------------------------------------------------------------------------------------
# Results folded per layer
# ------------------------------------------------------------------------------------------------

def test_a_cycle_mismatch_makes_the_layer_not_exact(exported):
    image_dir, _ = exported
    image = load_image(image_dir / "weights.bin")
    case = image_cases(image, [[0] * 64] * 18)[0]
    instruction = {"opcode": "SOFTMAX", "unit": "softmax", "macs": 0, "rows": 18,
                   "cycles": 10, "model_cycles": 10}
    good = {"cycles": 100, "model_cycles": 100, "bit_exact": True,
            "instructions": [instruction]}
    late = {**good, "instructions": [{**instruction, "cycles": 11}]}
    layer, = layer_results(image, image.config, [(0, case), (0, case)], [good, late])
    assert (layer.inputs, layer.bit_exact, layer.cycle_exact) == (2, True, False)
    assert not _report_of(layer).exact
    assert _report_of(LayerResult(**{**layer.to_dict(), "cycle_exact": True})).exact
    wrong = LayerResult(**{**layer.to_dict(), "cycle_exact": True, "bit_exact": False})
    assert not _report_of(wrong).exact
    assert _report_of(wrong).table().splitlines()[1].split()[4] == "NO"


def _report_of(layer: LayerResult) -> ReplayReport:
    return ReplayReport(image="i", config="c", processing_elements=16, inputs=layer.inputs,
                        layers=(layer,), build_seconds=0, sim_seconds=0)


# ------------------------------------------------------------------------------------------------
# On the RTL
# ------------------------------------------------------------------------------------------------

@pytest.mark.sim
def test_replay_every_layer_of_a_tiny_image(exported, capsys):
    image_dir, _ = exported
    assert main(["--image", str(image_dir), "--layers", "all",
                 "--inputs", "2"]) == 0
    out = capsys.readouterr().out
    document = json.loads((image_dir / "replay" / RESULT_FILE).read_text())
    layers = document["layers"]
    assert [layer["index"] for layer in layers] == [0, 1]
    # the cycle model of each layer as exported, computed here without the testbench
    image = load_image(image_dir / "weights.bin")
    cases = image_cases(image, [[0] * 64] * 18)
    for layer, case in zip(layers, cases):
        assert layer["bit_exact"] and layer["cycle_exact"] and layer["inputs"] == 2
        assert layer["cycles"] == layer["model_cycles"] == sum(
            entry.cycles for entry in model_cycles(image.config, case))
        assert layer["utilization"] == layer["nonzero_macs"] / (16 * layer["cycles"])
        assert 0 < layer["utilization"] < 1
    assert [(layer["tokens"], layer["token_keep"]) for layer in layers] == [(18, 15), (15, 13)]
    assert document["exact"] and document["inputs"] == 2 and document["waves"] is None
    assert document["log"] is None                 # exact: the work files were removed
    assert sorted(path.name for path in (image_dir / "replay").iterdir()) == [RESULT_FILE]
    table = out.splitlines()
    assert table[-5].split() == ["layer", "tokens", "cycles", "model", "cycles", "bit-exact",
                                 "utilization"]
    assert table[-4].split()[:5] == ["0", "18->15", f"{layers[0]['cycles']:,}",
                                     f"{layers[0]['cycles']:,}", "yes"]
    assert table[-1].startswith(f"wrote {image_dir / 'replay' / RESULT_FILE} (")
    # a second replay replaces the first (its own output), here with one layer
    assert main(["--image", str(image_dir), "--layers", "1"]) == 0
    again = json.loads((image_dir / "replay" / RESULT_FILE).read_text())
    assert [layer["index"] for layer in again["layers"]] == [1]
    assert again["layers"][0]["cycles"] == layers[1]["cycles"]


@pytest.mark.sim
@pytest.mark.slow
def test_waves(exported, tmp_path, capsys):
    """``--waves``: a traced build (minutes) writes a VCD of the run beside replay.json."""
    image = _copy(exported[0], tmp_path / "image")
    assert main(["--image", str(image), "--layers", "1",
                 "--waves"]) == 0
    trace = image / "replay" / WAVES_FILE
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        f"wrote {image / 'replay' / RESULT_FILE} and {trace} (")
    with open(trace) as handle:
        head = handle.read(4096)
    assert head.startswith("$version Generated by VerilatedVcd")
    assert "$var wire 1" in head and " clk $end" in head
    assert json.loads((image / "replay" / RESULT_FILE).read_text())["waves"] == WAVES_FILE


def test_waves_need_a_traced_build(tmp_path):
    from sim.harness import BuiltDesign, run_testbench
    from sw.config import load_config
    design = BuiltDesign(top="layer_engine", config=load_config("tiny"), directory=tmp_path,
                         config_path=tmp_path / "config.json", build_seconds=0.0)
    with pytest.raises(ValueError, match=f"^{tmp_path} was built without tracing; build it with "
                                         f"waves=True to record waves$"):
        run_testbench(design, "sim.tb_layer_engine", tmp_path / "run", waves=True)
    assert not (tmp_path / "run").exists()


def test_a_failed_build_is_one_line_and_status_1(exported, tmp_path, monkeypatch, capsys):
    import sim.harness

    def failing_build(*args, **kwargs):
        raise RuntimeError("Command failed with return code: 2")
    monkeypatch.setattr(sim.harness, "build", failing_build)
    image = _copy(exported[0], tmp_path / "image")
    assert main(["--image", str(image)]) == 1
    assert capsys.readouterr().err == (
        f"sim/replay.py: error: the Verilator build of '{NAME}' failed (Command failed with "
        f"return code: 2); see build.log in build/sim/layer_engine-{NAME}*/\n")
    assert not (image / "replay").exists()


def test_a_layer_that_is_not_exact_is_status_1(exported, tmp_path, monkeypatch, capsys):
    import sim.replay
    layer = LayerResult(index=1, tokens=15, token_keep=13, inputs=1, bit_exact=False,
                        cycle_exact=True, cycles=10, model_cycles=10, nonzero_macs=16,
                        utilization=0.1)
    report = ReplayReport(image="i", config="c", processing_elements=16, inputs=1,
                          layers=(layer,), build_seconds=0, sim_seconds=0,
                          directory=tmp_path / "replay", log=tmp_path / "work" / "sim.log")
    monkeypatch.setattr(sim.replay, "replay_image", lambda *args, **kwargs: report)
    assert main(["--image", str(exported[0])]) == 1
    assert capsys.readouterr().err == (f"sim/replay.py: error: layer 1 not bit-exact or not "
                                       f"cycle-exact; see {tmp_path / 'work' / 'sim.log'}\n")
    assert ReplayReport.from_dict(report.to_dict(), tmp_path / "replay") == report
