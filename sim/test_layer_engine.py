"""Whole encoder layers through the layer engine's RTL: bit-exact to the golden layer, every
instruction's cycles equal to the cycle model (cocotb + Verilator, ``tiny`` preset)."""

import dataclasses

import numpy as np
import pytest

from hw.generate import verilog_text
from sim.encoder_replay import (bert_cases, encoder_cases, measure_encoder, model_cases,
                                replay_encoders, stage_cases, synthetic_encoder)
from sim.harness import build
from sim.layer_replay import BENCH_PRUNING, bench_cases, model_cycles, replay, synthetic_case
from sw.image.export import ExportRequest, export, write
from sw.image.loader import load_image
from sw.config import load_config
from sw.cycle_model.gemm import gemm_cycles
from sw.golden.model_stages import embedding_int, head_int, model_int
from sw.golden.token_select import TokenPruning
from sw.image.program import layer_program
from sw.isa import Opcode
from sw.synthetic_deit import save_pruned_deit

pytestmark = pytest.mark.sim


def assert_bit_and_cycle_exact(results):
    """Every replayed layer equals the golden layer and every instruction's cycles the model."""
    for result in results:
        assert result["bit_exact"], result["name"]
        assert result["cycles"] == result["model_cycles"], result["name"]
        for entry in result["instructions"]:
            assert entry["cycles"] == entry["model_cycles"], (result["name"], entry)


def test_tiny_layers_dense_and_pruned(tmp_path):
    config = load_config("tiny")
    cases = [
        synthetic_case(config, kept_heads=range(4), kept_ffn=128, density=1.0, seed=0),
        synthetic_case(config, kept_heads=[0, 2, 3], kept_ffn=64, density=0.5, seed=1),
        synthetic_case(config, kept_heads=[1], kept_ffn=32, density=0.25, seed=2),
        # token pruning after attention: 2 protected + 9 kept + the fused token; and dropped
        synthetic_case(config, kept_heads=[0, 3], kept_ffn=64, density=0.5, seed=3,
                       token_pruning=TokenPruning(keep=9, protected=2, fuse=True)),
        synthetic_case(config, kept_heads=[0, 1, 2, 3], kept_ffn=128, density=1.0, seed=4,
                       token_pruning=TokenPruning(keep=6, protected=1, fuse=False)),
    ]
    results = replay(build(config, "layer_engine"), cases, tmp_path)
    assert_bit_and_cycle_exact(results)
    # the pruned layers are faster; a gather shrinks everything after it
    assert results[0]["cycles"] > results[1]["cycles"] > results[2]["cycles"]
    assert results[4]["cycles"] < results[0]["cycles"]
    gathers = [e for r in results[3:] for e in r["instructions"] if e["unit"] == "token_gather"]
    assert len(gathers) == 2


def test_tiny_post_ln_layers_run_on_the_same_engine(tmp_path):
    """BERT's post-LN layer (``norm: "post"``) is a program, not a different engine: the same
    tiny build runs it, bit-exact and cycle-exact, its int8 layer input and output in the
    residual stream's buffers."""
    tiny = load_config("tiny")
    config = dataclasses.replace(tiny, model=dataclasses.replace(tiny.model, norm="post"))
    verilog = verilog_text(tiny, "layer_engine")
    assert verilog_text(config, "layer_engine") == verilog
    cases = [
        synthetic_case(config, kept_heads=range(4), kept_ffn=128, density=1.0, seed=7),
        synthetic_case(config, kept_heads=[1, 2], kept_ffn=64, density=0.5, seed=8,
                       token_pruning=TokenPruning(keep=9, protected=1, fuse=True)),
    ]
    # a sequence at its true length: 11 of the engine's 17 rows, no padding or mask (issue 19)
    short = cases[0]
    cases.append(dataclasses.replace(
        short, name="tiny_post_11_tokens", x=short.x[:11],
        program=layer_program(short.layer.kept_heads, tokens=11, token_keep=11, norm="post")))
    assert all(case.layer.norm == "post" and case.program[0].opcode == Opcode.GEMM
               for case in cases)
    results = replay(build(tiny, "layer_engine", verilog=verilog), cases, tmp_path)
    assert_bit_and_cycle_exact(results)
    for result in results:
        units = [entry["unit"] for entry in result["instructions"]]
        assert units[:3] == ["q", "k", "v"] and units[-1] == "control"
        assert units.index("layernorm1") > units.index("o") and units[-2] == "layernorm2"
    assert results[2]["cycles"] < results[0]["cycles"]          # 11 rows cost less than 17


