import copy
import json

import pytest
import torch
from torch.nn.utils import parametrize

from sw.pruning.structures import linear_modules, structure_for
from sw.pruning.surgery import (
    apply_surgery,
    fill,
    fold_head_constants,
    prune_ffn,
    prune_heads,
    removable_ffn,
    removable_heads,
)
from sw.pruning.tokens import TokenPruningArgs, patch_token_pruning
from tests.sw.pruning.test_structures import (
    ARCHITECTURES,
    HEADS,
    HIDDEN,
    INTERMEDIATE,
    tiny_inputs,
    tiny_model,
)

HEAD_DIM = HIDDEN // HEADS


def full_masks(model) -> dict:
    return {f"{name}.{kind}": torch.ones_like(getattr(module, kind), dtype=torch.bool)
            for layer in linear_modules(model).values()
            for name, module in layer.values() for kind in ("weight", "bias")}


def kill_head(model, masks, layer, head, roles=("q", "k", "v", "o")):
    rows = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
    for role in roles:
        name, _ = linear_modules(model)[layer][role]
        if role == "o":
            masks[f"{name}.weight"][:, rows] = False
        else:
            masks[f"{name}.weight"][rows] = False
            masks[f"{name}.bias"][rows] = False


def masked_copy(model, masks):
    """The reference: same model with masked parameters zeroed, no surgery."""
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            if name in masks:
                parameter.mul_(masks[name])
    return reference


