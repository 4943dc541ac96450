"""The token benchmark's bookkeeping: which runs it makes and how it averages over seeds."""

import pytest

from bench import tokens


def _entry(seed, accuracy, **setting):
    base = dict(keep_rate=0.7, block_pruned=True, fused=True, warmup=True,
                warmup_stage="prune", layers=[0, 1])
    return {**base, **setting, "seed": seed, "accuracy": accuracy,
            "integer_accuracy": accuracy - 0.01, "filled_accuracy": None}


def test_default_variants_repeat_only_the_goal_setting_at_the_extra_seeds():
    variants = tokens.default_variants()
    assert variants[:6] == [dict(keep_rate=rate, block_pruned=block)
                            for block in (False, True) for rate in tokens.KEEP_RATES]
    assert variants[6:] == [dict(tokens.GOAL, seed=seed) for seed in tokens.EXTRA_SEEDS]
    assert 0 not in tokens.EXTRA_SEEDS       # the recipe's seed runs in the table already


def test_seed_means_average_each_setting_over_its_seeds_only():
    runs = [_entry(0, 0.95), _entry(0, 0.93, keep_rate=0.9), _entry(1, 0.94),
            _entry(2, 0.96), _entry(1, 0.90, warmup_stage="finetune")]
    (mean,) = tokens.seed_means(runs)
    assert mean["seeds"] == [0, 1, 2] and mean["keep_rate"] == 0.7
    assert mean["accuracy"] == pytest.approx(0.95)
    assert mean["integer_accuracy"] == pytest.approx(0.94)
    assert "filled_accuracy" not in mean          # absent in a run: no mean
    assert tokens.seed_means(runs[:2]) == []
