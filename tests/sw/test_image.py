"""Weight image round trip: export a tiny pruned DeiT, load the bytes, compare with the golden
model field by field and output by output; determinism; atomic output; params.json."""

import dataclasses
import json
import zlib

import numpy as np
import pytest

from hw.generate import main as generate_main
from sw.config import load_config
from sw.golden.encoder_layer import encoder_layer_int
from sw.golden.layer_program import run_layer_program
from sw.image.export import ExportError, ExportRequest, export, verify, write
from sw.image.format import (FILE_CRC_OFFSET, HEADER_FIELDS, HEADER_SIZE, MAGIC, TENSOR_ROLES,
                             SectionKind)
from sw.image.golden import encode, integer_layer
from sw.image.loader import load_image, parse_image
from sw.golden.synthetic_layer import synthetic_input, synthetic_layer
from sw.golden.token_select import TokenPruning
from sw.image.program import Buffer, Opcode, gather_fields, layer_program
from sw.image.summary import summary_table
from sw.packing import fields_size, pack_stream_weights
from sw.synthetic_deit import save_pruned_deit

REMOVED_HEADS = {0: [1], 1: [0, 3]}
REMOVED_NEURONS = {0: list(range(37)), 1: list(range(0, 80, 2))}


@pytest.fixture(scope="module")
def pruned_dir(tmp_path_factory):
    return save_pruned_deit(tmp_path_factory.mktemp("model") / "run",
                            removed_heads=REMOVED_HEADS, removed_neurons=REMOVED_NEURONS)


@pytest.fixture(scope="module")
def exported(pruned_dir):
    return export(ExportRequest(model_dir=pruned_dir, config="tiny", name="tiny_image",
                                calibration_images=16))


def test_header_constants_agree_with_the_layout():
    assert len(MAGIC) + fields_size(HEADER_FIELDS) <= HEADER_SIZE
    assert len(MAGIC) + fields_size(HEADER_FIELDS[:-1]) == FILE_CRC_OFFSET


def test_kept_units_padding_and_params(exported):
    image = exported.image
    assert [layer.kept_heads for layer in image.layers] == [(0, 2, 3), (1, 2)]
    # layer 0 keeps 91 neurons: 5 removed (inert) ones pad it to 96, a multiple of the 8x8 block
    assert [len(layer.kept_ffn) for layer in image.layers] == [96, 88]
    assert [layer.ffn_padding for layer in image.layers] == [5, 0]
    assert set(image.layers[0].kept_ffn) >= set(range(37, 128))
    config = exported.config
    assert config.name == "tiny_image"
    assert (config.model.hidden_size, config.model.num_heads, config.model.head_dim) == (64, 4, 16)
    assert config.model.ffn_size == 96 and config.model.tokens == 18 and config.model.layers == 2
    assert config.hardware.array_rows == 4 and config.hardware.block_rows == 8
    # the weight buffer holds the largest weight's stored blocks
    most = max(linear.weights.nnz_blocks for layer in image.layers
               for linear in layer.linears.values())
    assert config.hardware.weight_buffer_depth == most * 8 * 8 // 4
    assert image.config.to_json() == config.to_json()


