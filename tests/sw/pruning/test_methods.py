"""Tests of pruning methods: binarizer masks and gradients, block scores, schedule, regularization,
and the validated pruning arguments."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sw.pruning.methods import (
    IGNORED_SEED_PARAMETERS,
    PRUNING_METHODS,
    MaskScores,
    MethodSpec,
    PruningArgs,
    SharedDimensionScores,
    ThresholdSchedule,
    bias_mask,
    regularization_loss,
)
from sw.pruning.methods.binarizers import l0_expected_gates, min_kept_entries
from sw.pruning.methods.regularization import module_regularization
from sw.pruning.methods.schedule import eval_threshold
from sw.pruning.methods.scores import expand_block_mask

SCORES = torch.tensor([[0.3, -1.0, 2.0], [0.1, 0.5, -0.2]])


# --- binarizers ------------------------------------------------------------------------------

def test_registry_names():
    assert set(PRUNING_METHODS) == {"topK", "threshold", "sigmoied_threshold", "l0", "magnitude"}


def test_top_k_hand_example():
    mask = PRUNING_METHODS["topK"](SCORES, 0.5)
    assert mask.tolist() == [[1, 0, 1], [0, 1, 0]]
    assert mask.dtype == SCORES.dtype


def test_top_k_truncates_kept_count():
    # nn_pruning keeps int(threshold * numel): 0.29 * 10 = 2.9 -> 2, and 0.99 * 10 -> 9.
    scores = torch.arange(10.0)
    assert PRUNING_METHODS["topK"](scores, 0.29).tolist() == [0] * 8 + [1] * 2
    assert PRUNING_METHODS["topK"](scores, 0.99).sum() == 9
    assert PRUNING_METHODS["topK"](scores, 0.0).sum() == 0
    assert PRUNING_METHODS["topK"](scores, 1.0).sum() == 10


def test_top_k_ties_go_to_lower_index():
    assert PRUNING_METHODS["topK"](torch.zeros(2, 3), 0.5).tolist() == [[1, 1, 1], [0, 0, 0]]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.floats(0.0, 1.0), st.integers(0, 2**16))
def test_top_k_keeps_int_k_n(numel, keep, seed):
    scores = torch.randn(numel, generator=torch.Generator().manual_seed(seed))
    mask = PRUNING_METHODS["topK"](scores, keep)
    kept = int(mask.sum())
    assert kept == int(keep * numel)
    if 0 < kept < numel:
        assert scores[mask.bool()].min() >= scores[~mask.bool()].max()


def test_threshold_hand_example():
    mask = PRUNING_METHODS["threshold"](SCORES, 0.3)
    assert mask.tolist() == [[0, 0, 1], [0, 1, 0]]  # strictly greater: 0.3 is pruned


def test_sigmoied_threshold_hand_example():
    # sigmoid(SCORES) = [[.574, .269, .881], [.525, .622, .450]]
    mask = PRUNING_METHODS["sigmoied_threshold"](SCORES, 0.55)
    assert mask.tolist() == [[1, 0, 1], [0, 1, 0]]


def test_min_kept_entries_counts_like_nn_pruning():
    assert min_kept_entries(100, 0.005) == 1
    assert min_kept_entries(1000, 0.005) == 6
    assert min_kept_entries(10, 0.25) == 3
    assert min_kept_entries(10, 0.0) == 0
    assert min_kept_entries(4, 1.0) == 4
    # 1d rows of 768 copies: int(0.005 * 3072 * 768) + 1 = 11797 entries -> 15 whole rows
    assert min_kept_entries(3072, 0.005, copies=768) == 15
    assert min_kept_entries(3072, 0.005, copies=768) < min_kept_entries(3072, 0.005)
    assert min_kept_entries(4, 1.0, copies=3) == 4
    with pytest.raises(ValueError, match="copies must be a positive integer, not 0"):
        min_kept_entries(4, 0.5, copies=0)


def test_sigmoied_threshold_respects_linear_min_parameters():
    scores = torch.tensor([-5.0, -4.0, -3.0, -2.0, -1.0, -6.0, -7.0, -8.0, -9.0, -10.0])
    # Nothing passes sigmoid > 0.9; the 0.25 floor keeps int(2.5) + 1 = 3 top entries.
    mask = PRUNING_METHODS["sigmoied_threshold"](scores, 0.9, min_fraction=0.25)
    assert mask.tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    # Without a floor the mask is empty.
    assert PRUNING_METHODS["sigmoied_threshold"](scores, 0.9).sum() == 0
    # sigmoid(-2), sigmoid(-1) > 0.1 meet the 0.15 floor of int(1.5) + 1 = 2: nothing changes.
    assert PRUNING_METHODS["sigmoied_threshold"](scores, 0.1, min_fraction=0.15).tolist() == [
        0, 0, 0, 1, 1, 0, 0, 0, 0, 0]


def test_threshold_floor_applies_too():
    mask = PRUNING_METHODS["threshold"](torch.tensor([1.0, 3.0, 2.0]), 10.0, min_fraction=0.5)
    assert mask.tolist() == [0, 1, 1]


@pytest.mark.parametrize("name, threshold", [
    ("topK", 0.5), ("threshold", 0.2), ("sigmoied_threshold", 0.55)])
def test_straight_through_gradient(name, threshold):
    scores = SCORES.clone().requires_grad_(True)
    weight = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    upstream = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.25, -4.0]])
    mask = PRUNING_METHODS[name](scores, threshold)
    ((mask * weight) * upstream).sum().backward()
    # d mask / d scores := identity, so d loss / d scores = d loss / d mask = weight * upstream.
    assert torch.equal(scores.grad, weight * upstream)


def test_l0_eval_gate_is_deterministic_and_bounded():
    scores = torch.tensor([-10.0, -2.0, 0.0, 2.0, 10.0])
    first = PRUNING_METHODS["l0"](scores, 0.0, training=False)
    second = PRUNING_METHODS["l0"](scores, 0.0, training=False)
    assert torch.equal(first, second)
    assert ((first >= 0) & (first <= 1)).all()
    # clamp(sigmoid(s) * 1.2 - 0.1, 0, 1): 0 -> 0.5, large -> 1, very negative -> 0.
    assert first[0] == 0 and first[4] == 1
    assert first[2].item() == pytest.approx(0.5)
    assert first[1].item() == pytest.approx(1.2 / (1 + math.exp(2)) - 0.1)


def test_l0_training_gate_is_stochastic_bounded_and_differentiable():
    torch.manual_seed(0)
    scores = torch.zeros(200, requires_grad=True)
    gates = PRUNING_METHODS["l0"](scores, 0.0, training=True)
    assert ((gates >= 0) & (gates <= 1)).all()
    assert gates.unique().numel() > 2  # noise makes gates differ although scores are equal
    gates.sum().backward()
    assert scores.grad.abs().sum() > 0


def test_l0_expected_gates_value():
    # P(gate != 0) = sigmoid(log_alpha - 2/3 * log(0.1 / 1.1))
    expected = 1 / (1 + math.exp(2 / 3 * math.log(0.1 / 1.1)))
    assert l0_expected_gates(torch.zeros(1)).item() == pytest.approx(expected)


def test_magnitude_ignores_scores():
    weight = torch.tensor([[0.1, -3.0], [2.0, -0.5]])
    for scores in (None, torch.zeros(2, 2), torch.tensor([[9.0, -9.0], [-9.0, 9.0]])):
        mask = PRUNING_METHODS["magnitude"](scores, 0.5, weight=weight)
        assert mask.tolist() == [[0, 1], [1, 0]]
        assert not mask.requires_grad


def test_magnitude_needs_weight():
    with pytest.raises(ValueError, match="magnitude pruning needs the weight; pass weight="):
        PRUNING_METHODS["magnitude"](SCORES, 0.5)


def test_fraction_threshold_checked():
    with pytest.raises(ValueError, match=r"topK threshold \(fraction kept\) must be a fraction "
                                         r"in \[0, 1\], not 1.5"):
        PRUNING_METHODS["topK"](SCORES, 1.5)


# --- scores ----------------------------------------------------------------------------------

def test_block_scores_shape_and_expansion():
    scores = MaskScores(rows=4, cols=6, block_rows=2, block_cols=3)
    assert scores.mask_scores.shape == (2, 2)
    with torch.no_grad():
        scores.mask_scores.copy_(torch.tensor([[1.0, -1.0], [-1.0, 2.0]]))
    mask = scores.mask(PRUNING_METHODS["threshold"], 0.0)
    assert mask.shape == (4, 6)
    assert mask.tolist() == [[1, 1, 1, 0, 0, 0]] * 2 + [[0, 0, 0, 1, 1, 1]] * 2


def test_expand_block_mask_shape():
    assert expand_block_mask(torch.ones(3, 5), 4, 2).shape == (12, 10)


def test_magnitude_through_scores_is_elementwise():
    scores = MaskScores(rows=2, cols=2, block_rows=2, block_cols=2)
    weight = torch.tensor([[0.1, -3.0], [2.0, -0.5]])
    mask = scores.mask(PRUNING_METHODS["magnitude"], 0.5, weight=weight)
    assert mask.tolist() == [[0, 1], [1, 0]]


def test_block_scores_gradient_reaches_block_scores():
    scores = MaskScores(rows=2, cols=4, block_rows=1, block_cols=2)
    mask = scores.mask(PRUNING_METHODS["topK"], 0.5)
    (mask * torch.arange(8.0).view(2, 4)).sum().backward()
    assert scores.mask_scores.grad.tolist() == [[1.0, 5.0], [9.0, 13.0]]


@pytest.mark.parametrize("mask_init, scale", [
    ("constant", 0.7), ("uniform", 0.1), ("kaiming", 0.0)])
def test_mask_init(mask_init, scale):
    torch.manual_seed(0)
    scores = MaskScores(rows=8, cols=8, block_rows=2, block_cols=2, mask_init=mask_init,
                        mask_scale=scale).mask_scores
    if mask_init == "constant":
        assert (scores == 0.7).all()
    elif mask_init == "uniform":
        assert (scores.abs() <= 0.1).all() and scores.unique().numel() > 1
    else:
        # kaiming_uniform_(a=sqrt(5)) bound is 1 / sqrt(fan_in) = 1 / sqrt(4)
        assert (scores.abs() <= 0.5).all() and scores.unique().numel() > 1


def test_per_row_and_per_column_scores():
    assert MaskScores.per_row(rows=6, cols=4).mask_scores.shape == (6, 1)
    assert MaskScores.per_column(rows=6, cols=4).mask_scores.shape == (1, 4)


def test_scores_errors():
    with pytest.raises(ValueError, match="block_rows 4 does not divide weight rows 6"):
        MaskScores(rows=6, cols=4, block_rows=4)
    with pytest.raises(ValueError, match="block_cols must be a positive integer, not 0"):
        MaskScores(rows=6, cols=4, block_cols=0)
    with pytest.raises(ValueError, match="Unknown mask_init 'zeros'; known: constant, uniform, "
                                         "kaiming"):
        MaskScores(rows=6, cols=4, mask_init="zeros")
    with pytest.raises(ValueError, match="kaiming mask_init needs 2-D mask scores"):
        SharedDimensionScores(size=4, mask_init="kaiming")


def test_shared_fc1_fc2_masks_agree():
    shared = SharedDimensionScores(size=6, block=2)
    with torch.no_grad():
        shared.mask_scores.copy_(torch.tensor([0.5, -0.5, 2.0]))
    # sigmoid: 0.622, 0.378, 0.881 against 0.55
    units = shared.unit_mask(PRUNING_METHODS["sigmoied_threshold"], 0.55)
    assert units.tolist() == [1, 1, 0, 0, 1, 1]
    fc1 = shared.fc1_mask(units, fc1_cols=3)   # FC1 weight (6, 3)
    fc2 = shared.fc2_mask(units, fc2_rows=5)   # FC2 weight (5, 6)
    assert fc1.shape == (6, 3) and fc2.shape == (5, 6)
    assert torch.equal(fc1.any(dim=1), units.bool())
    assert torch.equal(fc2.any(dim=0), units.bool())
    assert torch.equal(fc1[:, 0], fc2[0, :])


def test_shared_scores_gradient_from_both_layers():
    shared = SharedDimensionScores(size=3)
    units = shared.unit_mask(PRUNING_METHODS["topK"], 1.0)
    fc1 = shared.fc1_mask(units, fc1_cols=2)
    fc2 = shared.fc2_mask(units, fc2_rows=4)
    (fc1.sum() + 10 * fc2.sum()).backward()
    assert shared.mask_scores.grad.tolist() == [42.0, 42.0, 42.0]


def test_bias_mask():
    weight_mask = torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    assert bias_mask(weight_mask).tolist() == [True, False, True]


# --- schedule --------------------------------------------------------------------------------

TOPK_SCHEDULE = ThresholdSchedule(initial_threshold=1.0, final_threshold=0.1, initial_warmup=1,
                                  final_warmup=2, warmup_steps=10, total_steps=110)


@pytest.mark.parametrize("step, threshold, progress", [
    (0, 1.0, 0.0),                            # start
    (10, 1.0, 0.0),                           # last step of the initial warmup
    (30, 0.1 + 0.9 * 0.75 ** 3, 0.25),        # ramp of 80 steps: m = 1 - 20 / 80
    (50, 0.2125, 0.5),                        # middle: m = 0.5
    (90, 0.1, 1.0),                           # ramp end = start of the final warmup
    (91, 0.1, 1.0),
    (110, 0.1, 1.0),                          # end
])
def test_schedule_key_steps(step, threshold, progress):
    assert TOPK_SCHEDULE.threshold(step) == pytest.approx(threshold)
    assert TOPK_SCHEDULE.progress(step) == pytest.approx(progress)


def test_lambda_ramp_follows_threshold():
    schedule = ThresholdSchedule(initial_threshold=0.0, final_threshold=0.1, initial_warmup=1,
                                 final_warmup=2, warmup_steps=10, total_steps=110,
                                 regularization_final_lambda=10.0)
    assert schedule.regularization_lambda(0) == 0.0
    # threshold(50) = 0.1 - 0.1 * 0.125 = 0.0875 -> lambda = 10 * 0.0875 / 0.1
    assert schedule.regularization_lambda(50) == pytest.approx(8.75)
    assert schedule.regularization_lambda(110) == pytest.approx(10.0)
    assert TOPK_SCHEDULE.regularization_lambda(50) == 0.0


def test_eval_uses_final_or_current_threshold():
    assert eval_threshold(TOPK_SCHEDULE, 51, eval_with_current_patch_params=False) == 0.1
    # eval after 51 steps looks at step 50
    assert eval_threshold(TOPK_SCHEDULE, 51, eval_with_current_patch_params=True) == \
        pytest.approx(0.2125)
    point = TOPK_SCHEDULE.at(51, training=False)
    assert (point.threshold, point.progress) == (0.1, 1.0)
    assert TOPK_SCHEDULE.at(50).threshold == pytest.approx(0.2125)


def test_schedule_errors():
    with pytest.raises(ValueError, match=r"initial_warmup \+ final_warmup \(30 steps\) exceed "
                                         r"total_steps 20"):
        ThresholdSchedule(initial_threshold=1.0, final_threshold=0.1, initial_warmup=1,
                          final_warmup=2, warmup_steps=10, total_steps=20)


# --- regularization --------------------------------------------------------------------------

def test_module_regularization_values():
    scores = torch.tensor([[0.0, math.log(3.0)]])   # sigmoid -> 0.5, 0.75
    assert module_regularization(scores, "l1").item() == pytest.approx(0.625)
    shift = 2 / 3 * math.log(0.1 / 1.1)
    expected = (1 / (1 + math.exp(shift)) + 1 / (1 + math.exp(shift - math.log(3.0)))) / 2
    assert module_regularization(scores, "l0").item() == pytest.approx(expected)


def test_regularization_loss_groups_and_lambdas():
    attention = [torch.zeros(2), torch.full((3,), math.log(3.0))]   # means 0.5 and 0.75
    dense = [torch.full((4,), -math.log(3.0))]                      # mean 0.25
    loss = regularization_loss(attention_scores=attention, dense_scores=dense, mode="l1",
                               attention_lambda=2.0, dense_lambda=4.0)
    # two groups (n = 2): 2 / 2 * (0.5 + 0.75) / 2 + 4 / 2 * 0.25 / 1
    assert loss.item() == pytest.approx(0.625 + 0.5)
    # one group (n = 1): 1 / 1 * (0.5 + 0.75) / 2
    assert regularization_loss(attention_scores=attention, dense_scores=[], mode="l1").item() \
        == pytest.approx(0.625)
    assert regularization_loss(attention_scores=attention, dense_scores=dense,
                               mode="disabled").item() == 0.0


def test_regularization_loss_gradient_and_errors():
    scores = torch.zeros(4, requires_grad=True)
    regularization_loss(attention_scores=[], dense_scores=[scores], mode="l1").backward()
    # d/ds 1 * mean(sigmoid(s)) = 0.25 / 4 (the dense group alone: lambda / 1)
    assert scores.grad.tolist() == pytest.approx([0.0625] * 4)
    with pytest.raises(ValueError, match="Unknown regularization 'l2'; known: disabled, l1, l0"):
        regularization_loss(attention_scores=[], dense_scores=[], mode="l2")


# --- arguments -------------------------------------------------------------------------------

def test_pruning_args_defaults_match_seed():
    assert PruningArgs().to_dict() == {
        "mask_scores_learning_rate": 1e-2, "dense_pruning_method": "topK",
        "attention_pruning_method": "topK", "attention_output_with_dense": True,
        "bias_mask": True, "mask_init": "constant", "mask_scale": 0.0, "dense_block_rows": 1,
        "dense_block_cols": 1, "attention_block_rows": 1, "attention_block_cols": 1,
        "initial_threshold": 1.0, "final_threshold": 0.5, "initial_warmup": 1,
        "final_warmup": 2, "regularization": "disabled", "regularization_final_lambda": 0.0,
        "attention_lambda": 1.0, "dense_lambda": 1.0, "distil_teacher_name_or_path": None,
        "distil_alpha_ce": 0.5, "distil_alpha_teacher": 0.5, "distil_temperature": 2.0,
        "final_finetune": False, "linear_min_parameters": 0.005,
        "eval_with_current_patch_params": False,
    }


def test_pruning_args_round_trip():
    args = PruningArgs(dense_pruning_method="sigmoied_threshold:1d_alt",
                       attention_pruning_method="sigmoied_threshold", attention_block_rows=32,
                       attention_block_cols=32, initial_threshold=0.0, final_threshold=0.1,
                       regularization="l1", regularization_final_lambda=20.0,
                       distil_teacher_name_or_path="teacher", mask_init="uniform",
                       mask_scale=0.05)
    assert PruningArgs.from_dict(args.to_dict()) == args
    assert args.dense_method == MethodSpec("sigmoied_threshold", "1d_alt")
    assert args.attention_method.mask_function is PRUNING_METHODS["sigmoied_threshold"]
    schedule = args.schedule(warmup_steps=10, total_steps=110)
    assert schedule.regularization_lambda(110) == pytest.approx(20.0)


def test_from_dict_ignored_parameters():
    assert PruningArgs.from_dict(dict(IGNORED_SEED_PARAMETERS)) == PruningArgs()
    with pytest.raises(ValueError, match="qat is not supported by this project; leave it at its "
                                         "default False, not True"):
        PruningArgs.from_dict({"qat": True})
    with pytest.raises(ValueError, match="Unknown pruning parameter 'sparsity'; known: "
                                         "mask_scores_learning_rate, dense_pruning_method"):
        PruningArgs.from_dict({"sparsity": 0.5})


@pytest.mark.parametrize("kwargs, message", [
    ({"dense_pruning_method": "random"},
     "Unknown dense_pruning_method 'random'; known: disabled, topK, threshold, "
     "sigmoied_threshold, l0, magnitude"),
    ({"attention_pruning_method": "topK:2d"},
     "Unknown attention_pruning_method submethod '2d'; known: default, 1d, 1d_alt"),
    ({"mask_init": "normal"}, "Unknown mask_init 'normal'; known: constant, uniform, kaiming"),
    ({"regularization": "l2"}, "Unknown regularization 'l2'; known: disabled, l1, l0"),
    ({"dense_block_rows": 0}, "dense_block_rows must be a positive integer, not 0"),
    ({"attention_block_cols": 2.0}, "attention_block_cols must be a positive integer, not 2.0"),
    ({"bias_mask": 1}, "bias_mask must be a bool, not 1"),
    ({"final_threshold": 1.5}, "final_threshold must be in [0, 1] for method 'topK', not 1.5"),
    ({"linear_min_parameters": 2.0},
     "linear_min_parameters must be a fraction in [0, 1], not 2.0"),
    ({"distil_temperature": 0.0}, "distil_temperature must be positive, not 0.0"),
    ({"dense_lambda": -1.0}, "dense_lambda must be non-negative, not -1.0"),
    ({"mask_scale": float("nan")}, "mask_scale must be a finite real number, not nan"),
    ({"regularization": "l1", "final_threshold": 0.0},
     "final_threshold must be non-zero when regularization is enabled"),
    ({"distil_teacher_name_or_path": ""},
     "distil_teacher_name_or_path must be None or a non-empty string, not ''"),
])
def test_pruning_args_validation_messages(kwargs, message):
    with pytest.raises(ValueError) as info:
        PruningArgs(**kwargs)
    assert str(info.value).startswith(message)


def test_threshold_method_allows_any_real_threshold():
    args = PruningArgs(dense_pruning_method="threshold", attention_pruning_method="disabled",
                       initial_threshold=-2.0, final_threshold=3.0)
    assert not args.attention_method.enabled
    with pytest.raises(ValueError, match="A disabled pruning method has no mask function"):
        args.attention_method.mask_function