def test_tiny_encoders_run_chained_with_their_rows_shrinking(tmp_path):
    """Four random tiny layers (2 of 4 heads, half the blocks) chained on one engine, only the
    first input loaded; layers 1 and 2 gather tokens (17 -> 14 -> 12 rows), so each later
    layer starts on the rows the one before it kept. Pre-LN (DeiT) and post-LN (BERT) chains in
    one run of the same build: every layer bit-exact and every instruction cycle-exact."""
    tiny = load_config("tiny")
    pruning = {"kept_heads": (0, 3), "density": 0.5, "keep_rate": 0.7, "protected": 2,
               "seed": 11}
    chains = []
    for norm in ("pre", "post"):
        config = dataclasses.replace(tiny, model=dataclasses.replace(tiny.model, norm=norm))
        chains.append(synthetic_encoder(config, pruning, layers=4, gather_layers=(1, 2),
                                        name=f"tiny_{norm}"))
        assert [case.x.shape[0] for case in chains[-1]] == [17, 17, 14, 12]
        assert [case.chained for case in chains[-1]] == [False, True, True, True]
    runs = replay_encoders(build(tiny, "layer_engine", verilog=verilog_text(
        tiny, "layer_engine")), chains, tmp_path)
    assert [run.name for run in runs] == ["tiny_pre", "tiny_post"]
    for run in runs:
        assert_bit_and_cycle_exact(run.layers)
        assert run.bit_exact and run.cycle_exact and run.output.shape == (12, 64)
        assert [r["input_loaded"] for r in run.layers] == [True, False, False, False]


