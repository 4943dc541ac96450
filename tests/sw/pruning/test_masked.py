import copy
import math

import pytest
import torch
from transformers import GPT2Config, GPT2Model

from sw.pruning.masked import final_masks, patch_model
from sw.pruning.methods import PruningArgs
from sw.pruning.structures import ROLES, linear_modules
from sw.pruning.surgery import apply_surgery
from sw.pruning.trainer import TrainingOptions, _mixup, distillation_loss, fine_prune, finetune
from tests.sw.pruning.test_structures import HEADS, HIDDEN, INTERMEDIATE, LAYERS, tiny_inputs, \
    tiny_model, tiny_split

HEAD_DIM = HIDDEN // HEADS


def _randomise_scores(patch, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for scores in patch.mask_score_parameters():
            scores.copy_(torch.randn(scores.shape, generator=generator))


def test_distillation_loss_on_known_logits():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2 * math.log(3.0), 0.0]])  # at T=2: p_teacher = (3/4, 1/4)
    labels = torch.tensor([0])
    cross_entropy = math.log(2.0)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    loss = distillation_loss(student, teacher, labels, alpha_ce=0.5, alpha_teacher=0.5,
                             temperature=2.0)
    assert loss.item() == pytest.approx(0.5 * cross_entropy + 0.5 * kl * 4.0, abs=1e-6)
    only_teacher = distillation_loss(student, teacher, labels, alpha_ce=0.0, alpha_teacher=1.0,
                                     temperature=2.0)
    assert only_teacher.item() == pytest.approx(4.0 * kl, abs=1e-6)
    assert distillation_loss(student, None, labels, 0.5, 0.5, 2.0).item() == pytest.approx(
        cross_entropy, abs=1e-6)


@pytest.mark.parametrize("architecture", ["deit", "bert"])
def test_patch_finds_every_role(architecture):
    model = tiny_model(architecture)
    patch = patch_model(model, PruningArgs())
    assert len(patch.patched) == LAYERS * len(ROLES)
    assert sorted({info.role for info in patch.patched.values()}) == sorted(ROLES)
    assert "patched 12 linears" in patch.summary()
    names = [name for name, _ in model.named_parameters() if "mask_scores" in name]
    assert len(names) == LAYERS * len(ROLES)


def test_patch_raises_when_nothing_matches():
    with pytest.raises(ValueError, match="supported model types"):
        patch_model(GPT2Model(GPT2Config(n_layer=1, n_embd=8, n_head=2)), PruningArgs())
    disabled = PruningArgs(dense_pruning_method="disabled", attention_pruning_method="disabled")
    with pytest.raises(ValueError, match="Nothing to patch"):
        patch_model(tiny_model("deit"), disabled)


