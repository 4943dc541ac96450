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
from hw.synth.throughput import EngineClock
from sim.replay import (RESULT_FILE, WAVES_FILE, LayerResult, ReplayError, ReplayReport,
                        dense_layer_macs, encoder_inputs, layer_results, load_replay_image, main,
                        parse_layers, replay_clock)
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
    assert table[-7].split() == ["layer", "tokens", "cycles", "model", "cycles", "bit-exact",
                                 "utilization"]
    assert table[-6].split()[:5] == ["0", "18->15", f"{layers[0]['cycles']:,}",
                                     f"{layers[0]['cycles']:,}", "yes"]
    assert table[-4].split()[:2] == ["image", f"{sum(l['cycles'] for l in layers):,}"]
    # every layer chosen: the encoder ran chained on chip, layer 1 on layer 0's output
    assert document["chained"] and table[-3].startswith("layers chained on chip: only layer 0")
    # no synthesis report of this config's engine here: no time, one line naming the command
    assert table[-2].startswith("no time at Fmax: no synthesis report of the layer engine (")
    assert table[-2].endswith(f"; measure it with `make synth CONFIG={image_dir}/params.json` "
                              f"(or give one: --fmax-mhz MHZ)")
    assert document["clock"] is None and document["per_image"] is None
    assert document["clock_note"] == table[-2]
    assert all(layer["at_fmax"] is None for layer in layers)
    assert document["image_layers"] == 2 and document["dense_layer_macs"] == 18 * (
        4 * 64 * 64 + 2 * 64 * 128) + 2 * 4 * 18 * 18 * 16
    assert table[-1].startswith(f"wrote {image_dir / 'replay' / RESULT_FILE} (")
    # a second replay replaces the first (its own output), here with one layer
    assert main(["--image", str(image_dir), "--layers", "1"]) == 0
    again = json.loads((image_dir / "replay" / RESULT_FILE).read_text())
    assert [layer["index"] for layer in again["layers"]] == [1] and not again["chained"]
    assert again["layers"][0]["cycles"] == layers[1]["cycles"]