def test_an_exported_digits_shaped_deit_runs_whole_on_chip(tmp_path):
    """The digits DeiT's topology (32 px images in 4 px patches: 66 tokens, hidden 64, 4 heads,
    FFN 128, 2 layers) with random weights, heads, FFN neurons and blocks removed and token
    pruning at keep rate 0.7 in both layers: export it, load the image from its bytes, generate
    the engine from its params.json and run the whole encoder for two images, only layer 0's
    input loaded: layer 1 runs on the 48 rows layer 0 left in the scratchpad. Every layer is
    bit-exact and cycle-exact, and the logits from the RTL's last output are the integer
    model's. (``make demo`` runs the trained digits DeiT so.)"""
    model_dir = save_pruned_deit(tmp_path / "run", removed_heads={0: [1], 1: [0, 3]},
                                 removed_neurons={0: list(range(37)), 1: list(range(0, 80, 2))},
                                 block_density=0.5, image_size=32,
                                 tokens={"keep_rate": 0.7, "layers": [0, 1], "fuse": True,
                                         "warmup": True, "protected": 2})
    state = export(ExportRequest(model_dir=model_dir, config="tiny", name="digits_shaped",
                                 calibration_images=8))
    write(state, tmp_path / "image")
    image = load_image(tmp_path / "image" / "weights.bin")
    config = load_config(tmp_path / "image" / "params.json")
    assert config == image.config and config.model.tokens == 66
    pixels = state.calibration[:2]
    integer = state.integer_model
    # per image, the encoder alone (layer 0's input loaded) and the whole model, image in and
    # int8 logits out (the embedding program, both layers and the head program; only the
    # patch rows and the position table loaded), in one run of one build
    chains = encoder_cases(image, integer.embed(pixels))
    chains += model_cases(image, pixels)
    runs = replay_encoders(build(config, "layer_engine"), chains, tmp_path / "sim")
    runs, models = runs[:2], runs[2:]
    assert [[r["name"] for r in run.layers] for run in runs] == [
        [f"digits_shaped.input{n}.layer0", f"digits_shaped.input{n}.layer1"] for n in (0, 1)]
    for run in runs:
        assert_bit_and_cycle_exact(run.layers)
        assert run.bit_exact and run.cycle_exact and run.output.shape == (36, 64)
        assert [r["input_loaded"] for r in run.layers] == [True, False]
        # the second layer's load is its constants only: fewer words than the first's
        assert 0 < run.layers[1]["load_words"] < run.layers[0]["load_words"]
    assert np.array_equal(integer.head(np.stack([run.output for run in runs])),
                          integer.logits(pixels, token_pruning=state.token_pruning))
    for run in models:
        assert_bit_and_cycle_exact(run.layers)
        assert [r["name"].rsplit(".", 1)[1] for r in run.layers] == [
            "embedding", "layer0", "layer1", "head"]
        assert [r["input_loaded"] for r in run.layers] == [False] * 4
        assert run.output.shape == (1, 16) and run.bit_exact
        units = [[e["unit"] for e in r["instructions"]] for r in run.layers]
        assert units[0] == ["patch_embedding", "control"]
        assert units[-1] == ["final_layernorm", "classifier", "control"]
        # the slots that hold the stages on this engine (attention width 64): O and Q
        assert [[e.get("role") for e in r["instructions"] if e["opcode"] == "GEMM"]
                for r in (run.layers[0], run.layers[-1])] == [["o"], ["q"]]
        # the head runs on one row, the class token's: a fraction of a layer's cycles
        assert run.layers[-1]["cycles"] < run.layers[1]["cycles"] // 10
    # the logits are the whole integer model's, computed from the torch model's quantization
    # by the stage functions (not the image's programs)
    assert np.array_equal(np.concatenate([run.output for run in models]),
                          model_int(integer, state.embedding, state.head, pixels,
                                    token_pruning=state.token_pruning))
    # heads removed in the image are never run: 3 and 2 attention head slots
    heads = [sum(e["unit"] == "attention_scores" for e in r["instructions"])
             for r in runs[0].layers]
    assert heads == [3, 2]
    # each layer gathers: 66 -> 48 -> 36 token rows, as the tokens benchmark's keep 0.7
    assert [(layer.tokens, layer.token_keep) for layer in image.layers] == [(66, 48), (48, 36)]
    assert all(any(e["unit"] == "token_gather" for e in r["instructions"])
               for r in runs[0].layers)


def test_a_whole_tiny_bert_runs_on_chip(tmp_path):
    """A random tiny BERT (hidden 64, 4 heads, FFN 128, 2 post-LN layers), two 12-token
    sequences on the 17-token tiny engine: the embedding LayerNorm program (the host's int16
    embedding sum loaded), both layers and the pooler program (row count 1) chained on chip,
    every program bit-exact and cycle-exact, the int8 pooler output equal to the integer
    BERT's (``sw.golden.bert_int``; tanh and the classifier stay on the host)."""
    import torch
    from sw.golden.bert_int import quantize_bert
    from sw.models import build_small_bert, small_bert_config
    torch.manual_seed(0)
    config = small_bert_config(num_layers=2)
    config.initializer_range = 0.1
    model = build_small_bert(config).eval()
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 21, (18, 12), generator=generator)
    ids[:, 0], ids[:, -1] = 2, 3
    integer = quantize_bert(model, ids[:16], progress=False)
    tiny = load_config("tiny")
    post = dataclasses.replace(tiny, model=dataclasses.replace(tiny.model, norm="post"))
    chains = bert_cases(post, integer, ids[16:])
    runs = replay_encoders(build(tiny, "layer_engine", verilog=verilog_text(
        tiny, "layer_engine")), chains, tmp_path)
    for run in runs:
        assert_bit_and_cycle_exact(run.layers)
        assert [r["name"].rsplit(".", 1)[1] for r in run.layers] == [
            "embedding_layernorm", "layer0", "layer1", "pooler"]
        assert [r["input_loaded"] for r in run.layers] == [False] * 4
        units = [[e["unit"] for e in r["instructions"]] for r in run.layers]
        assert units[0] == ["embedding_layernorm", "control"]
        assert units[-1] == ["pooler", "control"]
    assert np.array_equal(np.concatenate([run.output for run in runs]),
                          integer.pooled(ids[16:]))


