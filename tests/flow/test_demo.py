"""The demo's own checks and counts, without Verilator: non-zero MACs of replayed instructions
and the same-engine check of the dense and pruned configs."""

import numpy as np
import pytest

from flow.demo import DemoFailed, check_same_engine, nonzero_macs
from sim.layer_replay import synthetic_case
from sw.config import load_config


def test_nonzero_macs_count_nonzero_weights_of_linears_and_every_attention_mac():
    config = load_config("tiny")
    case = synthetic_case(config, kept_heads=[0, 2], kept_ffn=64, density=0.5, seed=3)
    tokens = case.x.shape[0]
    fc1 = case.layer.fc1.weight
    assert 0 < np.count_nonzero(fc1) < fc1.size        # pruned: zeros must not count
    assert nonzero_macs(case, {"opcode": "GEMM", "unit": "fc1", "macs": 0,
                               "rows": tokens}) == tokens * np.count_nonzero(fc1)
    # after a token gather the FFN sees fewer rows
    assert nonzero_macs(case, {"opcode": "GEMM", "unit": "fc1", "macs": 0,
                               "rows": 5}) == 5 * np.count_nonzero(fc1)
    assert nonzero_macs(case, {"opcode": "ATTENTION_SCORES", "unit": "attention_scores",
                               "macs": 1234}) == 1234
    assert nonzero_macs(case, {"opcode": "SOFTMAX", "unit": "softmax", "macs": 0}) == 0


def test_dense_and_pruned_configs_must_share_the_engine():
    dense = load_config("tiny")
    pruned = dense.replace(name="pruned", hardware={"weight_buffer_depth": 512})
    check_same_engine(dense, pruned)                 # buffer depths may differ
    other = dense.replace(name="other", hardware={"array_cols": 8})
    with pytest.raises(DemoFailed, match="config 'other' has array_cols 8, the dense model's "
                                         "'tiny' 4: not the same engine"):
        check_same_engine(dense, other)