def test_loaded_image_equals_the_integer_model(exported):
    image = parse_image(exported.data)
    reference = exported.integer_model
    assert image.model.input_scale == reference.input_scale
    assert image.model.final_scale == reference.final_scale
    assert np.array_equal(image.final_layernorm.gamma, reference.final_layernorm.gamma)
    for layer, expected in zip(image.layers, reference.layers):
        rebuilt = integer_layer(layer)
        assert rebuilt.kept_heads == expected.kept_heads
        assert rebuilt.kept_ffn == expected.kept_ffn
        assert rebuilt.scales == expected.scales
        for role in TENSOR_ROLES:
            found, wanted = getattr(rebuilt, role), getattr(expected, role)
            for name in ("weight", "bias", "multiplier", "shift", "weight_scale"):
                assert np.array_equal(getattr(found, name), getattr(wanted, name)), (role, name)
            assert (found.input_scale, found.output_scale) == (wanted.input_scale,
                                                               wanted.output_scale)
            stored = layer.linears[role]
            assert stored.weights.block_shape == (8, 8)
            assert stored.pruning_block_shape == (8, 8)
        for name in ("softmax", "residual1", "gelu", "residual2"):
            assert getattr(rebuilt, name) == getattr(expected, name)
        for name in ("ln1", "ln2"):
            for part in ("gamma", "beta"):
                assert np.array_equal(getattr(getattr(rebuilt, name), part),
                                      getattr(getattr(expected, name), part))
        assert (rebuilt.context_multiplier, rebuilt.context_shift) == (
            expected.context_multiplier, expected.context_shift)
        assert layer.program == layer_program(layer.kept_heads, tokens=18, token_keep=18)
    # some blocks really are skipped, some kept
    q = image.layers[0].linears["q"].weights
    assert 0 < q.nnz_blocks < q.grid[0] * q.grid[1]


def test_program_runs_exactly_the_golden_encoder_layer(exported):
    reference = exported.integer_model
    x = reference.embed(exported.calibration[:3])
    for layer in parse_image(exported.data).layers:
        integer = integer_layer(layer)
        expected_trace, found_trace = {}, {}
        expected = encoder_layer_int(integer, x, trace=expected_trace)
        found = run_layer_program(layer.program, integer, x, trace=found_trace)
        assert np.array_equal(found, expected)
        # the program's buffers, and the linears' outputs before the GEMM epilogues (the
        # golden layer's ATTN, FC1 and FC2)
        for name in ("ln1", "q", "k", "v", "context", "residual1", "ln2", "gelu", "output",
                     "fc1", "fc2"):
            assert np.array_equal(found_trace[name], expected_trace[name]), name
        assert np.array_equal(found_trace["o"], expected_trace["attn"])
        x = expected


def test_program_lists_every_kept_head_once():
    program = layer_program((0, 2, 5), tokens=10, token_keep=10)
    heads = [(i.arg, i.arg2) for i in program if i.opcode == Opcode.SOFTMAX]
    assert heads == [(0, 0), (1, 2), (2, 5)]
    assert [i.arg for i in program if i.opcode == Opcode.GEMM] == [0, 1, 2, 3, 4, 5]
    assert program[-1].opcode == Opcode.END
    assert not any(i.opcode == Opcode.TOKEN_GATHER for i in program)
    gathered = layer_program((0,), tokens=10, token_keep=6)
    gather = [i for i in gathered if i.opcode == Opcode.TOKEN_GATHER]
    assert len(gather) == 1 and gather[0].arg == 6 and gather[0].dst == Buffer.RESIDUAL1
    assert gather_fields(gather[0].arg2) == (1, True)


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("protected, fuse, keep", [(2, True, 8), (1, False, 5), (2, True, 1)])
def test_gather_program_is_the_golden_token_pruning(protected, fuse, keep, norm):
    """TOKEN_GATHER in a program does what the golden layer's token pruning does, and a
    post-LN (BERT) program computes the golden post-LN layer."""
    layer = synthetic_layer(hidden=32, head_dim=8, heads=4, ffn=64, kept_heads=[0, 2, 3],
                            kept_ffn=32, block=(8, 8), density=0.5, seed=3, norm=norm)
    x = synthetic_input(tokens=13, hidden=32, seed=3, norm=norm)
    pruning = TokenPruning(keep=keep, protected=protected, fuse=fuse)
    expected = encoder_layer_int(layer, x, token_pruning=pruning)
    program = layer_program(layer.kept_heads, tokens=13, token_keep=pruning.output_tokens(13),
                            protected=protected, fuse=fuse, norm=norm)
    found = run_layer_program(program, layer, x)
    assert found.shape == expected.shape and np.array_equal(found, expected)