def test_stage_programs_in_their_other_tensor_slots(tmp_path):
    """Random stages too wide for the first slots on the tiny engine (attention width 64, FFN
    128): 96 patch features put the embedding in FC2's slot (rows in GELU), 80 classes the
    head in FC1's (LN2 -> GELU). Embedding then head, chained, both bit- and cycle-exact."""
    from sw.golden.kernels import residual_constants
    from sw.golden.model_stages import IntegerEmbedding, IntegerHead, stage_role
    from sw.golden.synthetic_layer import INT8_SCALE, RESIDUAL_SCALE, synthetic_layer
    from sw.quantize.linear import quantize_linear
    tiny = load_config("tiny")
    rng = np.random.default_rng(5)
    template = synthetic_layer(hidden=64, head_dim=16, heads=4, ffn=128, kept_heads=range(4),
                               kept_ffn=128, block=(8, 8), density=1.0)
    embedding = IntegerEmbedding(
        patch_size=4, channels=6, protected=2, patch_scale=INT8_SCALE,
        linear=quantize_linear(rng.normal(0, 96 ** -0.5, (64, 96)), rng.normal(0, 0.1, 64),
                               input_scale=INT8_SCALE, output_scale=INT8_SCALE),
        position=rng.integers(-4000, 4000, (17, 64)),
        residual=residual_constants(RESIDUAL_SCALE, INT8_SCALE, RESIDUAL_SCALE,
                                    in_width=16, out_width=16))
    head = IntegerHead(final_layernorm=template.ln1, classes=80, logit_scale=INT8_SCALE,
                       classifier=quantize_linear(rng.normal(0, 0.125, (80, 64)),
                                                  rng.normal(0, 0.1, 80),
                                                  input_scale=INT8_SCALE,
                                                  output_scale=INT8_SCALE))
    assert (stage_role(embedding, tiny), stage_role(head, tiny)) == ("fc2", "fc1")
    patches = rng.integers(-127, 128, (17, 96))
    patches[:2] = 0
    x = embedding_int(patches, embedding)
    chain = list(stage_cases(tiny, embedding, head, patches, x, template=template,
                             prefix="tiny_slots"))
    (run,) = replay_encoders(build(tiny, "layer_engine", verilog=verilog_text(
        tiny, "layer_engine")), [chain], tmp_path)
    assert_bit_and_cycle_exact(run.layers)
    assert [[e.get("role") for e in r["instructions"] if e["opcode"] == "GEMM"]
            for r in run.layers] == [["fc2"], ["fc1"]]
    assert np.array_equal(run.output, head_int(x, head)) and run.output.shape == (1, 80)


def test_a_random_whole_model_measures_like_the_benchmark(tmp_path):
    """``measure_encoder(stages=...)``, the deit_b16 benchmark's whole model, on the tiny
    engine: a random patch embedding and head around two pruned layers (the first gathering
    tokens), chained in one run; every program exact, and the image's cycles are the stages'
    and the layers' together."""
    pruning = {**BENCH_PRUNING, "kept_heads": (0, 2, 3)}
    document = measure_encoder(load_config("tiny"), pruning, gather_layers=(0,),
                               work_dir=tmp_path, layers=2,
                               stages={"channels": 3, "patch_size": 4, "classes": 10,
                                       "protected": 2})
    assert document["bit_exact"] and document["cycles_equal_model"]
    assert document["tokens_per_layer"] == [[17, 14], [14, 14]]
    assert (document["classes"], document["patch_features"]) == (10, 48)
    assert document["cycles_pruned"] == sum(document["cycles_per_layer"]) + sum(
        document["stage_cycles"].values())
    assert document["speedup"] > 1 and document["mac_reduction"] > 1


