"""A user's own model and data through the flow with no code of theirs: a config-only DeiT and a
ViT (random weights, ``save_pretrained``) and an image folder of as many classes, through
``prune.py --data`` and ``export_sparse.py --calibration`` (and for the DeiT ``sim/replay.py
--layers all`` on the RTL: every layer bit-exact and cycle-exact); the round trip of every
output folder through :func:`sw.models.load_model`; one-line errors when the data is not the
model's."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import DeiTConfig, DeiTForImageClassification, ViTConfig, \
    ViTForImageClassification

from sw.data.calibration import load_recorded_calibration
from sw.data.source import DataSource
from sw.export_sparse import main as export_main
from sw.image.export import ExportRequest, export
from sw.models import load_model
from sw.prune import DEFAULT_RECIPE, main as prune_main, prune, resolve_recipe
from sw.pruning.tokens import TokenPruningArgs
from sw.train_digits import evaluate
from sw.synthetic_deit import save_pruned_deit
from tests.sw.test_data_source import write_image_folder

REPO_ROOT = Path(__file__).resolve().parents[3]
CLASSES = 5
#: The tiny sizes: 16 px images in 4 px patches, hidden 64 in 4 heads, FFN 128, 2 layers (the
#: ``tiny`` hardware preset's encoder); ``num_labels`` is the folder's class count.
SIZES = dict(image_size=16, patch_size=4, hidden_size=64, num_hidden_layers=2,
             num_attention_heads=4, intermediate_size=128, num_labels=CLASSES)
MODELS = {"deit": (DeiTConfig, DeiTForImageClassification),
          "vit": (ViTConfig, ViTForImageClassification)}
#: Short runs whose schedules fit one step per epoch (24 train images, batches of 64).
PRUNE_FLAGS = ("--epochs", "2", "--final-finetune-epochs", "1", "--initial_warmup", "0",
               "--final_warmup", "1", "--final_threshold", "0.5",
               "--attention_block_rows", "8", "--attention_block_cols", "8",
               "--dense_block_rows", "8", "--dense_block_cols", "8", "--no-progress")


def save_user_model(directory: Path, architecture: str) -> Path:
    """A config-only (random weights) image classifier, as a user saves one."""
    config_class, model_class = MODELS[architecture]
    torch.manual_seed(0)
    model_class(config_class(**SIZES)).save_pretrained(directory)
    return directory


@pytest.fixture
def photos(tmp_path):
    return write_image_folder(tmp_path / "photos", classes=CLASSES, per_class=6)


def run_tool(script: str, *arguments, folder: str = "sw") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / folder / script),
                           *map(str, arguments)], capture_output=True, text=True, timeout=900)


#: The DeiT also replays on the RTL (a Verilator build of its engine: minutes the first time).
@pytest.mark.parametrize("architecture", [pytest.param("deit", marks=pytest.mark.sim), "vit"])
def test_a_users_model_and_folder_through_prune_and_export(architecture, photos, tmp_path):
    model = save_user_model(tmp_path / "model", architecture)
    run, image = tmp_path / "run", tmp_path / "image"
    pruned = run_tool("prune.py", "--teacher", model, "--data", photos, "--out", run,
                      "--keep-rate", "0.5", *PRUNE_FLAGS)
    assert pruned.returncode == 0, pruned.stderr
    assert "it/s" not in pruned.stderr       # --no-progress: transformers' bars too
    report = json.loads((run / "pruning_report.json").read_text())
    assert report["data"] == {"source": "image_folder", "path": str(photos), "val_fraction": 0.2,
                              "seed": 0, "image_size": 16,
                              "classes": [f"class_{index}" for index in range(CLASSES)],
                              "train_samples": 24, "val_samples": 6}
    exported = run_tool("export_sparse.py", "--model", run, "--config", "tiny", "--out", image,
                        "--calibration", photos, "--verify", "--no-progress")
    assert exported.returncode == 0, exported.stderr
    assert "final LayerNorm: 0 of" in exported.stdout
    layer_lines = [line for line in exported.stdout.splitlines() if " output: " in line]
    assert len(layer_lines) == 2 and all(": 0 of " in line for line in layer_lines), layer_lines
    manifest = json.loads((image / "manifest.json").read_text())
    assert manifest["model"]["architecture"] == architecture
    assert manifest["calibration"] == {"source": "image_folder", "path": str(photos),
                                       "val_fraction": 0.2, "seed": 0, "images": 24,
                                       "image_size": 16, "model": str(run / "pruned")}
    recorded = load_recorded_calibration(image)
    # Without --calibration the exporter takes the data recorded with the pruned model: the
    # same images, bit for bit, as the manifest's record gives back.
    state = export(ExportRequest(model_dir=run, config="tiny"))
    assert state.calibration_data == DataSource.parse(photos)
    assert torch.equal(state.calibration, recorded.images)
    assert recorded.model_dir == run / "pruned" and recorded.images.shape == (24, 3, 16, 16)
    if architecture == "deit":
        _replay_every_layer(image)


def _replay_every_layer(image: Path) -> None:
    """``sim/replay.py --layers all`` with nothing but the image: the inputs come from the
    calibration recorded in its manifest; every layer bit-exact and cycle-exact. Exporting
    again into the directory then removes the stale replay/."""
    replayed = run_tool("replay.py", "--image", image, "--layers", "all", "--inputs", "2",
                        folder="sim")
    assert replayed.returncode == 0, replayed.stderr
    assert "Loading weights" not in replayed.stderr      # no transformers bar
    document = json.loads((image / "replay" / "replay.json").read_text())
    assert document["exact"] and document["inputs"] == 2
    assert [layer["index"] for layer in document["layers"]] == [0, 1]
    for layer in document["layers"]:
        assert layer["bit_exact"] and layer["cycle_exact"], layer
        assert layer["cycles"] == layer["model_cycles"] > 0
    assert f"wrote {image / 'replay' / 'replay.json'}" in replayed.stdout
    again = run_tool("export_sparse.py", "--model", image.parent / "run", "--config", "tiny",
                     "--out", image, "--calibration-images", "4", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert sorted(path.name for path in image.iterdir()) == ["manifest.json", "params.json",
                                                             "weights.bin"]


def test_every_output_folder_reloads_to_the_function_its_report_measured(photos, tmp_path):
    """``load_model`` on ``pruned/``, ``shrunk/`` and ``filled/`` of a token-pruned run gives the
    in-memory models' logits exactly and the report's accuracies exactly; without the token
    gathers the function differs (so the comparison can fail)."""
    teacher = save_user_model(tmp_path / "model", "deit")
    args, options = resolve_recipe(
        json.loads(DEFAULT_RECIPE.read_text()),
        {"initial_warmup": 0, "final_warmup": 1, "final_threshold": 0.5,
         "attention_block_rows": 8, "attention_block_cols": 8},
        {"epochs": 2, "final_finetune_epochs": 1})
    out = tmp_path / "run"
    result, report = prune(args, options, teacher_dir=teacher, out=out, progress=False,
                           tokens=TokenPruningArgs(keep_rate=0.5, layers=(0, 1)), data=photos)
    split = DataSource.from_dict(report["data"], where="report").load_split(16)
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    measured = {"pruned": (result.pruned, report["accuracy"]),
                "shrunk": (result.shrunk, report["shrunk"]["accuracy"]),
                "filled": (result.filled, report["filled"]["accuracy"])}
    for folder, (in_memory, accuracy) in measured.items():
        reloaded = load_model(out / folder)
        every_token = load_model(out / folder, token_pruning=False)
        with torch.no_grad():
            expected = in_memory(pixel_values=images).logits
            assert torch.equal(reloaded(pixel_values=images).logits, expected), folder
            assert not torch.equal(every_token(pixel_values=images).logits, expected), folder
        assert evaluate(reloaded, split.val_images, split.val_labels) == accuracy, folder
    assert json.loads((out / "pruned" / "config.json").read_text())["token_pruning"] == {
        "keep_rate": 0.5, "layers": [0, 1], "fuse": True}
    # The exporter programs the same gathers from pruned/'s config as from the run's report.
    from_run = export(ExportRequest(model_dir=out, config="tiny", calibration_images=2))
    from_folder = export(ExportRequest(model_dir=out / "pruned", config="tiny",
                                       calibration=photos, calibration_images=2))
    assert from_folder.token_pruning == from_run.token_pruning
    assert all(gather is not None for gather in from_run.token_pruning)


def test_data_that_is_not_the_model_s_is_one_line_before_any_work(tmp_path, capsys):
    three = write_image_folder(tmp_path / "three", classes=3, per_class=4)
    model = save_user_model(tmp_path / "model", "vit")
    out = tmp_path / "out"
    capsys.readouterr()                                        # save_pretrained's bars
    with pytest.raises(SystemExit) as caught:
        prune_main(["--teacher", str(model), "--data", str(three), "--out", str(out)])
    assert caught.value.code == 2 and not out.exists()
    assert capsys.readouterr().err == (
        f"prune.py: error: {three}: 3 classes (class_0, class_1, class_2), but the model "
        f"{model} has 5 labels (config.json num_labels)\n")
    with pytest.raises(SystemExit) as caught:
        prune_main(["--teacher", str(tmp_path / "none"), "--data", str(three), "--out", str(out)])
    assert caught.value.code == 2
    assert capsys.readouterr().err == (
        f"prune.py: error: {tmp_path / 'none'}: no teacher model there (sw/train_digits.py only "
        f"makes the digits teacher); --data {three} needs a save_pretrained image classifier as "
        f"--teacher\n")
    with pytest.raises(SystemExit) as caught:
        prune_main(["--teacher", str(model), "--data", str(tmp_path / "gone"), "--out", str(out)])
    assert capsys.readouterr().err == (
        f"prune.py: error: {tmp_path / 'gone'}: image folder not found (expected 'digits' or a "
        f"folder with one sub-folder per class)\n")


def test_calibration_that_is_not_the_model_s_is_one_line(tmp_path, capsys):
    three = write_image_folder(tmp_path / "three", classes=3, per_class=4)
    run = save_pruned_deit(tmp_path / "run", removed_heads={}, removed_neurons={},
                           hidden_size=32, num_heads=2, intermediate_size=64, num_layers=1,
                           image_size=8)                        # 10 labels, digits recorded
    plain = save_pruned_deit(tmp_path / "plain", removed_heads={}, removed_neurons={},
                             hidden_size=32, num_heads=2, intermediate_size=64, num_layers=1,
                             image_size=8, report=False)
    cases = [
        (["--model", run, "--calibration", three],
         f"{three}: 3 classes (class_0, class_1, class_2), but the model {run / 'pruned'} has 10 "
         f"labels (config.json num_labels)"),
        (["--model", run, "--calibration", tmp_path / "gone"],
         f"--calibration: {tmp_path / 'gone'}: image folder not found (expected 'digits' or a "
         f"folder with one sub-folder per class)"),
        (["--model", plain],
         f"{plain}: no data is recorded with this model (no pruning_report.json data, no "
         f"training.json of sw/train_digits.py); pass --calibration DIR|digits"),
    ]
    moved = save_pruned_deit(tmp_path / "moved", removed_heads={}, removed_neurons={},
                             hidden_size=32, num_heads=2, intermediate_size=64, num_layers=1,
                             image_size=8)
    report = json.loads((moved / "pruning_report.json").read_text())
    report["data"] = {"source": "image_folder", "path": str(tmp_path / "gone")}
    (moved / "pruning_report.json").write_text(json.dumps(report))
    cases.append((["--model", moved],
                  f"pruning_report.json: data.path: the image folder {tmp_path / 'gone'} recorded "
                  f"with the model no longer exists; pass --calibration DIR|digits"))
    gathers = save_pruned_deit(tmp_path / "gathers", removed_heads={}, removed_neurons={},
                               hidden_size=32, num_heads=2, intermediate_size=64, num_layers=1,
                               image_size=8, report=False)
    config = json.loads((gathers / "config.json").read_text())
    config["token_pruning"] = {"keep_rate": 0.5, "layers": [1], "fuse": True}
    (gathers / "config.json").write_text(json.dumps(config))
    cases.append((["--model", gathers, "--calibration", "digits"],
                  f"{gathers / 'config.json'}: token_pruning: layers [1] reach beyond the "
                  f"model's 1 layers"))
    capsys.readouterr()                                        # save_pretrained's bars
    for arguments, message in cases:
        out = tmp_path / "image"
        status = export_main([*map(str, arguments), "--config", "tiny", "--out", str(out),
                              "--no-progress"])
        assert (status, capsys.readouterr().err) == (2, f"error: {message}\n")
        assert not out.exists()
    # a report from before prune.py --data meant the digits: used, and said so
    del report["data"]
    (moved / "pruning_report.json").write_text(json.dumps(report))
    state = export(ExportRequest(model_dir=moved, config="tiny", calibration_images=2))
    assert state.calibration_data == DataSource.parse("digits")
    assert state.notes == ["pruning_report.json records no data (it predates prune.py --data, "
                           "which pruned on the digits): calibrating on the digits"]
    # the plain model calibrates on the digits when asked to
    assert export_main(["--model", str(plain), "--config", "tiny", "--out", str(tmp_path / "ok"),
                        "--calibration", "digits", "--calibration-images", "4"]) == 0
