"""The whole digits BERT on the RTL (``bench.bert_whole``): the engine sized from a BERT, the
inert FFN padding to whole blocks, the host's tanh and classifier; and (slow) a random pruned
BERT, a head and FFN neurons removed, run whole on that engine with logits ``==`` the integer
model's."""

import numpy as np
import pytest
import torch

from bench.bert_whole import engine_config, pad_ffn, run_whole
from sw.config import load_config
from sw.golden.bert_int import quantize_bert
from sw.models import build_small_bert, small_bert_config
from sw.pruning.surgery import prune_ffn, prune_heads


def pruned_bert(ffn: int = 20, *, seed: int = 0):
    """A random small BERT (hidden 64, 4 heads of 16, 2 layers) with ``ffn`` FFN neurons in
    layer 0 and ``ffn - 3`` in layer 1 and head 1 of layer 0 removed (``sw.pruning.surgery``),
    and 20 sequences of 12 tokens."""
    torch.manual_seed(seed)
    config = small_bert_config(intermediate_size=ffn)
    config.initializer_range = 0.1
    model = build_small_bert(config).eval()
    prune_heads(model, 0, [1])
    prune_ffn(model, 1, [0, 5, 9])
    ids = torch.randint(4, 21, (20, 12), generator=torch.Generator().manual_seed(seed + 1))
    ids[:, 0], ids[:, -1] = 2, 3
    return model, ids


def test_the_engine_takes_the_berts_shape_on_tinys_array():
    model, _ = pruned_bert(20)
    config = engine_config(model, tokens=12)
    tiny = load_config("tiny")
    m, hw = config.model, config.hardware
    assert (m.hidden_size, m.num_heads, m.head_dim, m.ffn_size, m.tokens, m.layers, m.norm) == (
        64, 4, 16, 24, 12, 2, "post")                  # FFN 20 rounded up to 8 x 8 blocks
    assert (hw.array_rows, hw.array_cols, hw.block_rows, hw.block_cols) == (4, 4, 8, 8)
    assert (hw.act_buffer_depth, hw.out_buffer_depth) == (12 * 64 // 4, 12 * 64 // 4)
    assert hw.weight_buffer_depth == 64 * 24 // 4      # a dense FFN weight
    assert hw.softmax_lanes == tiny.hardware.softmax_lanes
    with pytest.raises(ValueError, match=r"^Tokens must be a positive integer, not 0$"):
        engine_config(model, tokens=0)
    with pytest.raises(ValueError, match=r"^needs a BertForSequenceClassification with a "
                                         r"pooler, not Linear$"):
        engine_config(torch.nn.Linear(2, 2), tokens=12)


def test_inert_ffn_padding_leaves_the_float_and_integer_model_unchanged():
    model, ids = pruned_bert(20)
    before = [p.detach().clone() for p in model.parameters()]
    padded, added = pad_ffn(model, 8)
    assert added == [4, 7]
    assert [layer.intermediate.dense.out_features for layer in padded.bert.encoder.layer] == [
        24, 24]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # a copy
    with torch.no_grad():
        assert torch.equal(padded(input_ids=ids).logits, model(input_ids=ids).logits)
    integer = quantize_bert(padded, ids[:16], progress=False)
    plain = quantize_bert(model, ids[:16], progress=False)
    assert [layer.fc1.weight.shape[0] for layer in integer.layers] == [24, 24]
    assert np.array_equal(integer.logits(ids[16:]), plain.logits(ids[16:]))
    assert pad_ffn(padded, 8)[1] == [0, 0]
    with pytest.raises(ValueError, match=r"^FFN step must be a positive integer, not 0$"):
        pad_ffn(model, 0)


@pytest.mark.slow
@pytest.mark.sim
def test_a_pruned_bert_runs_whole_with_logits_equal_to_the_integer_model(tmp_path):
    """Layer 0 keeps 3 of 4 heads, its 20 FFN neurons and layer 1's 17 padded to 24: two 12-token
    sequences on the engine of their shape, pooler and logits ``==``, cycles the model's."""
    model, ids = pruned_bert(20)
    padded, _ = pad_ffn(model, 8)
    integer = quantize_bert(padded, ids[:16], progress=False)
    assert [len(layer.kept_heads) for layer in integer.layers] == [3, 4]
    config = engine_config(model, tokens=12, name="bert_whole_test")
    labels = integer.logits(ids[16:18]).argmax(-1)
    document = run_whole(config, integer, ids[16:18], labels, tmp_path)
    assert document["sequences"] == 2
    assert document["logits_bit_exact"] and document["pooled_bit_exact"]
    assert document["cycles_equal_model"]
    assert document["cycles_per_sequence"] == document["model_cycles_per_sequence"]
    assert list(document["stage_cycles"]) == ["embedding_layernorm", "layer0", "layer1",
                                              "pooler"]
    assert document["top1_rtl"] == document["top1_integer"] == 1.0