def test_verify_finds_no_difference(exported):
    result = verify(exported)
    assert result["images"] == 16 and result["differences"] == 0
    assert all(layer["differences"] == 0 and layer["values"] == 16 * 18 * 64
               for layer in result["layers"])
    assert result["logits"] == {"values": 16 * 16, "differences": 0}
    assert 0 <= result["float_vs_whole_integer_top1_agreement"] <= 1


def test_the_image_holds_the_whole_model(exported):
    """The stages read back are the exporter's integer stages, their programs those of the
    slots that hold them, and the image's programs, image in and logits out, are the whole
    integer model; a changed classifier weight changes the logits (the check can fail)."""
    from sw.golden.model_stages import model_int
    from sw.image.golden import classify, integer_embedding, integer_head
    from sw.image.program import embedding_program, head_program
    image = parse_image(exported.data)
    embedding, head = integer_embedding(image), integer_head(image)
    assert np.array_equal(embedding.linear.weight, exported.embedding.linear.weight)
    assert np.array_equal(embedding.position, exported.embedding.position)
    assert embedding.residual == exported.embedding.residual
    assert embedding.patch_scale == exported.embedding.patch_scale
    assert np.array_equal(head.classifier.weight, exported.head.classifier.weight)
    assert np.array_equal(head.classifier.multiplier, exported.head.classifier.multiplier)
    assert (head.classes, head.logit_scale) == (exported.head.classes, exported.head.logit_scale)
    # the tiny engine's O slot holds the 64x48 patch linear, Q the 16x64 classifier
    assert image.embedding.program == embedding_program("o")
    assert image.head.program == head_program("q")
    pixels = exported.calibration[:6]
    logits = classify(image, pixels)
    assert logits.shape == (6, 16)
    assert np.array_equal(logits, model_int(exported.integer_model, exported.embedding,
                                            exported.head, pixels))
    blocks = image.head.linear.weights.blocks
    blocks[...] = np.where(blocks > 0, -127, 127)
    assert not np.array_equal(classify(image, pixels), logits)


def test_golden_from_image_detects_a_changed_weight(exported):
    """The verification can fail: one weight changed in the image changes the outputs."""
    image = parse_image(exported.data)
    x = exported.integer_model.embed(exported.calibration[:4])
    before = encode(image, x)
    blocks = image.layers[0].linears["v"].weights.blocks
    blocks[0] = np.where(blocks[0] > 0, -127, 127)
    assert not np.array_equal(encode(image, x), before)