def outputs(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        result = model(**inputs, output_hidden_states=True)
    return torch.cat([result.hidden_states[-1].flatten(), result.logits.flatten()])


def parameter_count(model) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_dead_heads_removed_without_changing_outputs(architecture):
    model = tiny_model(architecture)
    inputs = tiny_inputs(architecture)
    masks = full_masks(model)
    kill_head(model, masks, 0, 1)
    kill_head(model, masks, 0, 3)
    kill_head(model, masks, 1, 0)
    # In-head block sparsity in a kept head: stays masked, not filled.
    q_name, _ = linear_modules(model)[0]["q"]
    masks[f"{q_name}.weight"][0:4, 0:8] = False
    expected = outputs(masked_copy(model, masks), inputs)
    before = parameter_count(model)

    report = apply_surgery(model, masks)

    assert torch.allclose(outputs(model, inputs), expected, atol=1e-6)
    assert [layer.kept_heads for layer in report.layers] == [[0, 2], [1, 2, 3]]
    assert [layer.removed_heads for layer in report.layers] == [[1, 3], [0]]
    assert report.parameters_before == before
    assert report.parameters_after == parameter_count(model) < before
    removed_per_head = 4 * (HIDDEN * HEAD_DIM) + 3 * HEAD_DIM
    assert before - report.parameters_after == 3 * removed_per_head

    layer0 = linear_modules(model)[0]
    assert tuple(layer0["q"][1].weight.shape) == (2 * HEAD_DIM, HIDDEN)
    assert tuple(layer0["v"][1].bias.shape) == (2 * HEAD_DIM,)
    assert tuple(layer0["o"][1].weight.shape) == (HIDDEN, 2 * HEAD_DIM)
    assert tuple(linear_modules(model)[1]["k"][1].weight.shape) == (3 * HEAD_DIM, HIDDEN)
    q_mask = report.layers[0].masks["q.weight"]
    assert tuple(q_mask.shape) == (2 * HEAD_DIM, HIDDEN)
    assert not q_mask[0:4, 0:8].any() and q_mask[4:, :].all()
    assert not layer0["q"][1].weight[0:4, 0:8].any()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_head_with_only_q_or_qk_empty_is_kept(architecture):
    model = tiny_model(architecture)
    inputs = tiny_inputs(architecture)
    masks = full_masks(model)
    kill_head(model, masks, 0, 2, roles=("q",))
    kill_head(model, masks, 1, 1, roles=("q", "k"))
    expected = outputs(masked_copy(model, masks), inputs)

    report = apply_surgery(model, masks)

    assert [layer.kept_heads for layer in report.layers] == [list(range(HEADS))] * 2
    assert report.parameters_after == report.parameters_before
    assert torch.allclose(outputs(model, inputs), expected, atol=1e-6)


def test_removable_heads_rule():
    weight = torch.ones(HIDDEN, HIDDEN, dtype=torch.bool)
    bias = torch.ones(HIDDEN, dtype=torch.bool)
    layer = {"q": weight.clone(), "k": weight.clone(), "v": weight.clone(), "o": weight.clone(),
             "q_bias": bias.clone(), "k_bias": bias.clone(), "v_bias": bias.clone()}
    head = slice(HEAD_DIM, 2 * HEAD_DIM)
    for role in ("q", "k"):
        layer[role][head] = False
        layer[f"{role}_bias"][head] = False
    assert removable_heads(layer, num_heads=HEADS) == []  # uniform attention, V and O live
    layer["v"][head] = False  # V weight zero, V bias live: a constant, folded into O's bias
    assert removable_heads(layer, num_heads=HEADS) == [1]
    layer["v"][head] = True
    layer["o"][:, head] = False  # O columns zero: the head reaches nothing
    assert removable_heads(layer, num_heads=HEADS) == [1]
    layer["o"][HEAD_DIM - 1, HEAD_DIM] = True  # one live O entry in the head's columns
    assert removable_heads(layer, num_heads=HEADS) == []
    del layer["k_bias"]
    with pytest.raises(ValueError, match="Layer masks lack 'k_bias'; pass None"):
        removable_heads(layer, num_heads=HEADS)
    with pytest.raises(ValueError, match="32 attention rows do not split into 5 heads"):
        removable_heads(layer, num_heads=5)


def test_removable_heads_rule_in_a_token_selecting_layer():
    """Where a gather ranks tokens by the heads' CLS attention, a removed head's attention row
    must not depend on the key: zero Q (weights and bias) or zero K weights."""
    full = torch.ones(HIDDEN, HIDDEN, dtype=torch.bool)
    layer = {"q": full.clone(), "k": full.clone(), "v": full.clone(), "o": full.clone(),
             "q_bias": torch.ones(HIDDEN, dtype=torch.bool), "k_bias": None, "v_bias": None}
    head = slice(2 * HEAD_DIM, 3 * HEAD_DIM)
    layer["v"][head] = False
    assert removable_heads(layer, num_heads=HEADS) == [2]
    assert removable_heads(layer, num_heads=HEADS, selects_tokens=True) == []
    layer["q"][head] = False  # Q weight zero, Q bias live: scores b_q . k_j still vary by key
    assert removable_heads(layer, num_heads=HEADS, selects_tokens=True) == []
    layer["q_bias"][head] = False  # every score 0
    assert removable_heads(layer, num_heads=HEADS, selects_tokens=True) == [2]
    layer["q"][head] = True
    layer["q_bias"][head] = True
    layer["k"][head] = False  # scores q_i . b_k: the same for every key
    assert removable_heads(layer, num_heads=HEADS, selects_tokens=True) == [2]


def zero_v_weights(model, masks, layer, head, bias_scale=3.0):
    """Mask head ``head``'s V weight rows and give its (live) V bias values that matter."""
    rows = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
    name, module = linear_modules(model)[layer]["v"]
    masks[f"{name}.weight"][rows] = False
    with torch.no_grad():
        module.bias[rows] = bias_scale * torch.linspace(-1, 1, HEAD_DIM)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_head_with_zero_v_weights_or_o_columns_removed_and_constant_folded(architecture):
    """Regression (issue 14 item 16): a head whose V weights are zero adds the constant
    ``O_h @ b_v,h`` (attention rows sum to 1); surgery removes it and folds that into O's
    bias. A head with zero O columns reaches nothing. The float function is unchanged, padding
    mask included."""
    model = tiny_model(architecture)
    inputs = tiny_inputs(architecture)
    if architecture == "bert":
        inputs["attention_mask"] = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    masks = full_masks(model)
    zero_v_weights(model, masks, 0, 1)
    kill_head(model, masks, 0, 3, roles=("o",))
    zero_v_weights(model, masks, 1, 2)
    expected = outputs(masked_copy(model, masks), inputs)
    unfolded = copy.deepcopy(masks)  # the same heads with V's bias dropped instead of folded
    for layer, head in ((0, 1), (1, 2)):
        name, _ = linear_modules(model)[layer]["v"]
        unfolded[f"{name}.bias"][head * HEAD_DIM:(head + 1) * HEAD_DIM] = False
    assert not torch.allclose(outputs(masked_copy(model, unfolded), inputs), expected,
                              atol=1e-3)
    o_name, _ = linear_modules(model)[0]["o"]
    masks[f"{o_name}.bias"][:5] = False  # the fold must survive O's own bias mask

    report = apply_surgery(model, masks)

    assert [layer.removed_heads for layer in report.layers] == [[1, 3], [2]]
    assert [layer.folded_heads for layer in report.layers] == [[1], [2]]
    assert torch.allclose(outputs(model, inputs), expected, atol=1e-5)
    assert tuple(linear_modules(model)[0]["v"][1].weight.shape) == (2 * HEAD_DIM, HIDDEN)
    assert json.loads(json.dumps(report.to_dict()))["layers"][0]["folded_heads"] == [1]


def test_fold_head_constants_is_idempotent_and_leaves_live_heads_alone():
    model = tiny_model("deit")
    inputs = tiny_inputs("deit")
    name, v = linear_modules(model)[0]["v"]
    with torch.no_grad():
        v.weight[0:HEAD_DIM] = 0
        v.bias.copy_(torch.linspace(-2, 2, HIDDEN))  # HF initialises biases to 0
    expected = outputs(model, inputs)
    assert fold_head_constants(model, 0, [0, 1]) == [0]  # head 1's V weights are live
    assert not v.bias[0:HEAD_DIM].any() and v.bias[HEAD_DIM:2 * HEAD_DIM].any()
    assert torch.allclose(outputs(model, inputs), expected, atol=1e-5)
    assert fold_head_constants(model, 0, [0]) == []
    with pytest.raises(ValueError, match=r"head indices must lie in \[0, 4\), not \[-1\]"):
        fold_head_constants(model, 0, [-1])


def test_token_selecting_layer_keeps_a_v_only_empty_head():
    """A V-empty head still helps choose the kept tokens; one whose K is empty as well only
    shifts every token's score alike, so the same tokens are kept (``fuse=False``: exact)."""
    model = tiny_model("deit")
    inputs = tiny_inputs("deit")
    patch_token_pruning(model, TokenPruningArgs.from_dict(
        {"keep_rate": 0.5, "layers": [0], "fuse": False}))
    masks = full_masks(model)
    zero_v_weights(model, masks, 0, 1)
    zero_v_weights(model, masks, 0, 2)
    kill_head(model, masks, 0, 2, roles=("k",))
    zero_v_weights(model, masks, 1, 3)          # layer 1 selects nothing: removed
    expected = outputs(masked_copy(model, masks), inputs)

    report = apply_surgery(model, masks)

    assert [layer.removed_heads for layer in report.layers] == [[2], [3]]
    assert torch.allclose(outputs(model, inputs), expected, atol=1e-5)


def test_removable_ffn_rule():
    fc1 = torch.ones(INTERMEDIATE, HIDDEN, dtype=torch.bool)
    fc1_bias = torch.ones(INTERMEDIATE, dtype=torch.bool)
    fc2 = torch.ones(HIDDEN, INTERMEDIATE, dtype=torch.bool)
    fc1[3] = False
    fc1[5] = False
    fc1_bias[5] = False
    fc2[:, 9] = False
    fc2[0, 10] = False  # a partly masked column keeps its neuron
    assert removable_ffn(fc1, fc1_bias, fc2) == [3, 5, 9]
    assert removable_ffn(fc1, fc1_bias, fc2, fold_bias=False) == [5, 9]
    assert removable_ffn(fc1, None, fc2, fold_bias=False) == [3, 5, 9]
    with pytest.raises(ValueError, match="FC1 has 64 outputs but FC2 has 63 inputs"):
        removable_ffn(fc1, fc1_bias, fc2[:, 1:])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_ffn_removal_with_bias_folding_keeps_outputs(architecture):
    model = tiny_model(architecture)
    inputs = tiny_inputs(architecture)
    masks = full_masks(model)
    fc1_name, fc1 = linear_modules(model)[0]["fc1"]
    fc2_name, _ = linear_modules(model)[0]["fc2"]
    with torch.no_grad():  # make the folded constants large enough to matter
        fc1.bias[[0, 5, 7]] = torch.tensor([1.5, -0.7, 2.0])
    masks[f"{fc1_name}.weight"][[0, 5, 7]] = False  # biases stay live: constant outputs
    masks[f"{fc2_name}.weight"][:, [10, 11]] = False
    expected = outputs(masked_copy(model, masks), inputs)
    dropped_without_fold = copy.deepcopy(masks)
    dropped_without_fold[f"{fc1_name}.bias"][[0, 5, 7]] = False
    assert not torch.allclose(outputs(masked_copy(model, dropped_without_fold), inputs),
                              expected, atol=1e-3)

    report = apply_surgery(model, masks)

    layer = report.layers[0]
    assert layer.removed_neurons == [0, 5, 7, 10, 11]
    assert layer.folded_neurons == [0, 5, 7]
    assert layer.kept_neurons == [i for i in range(INTERMEDIATE) if i not in {0, 5, 7, 10, 11}]
    assert report.layers[1].removed_neurons == []
    shrunk = linear_modules(model)[0]
    assert tuple(shrunk["fc1"][1].weight.shape) == (INTERMEDIATE - 5, HIDDEN)
    assert tuple(shrunk["fc1"][1].bias.shape) == (INTERMEDIATE - 5,)
    assert tuple(shrunk["fc2"][1].weight.shape) == (HIDDEN, INTERMEDIATE - 5)
    assert torch.allclose(outputs(model, inputs), expected, atol=1e-6)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_forward_with_one_head_left(architecture):
    model = tiny_model(architecture)
    inputs = tiny_inputs(architecture)
    assert prune_heads(model, 0, [0, 1, 3]) is model
    layer = linear_modules(model)[0]
    assert tuple(layer["q"][1].weight.shape) == (HEAD_DIM, HIDDEN)
    assert tuple(layer["o"][1].weight.shape) == (HIDDEN, HEAD_DIM)
    attention = model.get_submodule(layer["q"][0].rpartition(".")[0])
    assert attention.num_attention_heads == 1
    result = outputs(model, inputs)
    assert torch.isfinite(result).all()
    with pytest.raises(ValueError, match="Removing all 1 heads is not supported"):
        prune_heads(model, 0, [0])
    with pytest.raises(ValueError, match=r"head indices must lie in \[0, 4\), not \[4\]"):
        prune_heads(model, 1, [4])


def test_prune_ffn_returns_model_and_shrinks():
    model = tiny_model("bert")
    assert prune_ffn(model, 1, [2, 4]) is model
    layer = linear_modules(model)[1]
    assert tuple(layer["fc1"][1].weight.shape) == (INTERMEDIATE - 2, HIDDEN)
    assert tuple(layer["fc2"][1].weight.shape) == (HIDDEN, INTERMEDIATE - 2)
    assert torch.isfinite(outputs(model, tiny_inputs("bert"))).all()


def test_all_heads_dead_keeps_one():
    model = tiny_model("deit")
    inputs = tiny_inputs("deit")
    masks = full_masks(model)
    for head in range(HEADS):
        kill_head(model, masks, 1, head)
    expected = outputs(masked_copy(model, masks), inputs)
    report = apply_surgery(model, masks)
    assert report.layers[1].kept_heads == [0]
    assert report.layers[1].removed_heads == [1, 2, 3]
    assert torch.allclose(outputs(model, inputs), expected, atol=1e-6)


def test_zero_weights_without_masks_count_as_masked():
    model = tiny_model("vit")
    inputs = tiny_inputs("vit")
    masks = full_masks(model)
    kill_head(model, masks, 0, 2)
    model = masked_copy(model, masks)
    expected = outputs(model, inputs)
    report = apply_surgery(model)
    assert report.layers[0].kept_heads == [0, 1, 3]
    assert torch.allclose(outputs(model, inputs), expected, atol=1e-6)


def test_report_is_json_and_masks_stay_in_force_until_fill():
    model = tiny_model("deit")
    masks = full_masks(model)
    kill_head(model, masks, 0, 0)
    fc2_name, _ = linear_modules(model)[1]["fc2"]
    masks[f"{fc2_name}.weight"][:, 0:16] = False
    o_name, _ = linear_modules(model)[1]["o"]
    masks[f"{o_name}.weight"][0:8, 0:8] = False
    report = apply_surgery(model, masks)

    document = json.loads(json.dumps(report.to_dict()))
    assert document["model_type"] == "deit"
    assert document["num_heads"] == HEADS and document["head_dim"] == HEAD_DIM
    assert document["layers"][0]["kept_heads"] == [1, 2, 3]
    assert document["layers"][1]["removed_neurons"] == list(range(16))
    assert document["layers"][1]["shapes"]["fc2.weight"] == [HIDDEN, INTERMEDIATE - 16]
    assert document["layers"][1]["density"]["o.weight"] == pytest.approx(1 - 64 / 1024)
    assert "masks" not in document["layers"][0]
    with_masks = json.loads(json.dumps(report.to_dict(include_masks=True)))
    assert with_masks["layers"][1]["masks"]["o.weight"][0][:8] == [0] * 8

    # The remaining block mask survives training until fill() drops it.
    o_proj = model.get_submodule(o_name)
    assert parametrize.is_parametrized(o_proj, "weight")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    model(**tiny_inputs("deit")).logits.sum().backward()
    optimizer.step()
    assert not o_proj.weight[0:8, 0:8].any()

    assert fill(model) is model
    assert not parametrize.is_parametrized(o_proj)
    assert tuple(o_proj.weight.shape) == (HIDDEN, HIDDEN)
    assert not o_proj.weight[0:8, 0:8].any()  # zeros kept as starting values, now trainable
    assert tuple(linear_modules(model)[0]["q"][1].weight.shape) == (3 * HEAD_DIM, HIDDEN)


def test_bad_masks_rejected():
    model = tiny_model("bert")
    with pytest.raises(ValueError, match=r"Masks name no prunable parameter: \['bert.pooler"):
        apply_surgery(model, {"bert.pooler.dense.weight": torch.ones(HIDDEN, HIDDEN)})
    name, _ = linear_modules(model)[0]["q"]
    with pytest.raises(ValueError, match=r"has shape \(2, 2\), parameter has \(32, 32\)"):
        apply_surgery(model, {f"{name}.weight": torch.ones(2, 2, dtype=torch.bool)})
    assert structure_for(model).model_type == "bert"
