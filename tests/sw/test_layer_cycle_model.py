"""Tests of the per-unit encoder-layer cycle model."""

import numpy as np
import pytest

from sw.config import load_config
from sw.cycle_model.gemm import gemm_cycles
from sw.cycle_model.weight_stream import StreamParams, streamed_gemm_cycles
from sw.engine_params import EngineParams
from sw.cycle_model.layer import LayerPruning, layer_cycles, main, spread_mask
from sw.cycle_model.layer_engine import (DISPATCH_CYCLES, FIRST_BEAT_DELAY,
                                         EPILOGUE_LATENCY, GEMM_HANDSHAKE_CYCLES, gather_cycles)
from sw.image.program import Buffer, Instruction, Opcode, gather_arg2
from sw.cycle_model.token_gather import TokenGatherJob, token_gather_cycles
from sw.cycle_model.units import layernorm_cycles, softmax_cycles, unit_timings

DEIT_B = load_config("deit_b16")
TINY = load_config("tiny")
WEIGHT_UNITS = ("q", "k", "v", "o", "fc1", "fc2")
HEAD_UNITS = ("attention_scores", "softmax", "attention_context")


def pruned(config, **changes):
    base = LayerPruning.dense(config)
    fields = dict(kept_heads=base.kept_heads, kept_ffn=base.kept_ffn, tokens=base.tokens,
                  kept_tokens=base.kept_tokens, block_density=base.block_density)
    return LayerPruning(**{**fields, **changes})