@pytest.mark.parametrize("with_dense", [True, False])
def test_attention_output_follows_dense_or_attention(with_dense):
    args = PruningArgs(attention_pruning_method="threshold", attention_block_rows=HEAD_DIM,
                       attention_block_cols=4, dense_pruning_method="topK", dense_block_rows=2,
                       dense_block_cols=2, attention_output_with_dense=with_dense)
    model = tiny_model("deit")
    patch = patch_model(model, args)
    name, module = linear_modules(model)[0]["o"]
    info = patch.patched[name]
    scores = module.parametrizations.weight[0].scores.mask_scores
    if with_dense:
        assert (info.method, info.block_shape) == ("topK", (2, 2))
        assert tuple(scores.shape) == (HIDDEN // 2, HIDDEN // 2)
        assert any(scores is dense for dense in patch.dense_scores)
    else:
        # Transposed attention block: O's input columns line up with V's head rows.
        assert (info.method, info.block_shape) == ("threshold", (4, HEAD_DIM))
        assert tuple(scores.shape) == (HIDDEN // 4, HIDDEN // HEAD_DIM)
        assert any(scores is attention for attention in patch.attention_scores)
    q_info = patch.patched[linear_modules(model)[0]["q"][0]]
    assert q_info.block_shape == (HEAD_DIM, 4)


def test_one_d_dense_shares_fc1_rows_and_fc2_columns():
    model = tiny_model("deit")
    patch = patch_model(model, PruningArgs(dense_pruning_method="topK:1d_alt"))
    _randomise_scores(patch)
    patch.set_threshold(0.5)
    masks = final_masks(patch)
    layer = linear_modules(model)[0]
    fc1 = masks[f"{layer['fc1'][0]}.weight"]
    fc2 = masks[f"{layer['fc2'][0]}.weight"]
    assert torch.equal(fc1.all(dim=1), fc2.all(dim=0))
    assert int(fc1.all(dim=1).sum()) == INTERMEDIATE // 2


def test_tied_heads_share_one_score_per_head():
    model = tiny_model("deit")
    patch = patch_model(model, PruningArgs(attention_output_with_dense=True),
                        tie_attention_heads=True)
    _randomise_scores(patch)
    patch.set_threshold(0.5)
    masks = final_masks(patch)
    layer = linear_modules(model)[0]
    rows = {role: masks[f"{layer[role][0]}.weight"].all(dim=1) for role in ("q", "k", "v")}
    columns = masks[f"{layer['o'][0]}.weight"].all(dim=0)
    assert torch.equal(rows["q"], rows["k"]) and torch.equal(rows["q"], columns)
    assert int(columns.sum()) == HIDDEN // 2


@pytest.mark.parametrize("use_bias_mask", [True, False])
def test_bias_mask_zeroes_bias_of_masked_rows(use_bias_mask):
    model = tiny_model("deit")
    name, module = linear_modules(model)[0]["fc1"]
    original_bias = module.bias.detach().clone()
    patch = patch_model(model, PruningArgs(dense_pruning_method="threshold",
                                           linear_min_parameters=0.0, bias_mask=use_bias_mask))
    with torch.no_grad():
        scores = module.parametrizations.weight[0].scores.mask_scores
        scores.fill_(1.0)
        scores[:3] = -1.0  # rows 0..2 fully masked
    patch.set_threshold(0.0)
    bias = module.bias.detach()
    if use_bias_mask:
        assert torch.all(bias[:3] == 0)
    else:
        assert torch.equal(bias[:3], original_bias[:3])
    assert torch.equal(bias[3:], original_bias[3:])
    assert torch.all(module.weight[:3] == 0)
    masks = final_masks(patch)
    assert bool(masks[f"{name}.bias"][:3].any()) is not use_bias_mask
    patch.unpatch()
    assert type(module.weight) is torch.nn.Parameter
    assert torch.all(module.weight[:3] == 0)


@pytest.mark.parametrize("architecture", ["deit", "bert"])
@pytest.mark.parametrize("tie", [False, True])
def test_shrunk_model_matches_masked_model(architecture, tie):
    model = tiny_model(architecture)
    args = PruningArgs(attention_block_rows=HEAD_DIM, attention_block_cols=HEAD_DIM,
                       attention_output_with_dense=False, dense_pruning_method="topK:1d_alt")
    patch = patch_model(model, args, tie_attention_heads=tie)
    _randomise_scores(patch, seed=3)
    patch.set_threshold(0.25)
    inputs = tiny_inputs(architecture)
    with torch.no_grad():
        masked = model(**inputs).logits
    masks = final_masks(patch)
    patch.unpatch()
    report = apply_surgery(model, masks)
    with torch.no_grad():
        shrunk = model(**inputs).logits
    assert (shrunk - masked).abs().max().item() <= 1e-5
    assert all(len(layer.removed_neurons) == INTERMEDIATE - INTERMEDIATE // 4
               for layer in report.layers)
    if tie:
        assert all(len(layer.kept_heads) == 1 for layer in report.layers)


def test_training_steps_follow_the_schedule():
    split = tiny_split()
    teacher = tiny_model("deit")
    student = tiny_model("deit")
    args = PruningArgs(initial_threshold=1.0, final_threshold=0.5, initial_warmup=1,
                       final_warmup=1, eval_with_current_patch_params=True,
                       regularization="l1", dense_pruning_method="sigmoied_threshold",
                       attention_pruning_method="topK", regularization_final_lambda=0.1,
                       final_finetune=True)
    options = TrainingOptions(epochs=4, batch_size=16, warmup_epochs=1, max_shift=0,
                              final_finetune_epochs=1)
    schedule = args.schedule(warmup_steps=2, total_steps=8)
    result = fine_prune(student, teacher, split, args, options, progress=False)
    pruning = [entry for entry in result.history if entry["stage"] == "prune"]
    assert [entry["step"] for entry in pruning] == [2, 4, 6, 8]
    for entry in pruning:
        assert entry["threshold"] == pytest.approx(schedule.threshold(entry["step"] - 1))
    assert [entry["stage"] for entry in result.history[4:]] == ["finetune-masked",
                                                              "finetune-filled"]
    q_name = linear_modules(result.pruned)[0]["q"][0]
    assert result.masks[f"{q_name}.weight"].float().mean().item() == pytest.approx(0.5)
    assert result.filled is not None and result.surgery is not None
    for name, mask in result.masks.items():
        assert torch.all(result.pruned.get_parameter(name)[~mask] == 0)



def test_finetune_average_ends_on_the_mean_of_the_last_epochs_steps():
    """Two fine-tunes from the same start differ only by ``finetune_average_epochs``: the
    averaging one ends on the mean of the other's weights after every step of its last epoch
    (the averaging reads the trajectory, it never changes it)."""
    split, args = tiny_split(), PruningArgs()
    start = tiny_model("deit")
    steps_per_epoch = 2                                # 32 images, batch 16

    def run(average_epochs):
        model = copy.deepcopy(start)
        seen = []

        def on_step(step, total_steps):                # before step ``step``: after step - 1
            if step > steps_per_epoch + 1:             # epoch 2's steps, bar its last
                seen.append([p.detach().clone() for p in model.parameters()])
        torch.manual_seed(0)
        options = TrainingOptions(batch_size=16, max_shift=0, final_finetune_epochs=2,
                                  finetune_average_epochs=average_epochs)
        finetune(model, None, split, args, options, progress=False, on_step=on_step)
        return model, seen

    plain, seen = run(0)
    averaged, _ = run(1)
    trajectory = seen + [[p.detach() for p in plain.parameters()]]
    assert len(trajectory) == steps_per_epoch
    for index, parameter in enumerate(averaged.parameters()):
        mean = sum(step[index] for step in trajectory) / len(trajectory)
        torch.testing.assert_close(parameter.detach(), mean)
    assert any(not torch.equal(a, b) for a, b in zip(averaged.parameters(), plain.parameters()))


def test_finetune_average_cannot_exceed_the_finetune():
    with pytest.raises(ValueError, match="finetune_average_epochs"):
        TrainingOptions(final_finetune_epochs=2, finetune_average_epochs=3)
    with pytest.raises(ValueError, match="finetune_average_epochs"):
        TrainingOptions(finetune_average_epochs=-1)


def test_mixup_blends_images_and_labels_by_the_same_factor():
    """Images that are their own one-hot labels stay equal to their labels after mixup: both are
    blended with the same shuffled partner by the same factor."""
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    images = torch.nn.functional.one_hot(labels, 10).float().reshape(8, 1, 1, 10)
    mixed, targets = _mixup(images, labels, 0.4, torch.Generator().manual_seed(0), 10)
    assert torch.equal(mixed.reshape(8, 10), targets)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(8))
    assert not torch.equal(targets, torch.nn.functional.one_hot(labels, 10).float())
    again, _ = _mixup(images, labels, 0.4, torch.Generator().manual_seed(0), 10)
    assert torch.equal(again, mixed)                   # seeded: the same blend
    with pytest.raises(ValueError, match="mixup_alpha"):
        TrainingOptions(mixup_alpha=-0.1)
