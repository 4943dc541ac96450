"""flow.api without Verilator: what each function accepts and refuses, and that its results are
the command-line tools' (the whole flow, replay included, runs in test_api_docs.py)."""

import json

import numpy as np
import pytest
import torch

from flow import api
from sim.replay import ReplayError
from sw.config import load_config
from sw.image.export import ExportError
from sw.image.loader import load_image
from sw.models import small_deit_config
from sw.data.calibration import load_recorded_calibration
from sw.data.source import DataSource
from sw.synthetic_deit import save_pruned_deit
from tests.sw.test_data_source import write_image_folder


@pytest.fixture(scope="module")
def pruned_model(tmp_path_factory):
    return save_pruned_deit(tmp_path_factory.mktemp("api") / "run",
                            removed_heads={0: [1]}, removed_neurons={1: list(range(16))},
                            image_size=16)


def test_build_model_from_sizes_or_a_transformers_config(tmp_path):
    torch.manual_seed(0)
    model = api.build_model(image_size=16, num_labels=5)
    assert (model.config.image_size, model.config.num_labels) == (16, 5)
    model.save_pretrained(tmp_path / "model")
    again = api.load_model(tmp_path / "model")
    pixels = torch.zeros(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(pixels).logits, again(pixels).logits)
    from_config = api.build_model(small_deit_config(image_size=16, num_layers=1))
    assert from_config.config.num_hidden_layers == 1 and not from_config.training
    from transformers import ViTConfig
    vit = api.build_model(ViTConfig(image_size=16, patch_size=4, hidden_size=32,
                                    num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, num_labels=3))
    assert type(vit).__name__ == "ViTForImageClassification"
    assert vit.config.num_labels == 3


def test_build_model_takes_a_config_or_sizes_not_both():
    with pytest.raises(ValueError, match=r"^build_model takes a config or sizes, not both "
                                         r"\(image_size, num_labels\)$"):
        api.build_model(small_deit_config(), image_size=16, num_labels=3)


def test_export_is_the_exporters_image_and_predicts_with_the_integer_model(pruned_model,
                                                                          tmp_path):
    exported = api.export(pruned_model, "tiny", tmp_path / "image", name="api_test",
                          calibration_images=8, verify=True)
    data = (tmp_path / "image" / "weights.bin").read_bytes()
    assert data == exported.state.data
    assert load_image(tmp_path / "image" / "weights.bin").config == exported.config
    assert exported.manifest == json.loads((tmp_path / "image" / "manifest.json").read_text())
    assert exported.verification["differences"] == 0
    images = exported.calibration[:3]
    assert exported.calibration.shape[0] == 8
    logits = exported.predict(images)
    state = exported.state
    assert np.array_equal(logits, state.integer_model.logits(
        images, token_pruning=state.token_pruning))
    assert logits.shape == (3, 10)


def test_export_calibrates_on_the_data_it_is_given(pruned_model, tmp_path):
    """``calibration=`` reaches the exporter (``--calibration DIR``): the image folder's images
    at the model's size, recorded in the manifest for the replay; left out, the digits the run
    recorded."""
    photos = write_image_folder(tmp_path / "photos", classes=10, per_class=5)
    exported = api.export(pruned_model, "tiny", tmp_path / "image", calibration=photos,
                          calibration_images=8)
    assert exported.state.calibration_data == DataSource.parse(photos)
    assert exported.calibration.shape == (8, 3, 16, 16)
    recorded = load_recorded_calibration(tmp_path / "image")
    assert torch.equal(recorded.images, exported.calibration)
    assert recorded.model_dir == pruned_model / "pruned"
    default = api.export(pruned_model, "tiny", calibration_images=4)
    assert default.state.calibration_data == DataSource.parse("digits")
    with pytest.raises(ExportError, match=f"^--calibration: {tmp_path / 'gone'}: image folder "
                                          f"not found"):
        api.export(pruned_model, "tiny", calibration=tmp_path / "gone")


def test_prune_passes_its_data_to_the_pruner(monkeypatch, tmp_path):
    """``api.prune(..., data=...)`` is ``prune.py --data``: the value reaches ``sw.prune.prune``
    (which the command-line tests run), the digits by default."""
    import sw.prune
    seen = []

    def pruner(pruning, training, **keywords):
        seen.append(keywords["data"])
        return type("Result", (), {"pruned": "p", "shrunk": "s"})(), {"accuracy": 0.5}
    monkeypatch.setattr(sw.prune, "prune", pruner)
    run = api.prune(tmp_path / "teacher", data=tmp_path / "photos")
    assert (run.model, run.shrunk, run.accuracy) == ("p", "s", 0.5)
    api.prune(tmp_path / "teacher")
    assert seen == [tmp_path / "photos", "digits"]


def test_export_refuses_bad_input_with_one_line(tmp_path):
    with pytest.raises(ExportError, match=f"^{tmp_path / 'absent'}: model directory not found$"):
        api.export(tmp_path / "absent", "tiny")


def test_an_export_kept_in_memory_cannot_be_replayed(pruned_model):
    exported = api.export(pruned_model, "tiny", calibration_images=8)
    assert exported.directory is None and exported.manifest is None
    with pytest.raises(ValueError, match=r"^replay needs an image written to a directory: "
                                         r"export\(\.\.\., out=DIR\)$"):
        api.replay(exported)


def test_generate_takes_an_export_a_directory_or_a_config(pruned_model, tmp_path):
    exported = api.export(pruned_model, "tiny", tmp_path / "image", calibration_images=8)
    from_export = api.generate(exported, tmp_path / "a", top="gelu")
    from_directory = api.generate(tmp_path / "image", tmp_path / "b", top="gelu")
    from_config = api.generate(load_config(tmp_path / "image" / "params.json"),
                               tmp_path / "c", top="gelu")
    texts = {design.verilog.read_text() for design in (from_export, from_directory, from_config)}
    assert len(texts) == 1
    assert from_export.verilog == tmp_path / "a" / "gelu.v"


def test_read_replay_report_of_an_image_never_replayed(tmp_path):
    with pytest.raises(ReplayError, match=f"^{tmp_path / 'replay' / 'replay.json'}: no such "
                                          f"file \\(replay the image first\\)$"):
        api.read_replay_report(tmp_path)


def test_read_pruning_report(tmp_path):
    (tmp_path / "pruning_report.json").write_text('{"accuracy": 0.5}')
    assert api.read_pruning_report(tmp_path) == {"accuracy": 0.5}