@pytest.mark.sim
def test_whole_model_image_in_logits_out(exported, tmp_path, capsys):
    """``--whole``: per input the embedding program, both layers and the head program chained
    on chip; every program exact, each input's int8 logits equal to the whole integer
    model's, its class printed. It needs the image alone: the model it was exported from is
    gone (the stages are in the image since format version 3)."""
    import shutil
    model = tmp_path / "model"
    shutil.copytree(exported[1], model)
    state = export(ExportRequest(model_dir=model, config="tiny", name=NAME))
    write(state, tmp_path / "image")
    assert (tmp_path / "image" / "weights.bin").read_bytes() == \
        (exported[0] / "weights.bin").read_bytes()
    shutil.rmtree(model)
    image = tmp_path / "image"
    assert main(["--image", str(image), "--whole", "--inputs", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    document = json.loads((image / "replay" / RESULT_FILE).read_text())
    assert document["whole"] and document["exact"]
    assert [layer["index"] for layer in document["layers"]] == [0, 1]
    assert all(layer["inputs"] == 2 and layer["bit_exact"] and layer["cycle_exact"]
               for layer in document["layers"])
    assert [stage["name"] for stage in document["stages"]] == ["embedding", "head"]
    assert all(stage["bit_exact"] and stage["cycle_exact"] for stage in document["stages"])
    images = document["images"]
    assert [entry["input"] for entry in images] == [0, 1]
    for entry in images:
        assert entry["logits_equal"] and entry["predicted"] == entry["integer_predicted"]
        assert entry["cycles"] == entry["model_cycles"] == sum(
            layer["cycles"] for layer in document["layers"]) + sum(
            stage["cycles"] for stage in document["stages"])
    # ... layer rows, the stages' rows, the image's, then the whole model's lines, the clock's
    assert out[-8].split()[:2] == ["embedding", f"{document['stages'][0]['cycles']:,}"]
    assert out[-7].split()[0] == "head" and out[-6].split()[0] == "image"
    assert out[-5].startswith("whole model on chip: the host loaded each image's int8 patch")
    assert out[-4].startswith(f"input 0: class {images[0]['predicted']} (integer model: ")
    assert out[-3].startswith("input 1: class ")
    # a layer list with --whole is refused, nothing written
    assert main(["--image", str(image), "--whole", "--layers", "1"]) == 2
    assert capsys.readouterr().err == ("sim/replay.py: error: --whole runs every layer: leave "
                                       "--layers out (or give 'all')\n")


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


# ------------------------------------------------------------------------------------------------
# Time at Fmax (no Verilator needed)
# ------------------------------------------------------------------------------------------------

SYNTH_FIXTURES = REPO / "tests" / "hw" / "synth_fixtures"


def _timed_report(clock, layers=2, image_layers=2) -> ReplayReport:
    results = tuple(LayerResult(index=index, tokens=18, token_keep=18, inputs=1,
                                bit_exact=True, cycle_exact=True, cycles=100_000,
                                model_cycles=100_000, nonzero_macs=800_000, utilization=0.5)
                    for index in range(layers))
    return ReplayReport(image="i", config="c", processing_elements=16, inputs=1,
                        layers=results, build_seconds=0, sim_seconds=0,
                        image_layers=image_layers, dense_layer_macs=2_500_000, clock=clock,
                        clock_note=None if clock else "no time at Fmax: (the note)")


def test_time_at_a_measured_fmax():
    clock = EngineClock(50.0, measured=True, source="build/c/synth/layer_engine.json", dsp=100)
    report = _timed_report(clock)
    document = report.to_dict()
    # 100,000 cycles at 50 MHz: 2,000 us, 500 layers/s; 2 x 2.5e6 dense MACs in 2 ms: 2.5 GOP/s
    assert document["layers"][0]["at_fmax"] == {
        "fmax_mhz": 50.0, "latency_us": 2000.0, "per_second": 500.0, "effective_gops": 2.5,
        "gops_per_dsp": 0.025}
    assert document["per_image"] == {
        "fmax_mhz": 50.0, "latency_us": 4000.0, "per_second": 250.0, "effective_gops": 2.5,
        "gops_per_dsp": 0.025}
    assert document["clock"] == clock.to_dict() and document["clock_note"] is None
    lines = report.table().splitlines()
    assert lines[0].split()[-2:] == ["us", "GOP/s"]
    assert lines[1].split()[-2:] == ["2,000.000", "2.500"]
    assert lines[3].split()[0] == "image" and lines[3].split()[-2:] == ["4,000.000", "2.500"]
    assert lines[4] == ("clock: 50 MHz, measured: the placed and routed layer engine "
                        "(build/c/synth/layer_engine.json)")
    assert lines[5] == ("per image: 4,000.000 us, 250.00 images/s, 2.500 GOP/s effective "
                        "(dense-equivalent: 10,000,000 operations of the unpruned model), "
                        "0.0250 GOP/s per MULT18X18D (100)")
    assert ReplayReport.from_dict(document) == report


def test_some_layers_have_time_but_no_per_image_figures():
    clock = EngineClock(100.0, measured=False, source="--fmax-mhz")
    report = _timed_report(clock, layers=1)
    assert report.per_image() is None and report.to_dict()["per_image"] is None
    lines = report.table().splitlines()
    assert lines[2].split()[0] == "all" and lines[2].split()[-2:] == ["1,000.000", "5.000"]
    assert lines[3:] == ["clock: 100 MHz, given (--fmax-mhz), not measured"]


def test_without_a_clock_the_table_says_so():
    report = _timed_report(None)
    lines = report.table().splitlines()
    assert lines[0].split()[-1] == "utilization" and lines[-1] == "no time at Fmax: (the note)"
    assert ReplayReport.from_dict(report.to_dict()) == report


def test_the_clock_of_an_image_comes_from_its_engines_report(exported, monkeypatch):
    import hw.synth
    image_dir, _ = exported
    _, config = load_replay_image(image_dir)
    placed = SYNTH_FIXTURES / "layer_engine.placed.json"
    monkeypatch.setattr(hw.synth, "report_path", lambda config, top: placed)
    assert replay_clock(image_dir, config) == (
        EngineClock(50.0, measured=True, source=str(placed), dsp=100), None)
    assert replay_clock(image_dir, config, 80) == (
        EngineClock(80.0, measured=False, source="--fmax-mhz", dsp=100), None)
    overflow = SYNTH_FIXTURES / "layer_engine.overflow.json"
    monkeypatch.setattr(hw.synth, "report_path", lambda config, top: overflow)
    assert replay_clock(image_dir, config) == (None, (
        f"no time at Fmax: {overflow}: the layer engine does not fit LFE5U-85F speed 6 "
        f"(MULT18X18D 164 > 156), so it was not placed and routed; measure it with "
        f"`make synth CONFIG={image_dir}/params.json` (or give one: --fmax-mhz MHZ)"))


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf"])
def test_a_bad_fmax_is_refused_before_anything_is_written(exported, tmp_path, capsys, value):
    image = _copy(exported[0], tmp_path / "image")
    _refused(capsys, ["--image", image, f"--fmax-mhz={value}"],
             f"--fmax-mhz: Fmax must be a positive number of MHz, not {float(value)!r}")
    assert not (image / "replay").exists()


def test_dense_layer_macs_are_the_unpruned_layers(exported):
    image_dir, _ = exported
    image, config = load_replay_image(image_dir)
    # the image keeps 3 of 4 heads and fewer neurons; the unpruned layer: 18 tokens, hidden 64,
    # FFN 128, 4 heads of 16: the six linears plus QK^T and P.V of every head
    assert config.model.ffn_size < 128
    assert dense_layer_macs(image, config) == 18 * (4 * 64 * 64 + 2 * 64 * 128) \
        + 2 * 4 * 18 * 18 * 16


def test_no_dense_macs_for_a_model_the_blocks_do_not_fit(exported):
    import dataclasses
    image_dir, _ = exported
    image, config = load_replay_image(image_dir)
    odd = dataclasses.replace(image, model=dataclasses.replace(image.model, ffn_size=130))
    assert dense_layer_macs(odd, config) is None
    # then the table has microseconds but no GOP/s
    clock = EngineClock(50.0, measured=True, source="r.json", dsp=100)
    report = dataclasses.replace(_timed_report(clock), dense_layer_macs=None)
    lines = report.table().splitlines()
    assert lines[1].split()[-2:] == ["2,000.000", "-"]
    assert lines[-1] == "clock: 50 MHz, measured: the placed and routed layer engine (r.json)"
    assert "effective_gops" not in report.per_image()