def test_weight_gemms_are_the_gemm_engine_model():
    hw, m = DEIT_B.hardware, DEIT_B.model
    cycles = layer_cycles(DEIT_B, LayerPruning.dense(DEIT_B))
    qkv = gemm_cycles(array_rows=16, array_cols=16, block_rows=32, block_cols=32, tokens=197,
                      block_mask=np.ones((768 // 32, 768 // 32), dtype=bool))
    fc = gemm_cycles(array_rows=16, array_cols=16, block_rows=32, block_cols=32, tokens=197,
                     block_mask=np.ones((3072 // 32, 768 // 32), dtype=bool))
    assert (hw.block_rows, m.hidden_size, m.ffn_size) == (32, 768, 3072)
    # each GEMM instruction: fetch, decode, job hand-shake, the engine's own cycles and the
    # epilogue's latency (GELU and the residual adds cost nothing else); the
    # weights stream at 16 bytes a cycle, far more than a 197-cycle tile period needs, so the
    # memory adds only the first tiles' fetch latency to the resident engine's cycles
    overhead = DISPATCH_CYCLES + GEMM_HANDSHAKE_CYCLES + EPILOGUE_LATENCY
    exposed = 24
    for unit in ("q", "k", "v", "o"):
        assert cycles.units[unit] == qkv.total + overhead + exposed
    assert cycles.units["fc1"] == cycles.units["fc2"] == fc.total + overhead + exposed


def test_special_units_follow_their_throughput_contract():
    m = DEIT_B.model
    cycles = layer_cycles(DEIT_B, LayerPruning.dense(DEIT_B))
    softmax, _, layernorm = unit_timings(DEIT_B)
    streamed = DISPATCH_CYCLES + FIRST_BEAT_DELAY - 1      # reader start to first beat
    affine = -(-768 // layernorm.lanes) + 1                 # gamma / beta into the unit
    assert cycles.units["layernorm1"] == streamed + affine + layernorm_cycles(
        layernorm, rows=197, length=768).total
    assert cycles.units["softmax"] == m.num_heads * (streamed + softmax_cycles(
        softmax, rows=197, length=197).total)
    # one element per lane per cycle once rows overlap: within 3 % of the beats (softmax at 8
    # lanes: 25-beat rows, and its 127-cycle latency is not all hidden)
    ln_beats = 197 * -(-768 // layernorm.lanes)
    sm_beats = 197 * -(-197 // softmax.lanes)
    assert ln_beats <= cycles.units["layernorm1"] <= 1.03 * ln_beats
    assert sm_beats <= cycles.units["softmax"] / m.num_heads <= 1.03 * sm_beats
    assert "gelu" not in cycles.units and "residual_attention" not in cycles.units
    assert cycles.units["token_gather"] == 0


def test_dense_macs():
    m = DEIT_B.model
    t, d, f = m.tokens, m.hidden_size, m.ffn_size
    expected = t * (4 * d * d + 2 * d * f) + m.num_heads * 2 * t * t * m.head_dim
    assert layer_cycles(DEIT_B, LayerPruning.dense(DEIT_B)).macs == expected


def test_head_removal_shrinks_only_attention_units():
    dense = layer_cycles(DEIT_B, LayerPruning.dense(DEIT_B)).units
    fewer = layer_cycles(DEIT_B, pruned(DEIT_B, kept_heads=6)).units
    for unit in dense:
        if unit in ("q", "k", "v", "o") or unit in HEAD_UNITS:
            assert fewer[unit] < dense[unit], unit
        else:
            assert fewer[unit] == dense[unit], unit
    for unit in HEAD_UNITS:
        assert fewer[unit] * 2 == dense[unit]


def test_block_density_shrinks_only_weight_gemms():
    dense = layer_cycles(DEIT_B, LayerPruning.dense(DEIT_B)).units
    sparse = layer_cycles(DEIT_B, pruned(DEIT_B, block_density=0.25)).units
    for unit in dense:
        assert (sparse[unit] < dense[unit]) == (unit in WEIGHT_UNITS), unit


def test_token_pruning_shrinks_everything_after_the_gather():
    dense = layer_cycles(DEIT_B, LayerPruning.dense(DEIT_B)).units
    kept = layer_cycles(DEIT_B, pruned(DEIT_B, kept_tokens=138)).units
    after = ("layernorm2", "fc1", "fc2")
    for unit in dense:
        if unit in after:
            assert kept[unit] < dense[unit], unit
        elif unit == "token_gather":
            # CLS + 136 candidates + the fused token: the unit's own model with its output
            # taken one cycle in 48 (each row goes back as 48 vectors), plus the loads
            gather = Instruction(Opcode.TOKEN_GATHER, Buffer.RESIDUAL1, Buffer.RESIDUAL1,
                                 arg=138, arg2=gather_arg2(1, True))
            total, vectors = gather_cycles(DEIT_B, gather, 197)
            assert vectors == 48
            assert total > token_gather_cycles(
                TokenGatherJob(tokens=197, keep=136, protected=1, fuse=True), heads=12,
                width=768).total
            assert kept[unit] == (DISPATCH_CYCLES + 197 + 197 * 48 + 2 + total + 48)
        else:
            assert kept[unit] == dense[unit], unit


def test_explicit_masks_override_the_density():
    mask = np.zeros((3072 // 32, 768 // 32), dtype=bool)
    mask[0, 0] = True
    cycles = layer_cycles(DEIT_B, LayerPruning(kept_heads=12, kept_ffn=3072, tokens=197,
                                               kept_tokens=197, masks={"fc1": mask}))
    assert cycles.units["fc1"] == streamed_gemm_cycles(
        array_rows=16, array_cols=16, block_rows=32, block_cols=32, tokens=197, block_mask=mask,
        stream=StreamParams.of(EngineParams.from_config(DEIT_B))).total \
        + DISPATCH_CYCLES + GEMM_HANDSHAKE_CYCLES + EPILOGUE_LATENCY


@pytest.mark.parametrize("rows,cols,density", [(4, 6, 0.5), (96, 24, 0.1), (3, 5, 0.0),
                                               (7, 3, 1.0), (10, 10, 0.05)])
def test_spread_mask(rows, cols, density):
    mask = spread_mask(rows, cols, density)
    per_row = mask.sum(axis=1)
    assert mask.sum() == round(density * rows * cols)
    assert per_row.max() - per_row.min() <= 1


@pytest.mark.parametrize("changes,message", [
    (dict(kept_heads=13), r"kept_heads \(13\) must lie in 1..12"),
    (dict(kept_ffn=3000), r"kept_ffn \(3000\) must be a multiple of the 32x32 block"),
    (dict(kept_tokens=198), r"kept_tokens \(198\) must lie in 1..197"),
    (dict(block_density=1.5), r"block_density \(1.5\) must lie in 0..1"),
    (dict(masks={"q": np.ones((2, 2), dtype=bool)}), r"mask of q has shape \(2, 2\), "
                                                     r"expected \(24, 24\)"),
])
def test_bad_pruning_is_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        layer_cycles(DEIT_B, pruned(DEIT_B, **changes))


def test_command_prints_the_breakdown(capsys):
    assert main(["--config", "tiny", "--kept-heads", "2", "--density", "0.5",
                 "--keep-rate", "0.7", "--kept-ffn", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "pruned: 2/4 heads, 64/128 FFN neurons, block density 0.50, tokens 17 -> 12" in out
    assert out.splitlines()[-2].startswith("total")


def test_command_rejects_unknown_preset(capsys):
    assert main(["--config", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown preset 'nope'")


@pytest.mark.parametrize("arguments, message", [
    (["--kept-heads", "0"], "--kept-heads must lie in 1..4 (the config's num_heads), not 0"),
    (["--kept-heads", "5"], "--kept-heads must lie in 1..4 (the config's num_heads), not 5"),
    (["--keep-rate", "nan"], "--keep-rate must lie in (0, 1], not nan"),
    (["--keep-rate", "0"], "--keep-rate must lie in (0, 1], not 0"),
    (["--density", "nan"], "--density must lie in 0..1, not nan"),
    (["--kept-ffn", "nan"], "--kept-ffn must be a fraction in (0, 1] or a neuron count in "
                            "2..128, not nan"),
    (["--kept-ffn", "-5"], "--kept-ffn must be a fraction in (0, 1] or a neuron count in "
                           "2..128, not -5"),
    (["--kept-ffn", "96.5"], "--kept-ffn must be a fraction in (0, 1] or a neuron count in "
                             "2..128, not 96.5"),
    (["--kept-ffn", "0.01"], "--kept-ffn 0.01 keeps no whole block of 8 of the 128 FFN "
                             "neurons"),
])
def test_command_rejects_bad_options_in_one_line(capsys, arguments, message):
    """``--kept-heads 0`` meant all heads, NaN gave tracebacks, ``--kept-ffn -5`` was reported
    as -640 (issue 14, item 13)."""
    assert main(["--config", "tiny", *arguments]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"error: {message}\n")


def test_command_rejects_a_config_the_layer_engine_cannot_build(tmp_path, capsys):
    """``layernorm_lanes 3``, which ``hw.generate`` rejects, was accepted: both now ask
    ``AcceleratorConfig.check_layer_engine``."""
    path = tmp_path / "three.json"
    TINY.replace(name="three", hardware={"layernorm_lanes": 3}).save(path)
    assert main(["--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        "error: config 'three': the layer engine needs layernorm_lanes (3) to divide "
        "array_cols (4): a unit takes whole scratchpad vectors of array_cols values in beats "
        "of its lanes\n")
    with pytest.raises(ValueError, match="the layer engine needs layernorm_lanes"):
        layer_cycles(load_config(path), LayerPruning.dense(TINY))


def test_command_takes_a_whole_neuron_count(capsys):
    assert main(["--config", "tiny", "--kept-ffn", "64"]) == 0
    assert "64/128 FFN neurons" in capsys.readouterr().out
