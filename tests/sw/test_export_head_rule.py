"""The exporter and the surgery decide head removal by one rule (issue 14 item 16)."""

import copy
import json

import torch

from sw.image.export import ExportRequest, export
from sw.models import load_model
from sw.pruning.structures import linear_modules
from sw.pruning.surgery import apply_surgery
from sw.synthetic_deit import save_pruned_deit

SMALL = dict(hidden_size=32, num_heads=2, intermediate_size=64, num_layers=2, image_size=8)
HEAD_DIM = 16


def logits(model, images):
    with torch.no_grad():
        return model(pixel_values=images).logits


def test_exporter_and_surgery_agree_and_fold_the_v_bias(tmp_path):
    run = save_pruned_deit(tmp_path / "run", removed_heads={}, removed_neurons={},
                           block_density=0.75, **SMALL)
    model = load_model(run / "pruned")
    with torch.no_grad():
        layer0, layer1 = linear_modules(model)[0], linear_modules(model)[1]
        layer0["v"][1].weight[HEAD_DIM:] = 0                 # head 1: a constant context
        layer0["v"][1].bias[HEAD_DIM:] = torch.linspace(-2, 2, HEAD_DIM)
        layer1["o"][1].weight[:, :HEAD_DIM] = 0              # head 0: reaches nothing
    model.save_pretrained(run / "pruned")
    shrunk = copy.deepcopy(model)
    surgery = apply_surgery(shrunk, keep_masks=False)
    report = json.loads((run / "pruning_report.json").read_text())
    report["surgery"] = surgery.to_dict()
    (run / "pruning_report.json").write_text(json.dumps(report))
    assert [layer.kept_heads for layer in surgery.layers] == [[0], [1]]

    state = export(ExportRequest(model_dir=run, config="tiny", calibration_images=2))

    assert [list(heads) for heads in state.kept_heads] == [[0], [1]]
    assert [layer.kept_heads for layer in state.image.layers] == [(0,), (1,)]
    assert state.notes == []
    images = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    expected = logits(model, images)
    # The exporter's float model had head 1's constant folded into O's bias: same function,
    # and the same as the shrunk model's.
    assert not state.model.get_submodule(
        linear_modules(state.model)[0]["v"][0]).bias[HEAD_DIM:].any()
    assert torch.allclose(logits(state.model, images), expected, atol=1e-5)
    assert torch.allclose(logits(shrunk, images), expected, atol=1e-5)


def test_exporter_keeps_a_head_the_report_removes_against_the_rule(tmp_path):
    run = save_pruned_deit(tmp_path / "run", removed_heads={}, removed_neurons={},
                           block_density=1.0, **SMALL)
    model = load_model(run / "pruned")
    with torch.no_grad():   # head 0 of layer 0: Q and K empty, V and O live (uniform attention)
        for role in ("q", "k"):
            module = linear_modules(model)[0][role][1]
            module.weight[:HEAD_DIM] = 0
            module.bias[:HEAD_DIM] = 0
    model.save_pretrained(run / "pruned")
    report = json.loads((run / "pruning_report.json").read_text())
    report["surgery"]["layers"][0]["kept_heads"] = [1]
    (run / "pruning_report.json").write_text(json.dumps(report))
    state = export(ExportRequest(model_dir=run, config="tiny", calibration_images=2))
    assert state.kept_heads[0] == (0, 1)
    assert state.notes == ["layer 0: heads [0] kept although the report removes them: their V "
                           "and O weights are not zero"]