def test_same_model_in_same_bytes_out(pruned_dir, exported, tmp_path):
    again = export(ExportRequest(model_dir=pruned_dir, config="tiny", name="tiny_image",
                                 calibration_images=16))
    assert again.data == exported.data
    write(exported, tmp_path / "a")
    write(again, tmp_path / "b")
    for name in ("weights.bin", "params.json", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_written_outputs(exported, tmp_path):
    out = tmp_path / "image"
    document = write(exported, out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "params.json",
                                                     "weights.bin"]
    data = (out / "weights.bin").read_bytes()
    assert data == exported.data
    assert load_config(out / "params.json").to_json() == exported.config.to_json()
    assert json.loads((out / "manifest.json").read_text()) == document
    assert document["image"] == {"file": "weights.bin", "bytes": len(data),
                                 "crc32": f"{zlib.crc32(data):08x}", "sections": 41}
    records = {record["name"]: record for record in document["tensors"]}
    q = records["layer1.q.weight"]
    matrix = exported.image.layers[1].linears["q"].weights
    assert q["shape"] == [32, 64] and q["dense_shape"] == [64, 64]
    assert q["nonzeros"] == int(np.count_nonzero(matrix.to_dense()))
    assert q["density"] == q["nonzeros"] / (64 * 64)
    assert (q["min"], q["max"]) == (int(matrix.blocks.min()), int(matrix.blocks.max()))
    assert q["stored_blocks"] == matrix.nnz_blocks and q["blocks"] == 4 * 8
    totals = document["totals"]
    assert totals["dense_int8_weight_bytes"] == 2 * (4 * 64 * 64 + 2 * 64 * 128)
    assert totals["stored_int8_weight_bytes"] == sum(
        layer.linears[role].weights.nnz_blocks * 64 for layer in exported.image.layers
        for role in TENSOR_ROLES)
    assert sum(totals["image_bytes_by_part"].values()) == len(data)
    # the blocks moved to the WEIGHT_STREAM sections still count as weights, not as negative
    # constants
    assert min(totals["image_bytes_by_part"].values()) >= 0
    assert totals["image_bytes_by_part"]["bcsr_weights"] >= totals["stored_int8_weight_bytes"]
    # the summary lists every linear
    table = summary_table(load_image(out / "weights.bin"))
    assert all(f"layer{i}.{role} " in table for i in range(2) for role in TENSOR_ROLES)
    assert "embedding " in table and "head " in table
    assert "2 instructions, GEMM in the o slot" in table
    assert "3 instructions, GEMM in the q slot" in table
    assert records["head.weight"]["shape"] == [16, 64]         # 10 classes, 8-row blocks
    assert records["embedding.position"]["shape"] == [18, 64]
    assert document["head"]["classes"] == 10 and document["embedding"]["protected"] == 2


def test_params_json_generates_verilog(exported, tmp_path):
    write(exported, tmp_path / "image")
    assert generate_main(["--config", str(tmp_path / "image" / "params.json"),
                          "--out", str(tmp_path / "verilog")]) == 0
    assert (tmp_path / "verilog" / "layer_engine.v").stat().st_size > 0


def test_write_is_atomic_and_refuses_foreign_directories(exported, tmp_path):
    out = tmp_path / "image"
    write(exported, out)
    original = {p.name: p.read_bytes() for p in out.iterdir()}

    class Broken:
        name = "broken"

        def to_json(self):
            raise RuntimeError("disk full")

    broken = type(exported)(**{**exported.__dict__, "config": Broken()})
    with pytest.raises(RuntimeError, match="disk full"):
        write(broken, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == original
    assert [p.name for p in tmp_path.iterdir()] == ["image"]     # no staging left behind
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match=r"mine: refusing to replace a directory that holds "
                                          r"other files \(notes.txt\)"):
        write(exported, tmp_path / "mine")


def test_a_new_export_removes_an_earlier_replay_and_keeps_a_users_files(exported, tmp_path):
    """``replay/`` (sim/replay.py's replay.json, waves.vcd) is derived from the image: a new
    export into the directory removes it, as stale. A replay/ holding anything else, or not a
    directory, is the user's: refused, and kept."""
    out = tmp_path / "image"
    write(exported, out)
    (out / "replay").mkdir()
    (out / "replay" / "replay.json").write_text("{}")
    (out / "replay" / "waves.vcd").write_text("$version")
    write(exported, out)
    assert sorted(path.name for path in out.iterdir()) == ["manifest.json", "params.json",
                                                           "weights.bin"]
    (out / "replay").mkdir()
    (out / "replay" / "replay.json").write_text("{}")
    (out / "replay" / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match=r"image: refusing to replace a directory that holds "
                                          r"other files \(replay\)$"):
        write(exported, out)
    assert (out / "replay" / "notes.txt").read_text() == "keep me"
    (out / "replay" / "notes.txt").unlink()
    (out / "replay" / "replay.json").unlink()
    (out / "replay").rmdir()
    (out / "replay").write_text("a file of the user's")
    with pytest.raises(ExportError, match=r"other files \(replay\)$"):
        write(exported, out)
    assert (out / "replay").read_text() == "a file of the user's"


def test_sections_in_canonical_order(exported):
    image = parse_image(exported.data)
    kinds = [(entry.kind, entry.layer, entry.tensor) for entry in image.sections]
    assert kinds[:3] == [(SectionKind.CONFIG, 0xFFFF, 0xFFFF), (SectionKind.MODEL, 0xFFFF, 0xFFFF),
                         (SectionKind.FINAL_LAYERNORM, 0xFFFF, 0xFFFF)]
    stage = [SectionKind.LINEAR, SectionKind.WEIGHT_STREAM, SectionKind.PROGRAM]
    assert kinds[3:7] == [(SectionKind.EMBEDDING, 0xFFFF, 0xFFFF),
                          *((kind, 0xFFFF, 6) for kind in stage)]
    assert kinds[-4:] == [(SectionKind.HEAD, 0xFFFF, 0xFFFF), *((kind, 0xFFFF, 7) for kind in stage)]
    kinds = kinds[4:]
    assert kinds[3:18] == ([(SectionKind.LAYER, 0, 0xFFFF),
                            (SectionKind.LAYER_CONSTANTS, 0, 0xFFFF)]
                           + [(kind, 0, t) for t in range(6)
                              for kind in (SectionKind.LINEAR, SectionKind.WEIGHT_STREAM)]
                           + [(SectionKind.PROGRAM, 0, 0xFFFF)])
    assert all(entry.offset % 8 == 0 for entry in image.sections)
    # a weight stream starts on an AXI burst of the config (tiny: 16 beats of 4 bytes) and
    # holds the linear's weights in the order the engine computes its tiles
    hw = image.config.hardware
    for entry in image.sections:
        if entry.kind == SectionKind.WEIGHT_STREAM:
            assert entry.offset % 64 == 0
            if entry.layer == 0xFFFF:
                part = image.embedding if entry.tensor == 6 else image.head
                weights = part.linear.weights
            else:
                weights = image.layers[entry.layer].linears[TENSOR_ROLES[entry.tensor]].weights
            assert exported.data[entry.offset:entry.offset + entry.length] == \
                pack_stream_weights(weights, hw.array_rows, hw.array_cols, hw.data_width)


def test_plain_vit_directory_keeps_everything(tmp_path):
    import torch
    from transformers import ViTConfig, ViTForImageClassification
    torch.manual_seed(0)
    ViTForImageClassification(ViTConfig(
        image_size=8, patch_size=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=10)).save_pretrained(tmp_path / "vit")
    state = export(ExportRequest(model_dir=tmp_path / "vit", config="tiny", calibration_images=4,
                                 calibration="digits"))
    image = parse_image(state.data)
    assert image.model.architecture == "vit"
    assert image.model.tokens == 5                          # 4 patches + CLS, no distillation
    assert image.layers[0].kept_heads == (0, 1) and len(image.layers[0].kept_ffn) == 64
    assert image.layers[0].linears["q"].pruning_block_shape == (0, 0)
    assert verify(state)["differences"] == 0


def test_token_pruning_in_the_report_becomes_gathers(tmp_path):
    """The report's tokens entry (as sw/prune.py writes it) gives each layer a TOKEN_GATHER with
    the fine-tuned keep counts; the image's golden model equals the integer model with the
    same gathers."""
    tokens = {"keep_rate": 0.7, "layers": [0, 1], "fuse": True, "warmup": True, "protected": 2}
    model_dir = save_pruned_deit(tmp_path / "run", removed_heads={0: [1]}, removed_neurons={},
                                 block_density=0.5, image_size=32, tokens=tokens)
    state = export(ExportRequest(model_dir=model_dir, config="tiny", name="gathers",
                                 calibration_images=4))
    assert [(g.keep, g.protected, g.fuse) for g in state.token_pruning] == [(45, 2, True),
                                                                             (33, 2, True)]
    assert [(layer.tokens, layer.token_keep) for layer in state.image.layers] == [(66, 48),
                                                                                  (48, 36)]
    assert verify(state)["differences"] == 0


def test_a_bad_tokens_entry_is_named(tmp_path):
    model_dir = save_pruned_deit(tmp_path / "run", removed_heads={}, removed_neurons={},
                                 image_size=16, tokens={"keep_rate": 0.7, "layers": [0]})
    with pytest.raises(ExportError, match=r"pruning_report.json: 'tokens' needs keep_rate, "
                                          r"protected, fuse and layers"):
        export(ExportRequest(model_dir=model_dir, config="tiny", calibration_images=4))


def test_folded_neuron_with_a_zero_weight_row_exports_exactly(tmp_path):
    """A neuron the surgery folds (FC1 row zero, FC1 bias not) is kept, and its FC1 output is
    the bias rounded once: round(b / s_fc1), through a rescale of exactly 1 (the old 1e-12
    scale floor made its bias overflow 32 bits and the export fail)."""
    import torch

    from sw.models import load_model
    from sw.pruning.structures import linear_modules
    run = save_pruned_deit(tmp_path / "run", removed_heads={}, removed_neurons={0: [20]},
                           hidden_size=32, num_heads=2, intermediate_size=64, num_layers=1,
                           image_size=8)
    model = load_model(run / "pruned")
    with torch.no_grad():      # FC1 row 20 stays zero; its bias and FC2 column do not
        linear_modules(model)[0]["fc1"][1].bias[20] = 0.5
        linear_modules(model)[0]["fc2"][1].weight[:, 20] = torch.linspace(-0.3, 0.3, 32)
    model.save_pretrained(run / "pruned")
    state = export(ExportRequest(model_dir=run, config="tiny", calibration_images=8))
    assert state.notes == ["layer 0: 1 FFN neurons kept although the report removes them: "
                           "their constant output act(b1) still reaches FC2 in the pruned model"]
    layer = state.image.layers[0]
    slot = layer.kept_ffn.index(20)
    fc1 = layer.linears["fc1"]
    constant = round(0.5 / layer.scales["fc1"])
    assert not fc1.weights.to_dense()[slot].any()
    assert (int(fc1.bias[slot]), int(fc1.multiplier[slot]), int(fc1.shift[slot])) == (
        constant, 1 << 15, 15)
    assert verify(state)["differences"] == 0
    trace = {}
    encoder_layer_int(integer_layer(parse_image(state.data).layers[0]),
                      state.integer_model.embed(state.calibration), trace=trace)
    assert (trace["fc1"][..., slot] == constant).all()


def test_summary_counts_the_padding_inside_the_kept_neurons(exported):
    """91 kept neurons + 5 padding = 96 stored: "kept 96 of 128 (5 of them padding)", not
    "96 (+5 padding)", which read as 101."""
    lines = summary_table(exported.image).splitlines()
    assert ("layer 0: heads kept [0, 2, 3] of 4; FFN neurons kept 96 of 128 (5 of them "
            "padding); tokens kept 18 of 18;") in "\n".join(lines)
    assert "layer 1: heads kept [1, 2] of 4; FFN neurons kept 88 of 128; tokens" in "\n".join(lines)


def test_the_models_norm_decides_the_program_not_the_presets(pruned_dir, tmp_path):
    """A DeiT exported for a post-LN preset's hardware (the engine is the same) still gets the
    pre-LN program and a pre-LN params.json: the norm is the model's (its structure table)."""
    post = load_config("tiny")
    post = post.replace(model=dataclasses.replace(post.model, norm="post"))
    path = post.save(tmp_path / "tiny_post.json")
    state = export(ExportRequest(model_dir=pruned_dir, config=str(path), name="tiny_image",
                                 calibration_images=16))
    assert state.config.model.norm == "pre"
    assert all(layer.program[0].opcode == Opcode.LAYERNORM for layer in state.image.layers)
