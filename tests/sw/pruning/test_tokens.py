"""Tests of float token pruning (``sw.pruning.tokens``) on tiny DeiT / ViT models built in code."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification

from sw.golden.token_select import TokenPruning, keep_count, select_tokens
from sw.models import build_small_deit, small_deit_config
from sw.prune import DEFAULT_RECIPE, resolve_recipe, resolve_token_recipe
from sw.pruning.tokens import TokenGather, TokenPruningArgs, patch_token_pruning

RECIPES = Path(DEFAULT_RECIPE).parent


def _model(seed=0):
    torch.manual_seed(seed)
    return build_small_deit(small_deit_config(num_layers=2)).eval()


def _sizes(model, images):
    """Rows entering each encoder layer."""
    sizes = []
    handles = [layer.register_forward_pre_hook(lambda m, a: sizes.append(a[0].shape[1]))
               for layer in model.deit.layers]
    with torch.no_grad():
        model(pixel_values=images)
    for handle in handles:
        handle.remove()
    return sizes


def test_keep_rate_one_leaves_the_function_unchanged():
    model, images = _model(), torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values=images).logits
    patch_token_pruning(model, TokenPruningArgs(keep_rate=1.0, layers=[0, 1]))
    with torch.no_grad():
        assert torch.allclose(model(pixel_values=images).logits, expected, atol=1e-5)


@pytest.mark.parametrize("fuse", [True, False])
def test_pruned_layers_shrink_the_sequence_as_the_patch_reports(fuse):
    model, images = _model(), torch.randn(3, 3, 32, 32)
    patch = patch_token_pruning(model, TokenPruningArgs(keep_rate=0.7, layers=[0], fuse=fuse))
    assert patch.protected == 2
    kept = keep_count(64, 0.7)
    assert patch.kept_tokens(66, 2) == [(66, 2 + kept + fuse), (2 + kept + fuse,) * 2]
    assert _sizes(model, images) == [66, 2 + kept + fuse]


def test_gather_keeps_the_rows_the_golden_rule_selects_and_fuses_by_attention():
    """Same selection as ``sw.golden.token_select`` on the same scores (ties included); the
    fused row is the attention-weighted mean of the dropped rows; CLS and distillation stay."""
    torch.manual_seed(1)
    batch, heads, tokens, width = 2, 4, 10, 3
    probs = torch.randint(0, 256, (batch, heads, tokens, tokens)) / 256     # Q0.8 values
    probs[0, :, 0, 5] = probs[0, :, 0, 6] = 0.5             # a tie: index 5 must win
    hidden = torch.randn(batch, tokens, width, requires_grad=True)
    gather = TokenGather(keep_rate=0.5, protected=2, fuse=True).eval()
    out = gather(hidden, probs)
    keep = keep_count(tokens - 2, 0.5)
    assert out.shape == (batch, 2 + keep + 1, width)
    scores = probs[:, :, 0, :].mean(1)
    summed = (probs[:, :, 0, :] * 256).round().long().sum(1).numpy()   # the integer scores
    kept = select_tokens(summed, TokenPruning(keep=keep, protected=2))
    assert 5 in kept[0] and 6 not in kept[0]
    assert torch.equal(out[:, :-1], hidden.gather(1, torch.as_tensor(kept)[..., None]
                                                  .expand(-1, -1, width)))
    for image in range(batch):
        dropped = sorted(set(range(tokens)) - set(kept[image].tolist()))
        weights = scores[image, dropped] + 2.0**-8 / heads
        fused = (weights[:, None] * hidden[image, dropped]).sum(0) / weights.sum()
        assert torch.allclose(out[image, -1], fused)
    out.sum().backward()                                    # gradients reach every row
    assert hidden.grad.abs().sum(-1).gt(0).all()


def test_last_layer_pruning_does_not_change_the_cls_output():
    """After the last layer's attention only the CLS row reaches the classifier, and the FFN
    works row by row: pruning there is free (docs/token-pruning.md)."""
    model, images = _model(), torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixel_values=images).logits
    patch_token_pruning(model, TokenPruningArgs(keep_rate=0.3, layers=[1]))
    with torch.no_grad():
        assert torch.allclose(model(pixel_values=images).logits, expected, atol=1e-5)


def test_warmup_follows_the_cubic_schedule_and_eval_uses_the_target():
    model = _model()
    patch = patch_token_pruning(model, TokenPruningArgs(keep_rate=0.5, layers=[0]),
                                initial_warmup=1, final_warmup=2, warmup_epochs=1, epochs=11)
    # 110 steps, warmup unit 10: flat to step 10, cubic to step 90, flat after
    assert patch.rate_at(10, 110) == 1.0
    assert patch.rate_at(50, 110) == pytest.approx(0.5 + 0.5 * 0.5**3)
    assert patch.rate_at(95, 110) == 0.5
    patch.on_step(50, 110)
    gather = patch.gathers[0]
    assert gather.current_rate == pytest.approx(0.5625)
    assert gather.train().keep(66) == keep_count(64, 0.5625)
    assert gather.eval().keep(66) == keep_count(64, 0.5)
    no_warmup = patch_token_pruning(_model(), TokenPruningArgs(keep_rate=0.5, warmup=False))
    assert no_warmup.rate_at(1, 110) == 0.5
    # the masked fine-tune only re-asserts the target
    patch.on_finetune_step(1, 30)
    assert gather.current_rate == 0.5


def test_warmup_after_the_weights_keeps_every_token_then_ramps_in_the_finetune():
    patch = patch_token_pruning(_model(), TokenPruningArgs(keep_rate=0.5, layers=[0],
                                                           warmup_stage="finetune"),
                                initial_warmup=1, final_warmup=2, warmup_epochs=1, epochs=20,
                                finetune_epochs=11)
    gather = patch.gathers[0].train()
    for step in (1, 100, 220):
        patch.on_step(step, 220)
        assert gather.current_rate == 1.0 and gather.keep(66) == 64
    # fine-tune: 110 steps, unit 10 (one of its 11 epochs): flat to 10, cubic to 90, flat after
    assert patch.rate_at(10, 110, stage="finetune") == 1.0
    assert patch.rate_at(50, 110, stage="finetune") == pytest.approx(0.5 + 0.5 * 0.5**3)
    patch.on_finetune_step(95, 110)
    assert gather.current_rate == 0.5
    assert gather.eval().keep(66) == keep_count(64, 0.5)


def test_vit_protects_only_cls_and_deepcopy_keeps_the_patch():
    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, num_labels=3)
    model = ViTForImageClassification(config).eval()
    patch = patch_token_pruning(model, TokenPruningArgs(keep_rate=0.5, layers=[0]))
    assert patch.protected == 1
    copied = copy.deepcopy(model)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=images).logits, copied(pixel_values=images).logits)


def test_arguments_and_recipe_errors():
    for bad, message in ((dict(keep_rate=0.0), "tokens.keep_rate must lie in"),
                         (dict(layers=[]), "tokens.layers must be a non-empty list"),
                         (dict(layers=[0, 0]), "tokens.layers must be a non-empty list"),
                         (dict(fuse="yes"), "tokens.fuse must be true or false"),
                         (dict(warmup_stage="late"), "tokens.warmup_stage must be one of "
                                                     "prune, finetune, not 'late'")):
        with pytest.raises(ValueError, match=message):
            TokenPruningArgs(**bad)
    with pytest.raises(ValueError, match=r"Unknown tokens options \['keep'\]"):
        resolve_token_recipe({"tokens": {"keep": 0.5}})
    with pytest.raises(ValueError, match=r"tokens.layers \[5\] do not exist: the model has 2"):
        patch_token_pruning(_model(), TokenPruningArgs(layers=[5]))
    assert resolve_token_recipe({"pruning": {}}) is None
    assert resolve_token_recipe({}, {"keep_rate": 0.9}).keep_rate == 0.9


def test_token_recipe_is_the_pruning_recipe_plus_tokens():
    base = json.loads(DEFAULT_RECIPE.read_text())
    tokens = json.loads((RECIPES / "digits_deit_tokens.json").read_text())
    assert {key: tokens[key] for key in ("pruning", "training")} == {
        key: base[key] for key in ("pruning", "training")}
    resolve_recipe(tokens)
    assert resolve_token_recipe(tokens) == TokenPruningArgs(keep_rate=0.7, layers=(0, 1))
    assert np.isclose(resolve_token_recipe(tokens, {"keep_rate": 0.5}).keep_rate, 0.5)
