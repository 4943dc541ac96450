"""``sw/prune.py`` with a BERT teacher: the digits as sequences, and user text (JSONL plus a
tokenizer folder), pruned, shrunk and reloaded; bad text input is one line and status 2."""

import json
import re
from pathlib import Path

import pytest
import torch

from sw.data.sequences import SequenceSource
from sw.models import build_small_bert, load_model, model_inputs, small_bert_config
from sw.prune import main
from sw.pruning.structures import linear_modules
from sw.train_digits import evaluate, train
from tests.sw.test_sequences import word_level_tokenizer, write_corpus

RECIPE = str(Path(__file__).resolve().parents[3] / "recipes" / "digits_bert.json")

# One pruning epoch and one of each fine-tune on a few samples; 8x8 head blocks (head dim 16
# of hidden 32 with 2 heads would make the recipe's 16x16 blocks one block per head anyway).
QUICK = ["--epochs", "1", "--final-finetune-epochs", "1", "--initial_warmup", "0",
         "--final_warmup", "0", "--final_threshold", "0.5", "--no-progress"]


@pytest.fixture(scope="module")
def digits_teacher(tmp_path_factory):
    """A tiny BERT (hidden 32, 2 layers, 2 heads) trained one epoch on 128 digit sequences."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bert") / "teacher"
    train(out, arch="bert", epochs=1, max_train_samples=128, batch_size=32, hidden_size=32,
          num_layers=2, num_heads=2, intermediate_size=64, progress=False)
    return out


@pytest.fixture
def text_teacher(tmp_path):
    """An untrained tiny BERT with named labels, its tokenizer files in its folder, and a
    generated corpus."""
    torch.manual_seed(0)
    config = small_bert_config(vocab_size=10, max_position_embeddings=8, hidden_size=32,
                               num_layers=2, num_heads=2, intermediate_size=64, num_labels=2)
    config.id2label, config.label2id = {0: "colour", 1: "animal"}, {"colour": 0, "animal": 1}
    teacher = tmp_path / "teacher"
    build_small_bert(config).save_pretrained(teacher)
    word_level_tokenizer(teacher)
    return teacher, write_corpus(tmp_path / "corpus.jsonl", count=40)


def _outputs_agree(report_dir, ids):
    """Logits of ``pruned/`` (dense shapes, zeros) and ``shrunk/`` (surgery) on ``ids``."""
    pruned, shrunk = load_model(report_dir / "pruned"), load_model(report_dir / "shrunk")
    with torch.no_grad():
        return (pruned(**model_inputs(pruned, ids)).logits,
                shrunk(**model_inputs(shrunk, ids)).logits, shrunk)


def test_prune_digits_bert_removes_heads_and_neurons(digits_teacher, tmp_path, capsys):
    out = tmp_path / "pruned_bert"
    status = main(["--recipe", RECIPE, "--teacher", str(digits_teacher),
                   "--out", str(out), "--max-train-samples", "64",
                   "--attention_block_rows", "8", "--attention_block_cols", "8", *QUICK])
    assert status == 0
    assert "heads removed" in capsys.readouterr().out
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["data"]["source"] == "digits_sequences"
    assert report["data"]["sequence_length"] == 66
    assert report["linear_density"] == pytest.approx(0.5, abs=0.05)
    assert report["heads_total"] == 4
    split = SequenceSource().load_split(load_model(digits_teacher).config)
    pruned, shrunk, shrunk_model = _outputs_agree(out, split.val_ids)
    torch.testing.assert_close(shrunk, pruned, rtol=1e-5, atol=1e-5)
    # The report's accuracies are those of the saved folders on the recorded split.
    assert evaluate(shrunk_model, split.val_ids, split.val_labels) == \
        report["shrunk"]["accuracy"]
    assert evaluate(load_model(out / "filled"), split.val_ids, split.val_labels) == \
        report["filled"]["accuracy"]
    for index, layer in enumerate(report["layers"]):
        linears = linear_modules(shrunk_model)[index]
        assert linears["q"][1].out_features == 16 * layer["kept_heads"]
        assert linears["fc1"][1].out_features == layer["kept_ffn_neurons"]
    assert sum(layer["heads"] - layer["kept_heads"] for layer in report["layers"]) == \
        report["heads_removed"]


def test_prune_bert_on_jsonl_text(text_teacher, tmp_path):
    teacher, corpus = text_teacher
    out = tmp_path / "pruned_text"
    assert main(["--recipe", RECIPE, "--teacher", str(teacher),
                 "--data", str(corpus), "--out", str(out),
                 "--attention_block_rows", "8", "--attention_block_cols", "8", *QUICK]
                ) in (0, None)
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["data"]["source"] == "jsonl"
    assert report["data"]["tokenizer"] == str(teacher.absolute())
    assert report["data"]["classes"] == ["colour", "animal"]
    assert report["data"]["train_samples"] + report["data"]["val_samples"] == 40
    config = load_model(teacher).config
    split = SequenceSource(corpus.absolute(), teacher.absolute()).load_split(config)
    assert report["data"]["sequence_length"] == split.sequence_length
    pruned, shrunk, _ = _outputs_agree(out, split.val_ids)
    torch.testing.assert_close(shrunk, pruned, rtol=1e-5, atol=1e-5)
    # The Python API runs the same thing: the same pruned weights, the same report numbers.
    from flow import api
    run = api.prune(teacher, recipe=RECIPE, data=corpus, tokenizer=teacher, training={
        "epochs": 1, "final_finetune_epochs": 1}, pruning={
        "initial_warmup": 0, "final_warmup": 0, "final_threshold": 0.5,
        "attention_block_rows": 8, "attention_block_cols": 8})
    assert run.accuracy == report["accuracy"]
    assert run.report["data"] == report["data"]
    reloaded = load_model(out / "pruned")
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[name]), name


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("corrupt, message", [
    ("missing_tokenizer", r"nowhere: tokenizer folder not found"),
    ("bad_line", r"corpus.jsonl:3: expected a JSON object, found invalid JSON"),
    ("unknown_label", r"corpus.jsonl:41: field 'label': unknown label 'plant': the model "
                      r".*teacher has 2 labels, expected 'colour', 'animal'"),
    ("missing_file", r"absent.jsonl: JSONL file not found"),
])
def test_bad_text_input_is_one_line_status_2(text_teacher, tmp_path, capsys, corrupt, message):
    teacher, corpus = text_teacher
    argv = ["--recipe", RECIPE, "--teacher", str(teacher),
            "--data", str(corpus), "--out", str(tmp_path / "out"), *QUICK]
    if corrupt == "missing_tokenizer":
        argv += ["--tokenizer", str(tmp_path / "nowhere")]
    elif corrupt == "bad_line":
        lines = corpus.read_text().splitlines()
        lines[2] = lines[2][:-1]
        corpus.write_text("\n".join(lines) + "\n")
    elif corrupt == "unknown_label":
        with corpus.open("a") as file:
            file.write(json.dumps({"text": "red", "label": "plant"}) + "\n")
    else:
        argv[argv.index("--data") + 1] = str(tmp_path / "absent.jsonl")
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    line = _error_line(capsys)
    assert line.startswith("prune.py: error: ")
    assert re.search(message, line), line
    assert not (tmp_path / "out").exists()


def test_tokenizer_with_an_image_teacher_is_refused(tmp_path, capsys):
    from sw.models import build_small_deit, small_deit_config
    teacher = tmp_path / "deit"
    build_small_deit(small_deit_config(image_size=8, patch_size=4, hidden_size=16,
                                       num_layers=1, num_heads=2)).save_pretrained(teacher)
    with pytest.raises(SystemExit) as stopped:
        main(["--teacher", str(teacher), "--tokenizer", str(tmp_path), "--out",
              str(tmp_path / "out"), *QUICK])
    assert stopped.value.code == 2
    assert "only a BERT teacher takes a tokenizer" in _error_line(capsys)


def test_arch_names_the_teacher_to_train_and_must_match_an_existing_one(digits_teacher,
                                                                        tmp_path, capsys):
    from sw.data.source import DataSource
    from sw.prune import data_source
    missing = tmp_path / "missing"
    assert data_source(missing, "digits", arch="bert") == SequenceSource()
    assert isinstance(data_source(missing, "digits"), DataSource)
    assert data_source(digits_teacher, "digits") == SequenceSource()
    with pytest.raises(SystemExit) as stopped:
        main(["--teacher", str(digits_teacher), "--arch", "deit", "--out",
              str(tmp_path / "out"), *QUICK])
    assert stopped.value.code == 2
    assert _error_line(capsys).endswith(
        f"argument --arch: deit, but the teacher {digits_teacher} is a BERT "
        f"(config.json model_type)")