@pytest.mark.slow
def test_deit_b16_pruned_layer(tmp_path):
    """The benchmark's pruned deit_b16 layer (7 of 12 heads, 30 % blocks, keep rate 0.7):
    bit-exact, cycle-exact, the array busy >= 80 % of the layer, and a speed-up over the dense
    layer's cycles (the cycle model, which the benchmark's dense replay checks) of at least
    0.8 x the MAC reduction."""
    config = load_config("deit_b16")
    dense, pruned = bench_cases(config)
    result, = replay(build(config, "layer_engine"), [pruned], tmp_path)
    assert result["bit_exact"] and result["cycles"] == result["model_cycles"]
    dense_model = model_cycles(config, dense)
    dense_cycles = sum(e.cycles for e in dense_model)
    dense_macs = sum(e.macs for e in dense_model)
    macs = sum(e["macs"] for e in result["instructions"])
    utilization = macs / 256 / result["cycles"]
    assert utilization >= 0.80
    assert dense_cycles / result["cycles"] >= 0.8 * dense_macs / macs


@pytest.mark.slow
def test_deit_b16_whole_pruned_model(tmp_path):
    """Issue 18's full-size check: a random whole DeiT-B, image in and int8 logits out, its
    twelve layers pruned as the benchmark says (7 of 12 heads, 30 % blocks; tokens kept 0.7
    after layers 3, 6 and 9) and its patch embedding (196 rows of 768 features) and head (1,000
    classes) as the embedding and head programs, chained on the deit_b16 engine, only the patch
    rows and the position table loaded: every program bit-exact and cycle-exact, and the whole
    model's speed-up over the dense one (cycle model) at least 0.9 x its MAC reduction
    (``bench.model``'s deit_b16 part; about 20 min on 2 cores)."""
    document = measure_encoder(load_config("deit_b16"), BENCH_PRUNING,
                               gather_layers=(3, 6, 9), work_dir=tmp_path,
                               stages={"channels": 3, "patch_size": 16, "classes": 1000,
                                       "protected": 1})
    assert document["layers"] == 12 and document["bit_exact"]
    assert set(document["stage_cycles"]) == {"embedding", "head"}
    assert document["cycles_equal_model"]
    assert document["tokens_per_layer"][3] == [197, 140]
    assert document["speedup"] >= 0.9 * document["mac_reduction"]


def _starved_config():
    """``tiny`` with 6 tokens (a 6-cycle tile period), bursts of 4 words, one in flight and a
    stream buffer of one tile and one burst: the array waits for the memory all the time."""
    import dataclasses
    config = load_config("tiny")
    hw = dataclasses.replace(config.hardware, axi_burst_beats=4, axi_max_outstanding=1,
                             weight_stream_bytes=(4 + 4) * 4)
    model = dataclasses.replace(config.model, tokens=6)
    return dataclasses.replace(config, name="tiny_starved", model=model, hardware=hw)


def test_a_starved_weight_stream_is_cycle_exact_and_bounded_with_pauses(tmp_path):
    """The fetcher's credits and the tile boundaries' waits against the model, exactly; then the
    same layers with the AXI RAM pausing AR and R at random: still bit-exact, cycles between the
    model's and the model's plus the pauses."""
    config = _starved_config()
    cases = [synthetic_case(config, kept_heads=range(4), kept_ffn=128, density=1.0, seed=5),
             synthetic_case(config, kept_heads=[1, 2], kept_ffn=64, density=0.5, seed=6)]
    design = build(config, "layer_engine")
    exact = replay(design, cases, tmp_path / "exact")
    for result in exact:
        assert result["bit_exact"] and result["cycles"] == result["model_cycles"]
    # the case does starve: the dense q waits for the memory in most tile periods
    hw = config.hardware
    resident = gemm_cycles(array_rows=4, array_cols=4, block_rows=hw.block_rows,
                           block_cols=hw.block_cols, tokens=6,
                           block_mask=np.ones((64 // 8, 64 // 8), bool))
    q = next(e for e in exact[0]["instructions"] if e["unit"] == "q")
    assert q["cycles"] - 4 > resident.total + resident.tiles // 2
    paused = replay(design, cases, tmp_path / "paused", pause_seed=7)
    for before, after in zip(exact, paused):
        assert after["bit_exact"]
        assert after["pause_cycles"] > 0
        assert before["cycles"] < after["cycles"] <= before["cycles"] + after["pause_cycles"]
