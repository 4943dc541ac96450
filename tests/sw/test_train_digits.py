"""Tests for the small DeiT models and the digits training command."""

import json

import pytest
import torch
from transformers import DeiTForImageClassification

from sw.data.digits import load_digits_split
from sw.models import build_small_deit, deit_token_count, load_model, small_deit_config
from sw.train_digits import OUTPUT_FILES, TrainOptions, evaluate, main, train

# Short runs on a subset of the digits: enough to exercise every step, not to learn much.
QUICK = dict(max_train_samples=128, epochs=1, batch_size=32, progress=False)


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


def test_small_deit_config_matches_tiny_preset():
    config = small_deit_config()
    assert (config.image_size, config.patch_size) == (32, 4)
    assert config.hidden_size == 64
    assert config.num_attention_heads == 4
    assert config.hidden_size // config.num_attention_heads == 16
    assert config.intermediate_size == 128
    assert config.num_hidden_layers == 2
    assert config.num_labels == 10
    assert deit_token_count(config) == 66


def test_small_deit_config_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"^Hidden size 64 is not a multiple of 3 heads$"):
        small_deit_config(num_heads=3)
    with pytest.raises(ValueError, match=r"^Image size 30 is not a multiple of patch size 4$"):
        small_deit_config(image_size=30)


def test_build_small_deit_runs_forward():
    torch.manual_seed(0)
    model = build_small_deit(small_deit_config(num_labels=3)).eval()
    assert isinstance(model, DeiTForImageClassification)
    with torch.no_grad():
        outputs = model(pixel_values=torch.zeros(2, 3, 32, 32), output_hidden_states=True)
    assert outputs.logits.shape == (2, 3)
    assert outputs.hidden_states[-1].shape == (2, 66, 64)


def test_train_saves_and_reloads_identically(tmp_path, split):
    out = tmp_path / "models" / "digits_deit"
    result = train(out, split=split, **QUICK)
    assert result.out == out
    assert sorted(path.name for path in out.iterdir()) == [
        "config.json", "model.safetensors", "training.json"]
    assert set(OUTPUT_FILES) >= {"config.json", "model.safetensors", "training.json"}
    assert [path.name for path in out.parent.iterdir()] == ["digits_deit"]
    record = json.loads((out / "training.json").read_text())
    assert record["epochs"] == 1
    assert record["val_accuracy"] == result.val_accuracy
    assert record["options"]["max_train_samples"] == 128
    assert record["data"]["train_samples"] == 128
    assert len(result.history) == 1 and 0.0 <= result.val_accuracy <= 1.0

    reloaded = load_model(out)
    assert not reloaded.training
    batch = split.val_images[:16]
    with torch.no_grad():
        assert torch.equal(result.model(pixel_values=batch).logits,
                           reloaded(pixel_values=batch).logits)
    assert evaluate(reloaded, split.val_images, split.val_labels) == result.val_accuracy

    # Training again replaces the directory and leaves no staging directories behind.
    train(out, split=split, **QUICK)
    assert [path.name for path in out.parent.iterdir()] == ["digits_deit"]


def test_same_seed_same_logits(split):
    batch = split.val_images[:8]
    logits = []
    for seed in (3, 3, 4):
        model = train(split=split, seed=seed, **QUICK).model
        with torch.no_grad():
            logits.append(model(pixel_values=batch).logits)
    assert torch.equal(logits[0], logits[1])
    assert not torch.equal(logits[0], logits[2])
    assert not torch.are_deterministic_algorithms_enabled()


def test_train_rejects_bad_options():
    with pytest.raises(ValueError, match=r"^epochs must be a positive integer, not 0$"):
        TrainOptions(epochs=0)
    with pytest.raises(TypeError):
        train(progress=False, no_such_option=1)


def test_failed_save_leaves_nothing(tmp_path, split, monkeypatch):
    out = tmp_path / "digits_deit"

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(DeiTForImageClassification, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train(out, split=split, **QUICK)
    assert list(tmp_path.iterdir()) == []


def test_load_model_errors(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=f"^{missing}: model directory not found$"):
        load_model(missing)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path)


def test_command_line(tmp_path, capsys):
    out = tmp_path / "cli_model"
    assert main(["--out", str(out), "--epochs", "1", "--max-train-samples", "64",
                 "--hidden-size", "32", "--num-heads", "2", "--no-progress"]) == 0
    assert "val accuracy" in capsys.readouterr().out
    assert load_model(out).config.hidden_size == 32


# --- bad input: one line, status 2, nothing created or removed ---------------------------------

QUICK_ARGS = ["--epochs", "1", "--max-train-samples", "64", "--hidden-size", "32",
              "--num-heads", "2", "--no-progress"]


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs: epochs must be a positive integer, not 0"),
    (["--epochs", "-2"], "--epochs: epochs must be a positive integer, not -2"),
    (["--hidden-size", "63"], "--num-heads: Hidden size 63 is not a multiple of 4 heads"),
    (["--val-fraction", "1.5"],
     "--val-fraction: val_fraction must be a number between 0 and 1 (exclusive), not 1.5"),
    (["--val-fraction", "0"],
     "--val-fraction: val_fraction must be a number between 0 and 1 (exclusive), not 0.0"),
    (["--val-fraction", "0.001"], "--val-fraction: val_fraction 0.001: The test_size = 2 should "
                                  "be greater or equal to the number of classes = 10"),
    (["--lr", "-1"], "--lr: lr must be a finite number > 0, not -1.0"),
    (["--lr", "inf"], "--lr: lr must be a finite number > 0, not inf"),
    (["--weight-decay", "nan"], "--weight-decay: weight_decay must be a finite number >= 0, "
                                "not nan"),
    (["--patch-size", "5"], "--patch-size: Image size 32 is not a multiple of patch size 5"),
    (["--image-size", "0"], "--image-size: image_size must be a positive integer, not 0"),
    (["--max-train-samples", "0"],
     "--max-train-samples: max_train_samples must be a positive integer, not 0"),
    (["--max-shift", "-1"], "--max-shift: max_shift must be a non-negative integer, not -1"),
    (["--epochs", "x"], "--epochs: invalid int value: 'x' (see --help)"),
])
def test_bad_option_is_one_line_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(out), "--no-progress", *argv])
    assert exit_.value.code == 2
    assert _error_line(capsys) == f"train_digits.py: error: argument {message}"
    assert list(tmp_path.iterdir()) == []


def test_options_type_check_from_code():
    with pytest.raises(ValueError, match=r"^batch_size must be a positive integer, not True$"):
        TrainOptions(batch_size=True)
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, not '0.1'$"):
        TrainOptions(lr="0.1")


def users_directory(tmp_path):
    """An ``out`` folder holding a user's file that no tool wrote."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.txt").write_text("years of work")
    return out


@pytest.mark.parametrize("make_out, reason", [
    (users_directory, "not empty and not an earlier output of this tool (no training.json)"),
    (lambda tmp: users_directory(tmp) / "thesis.txt", "exists and is not a directory"),
])
def test_out_holding_the_users_files_is_refused_before_training(tmp_path, capsys, make_out,
                                                                  reason):
    out = make_out(tmp_path)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(out), *QUICK_ARGS])
    assert exit_.value.code == 2
    assert _error_line(capsys) == (f"train_digits.py: error: argument --out: {out}: {reason}; "
                                   f"refusing to replace it")
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


def test_earlier_output_with_a_users_file_added_is_refused(tmp_path, capsys, split):
    out = tmp_path / "out"
    train(out, split=split, **QUICK)
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--out", str(out), *QUICK_ARGS])
    assert _error_line(capsys) == (f"train_digits.py: error: argument --out: {out}: holds files "
                                   f"this tool did not write (notes.txt); refusing to replace it")
    assert (out / "notes.txt").read_text() == "mine"


def test_unwritable_out_is_one_line(tmp_path, capsys, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("tempfile.mkdtemp", denied)
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "out"), *QUICK_ARGS])
    assert exit_.value.code == 2
    assert _error_line(capsys) == (f"train_digits.py: error: argument --out: {tmp_path}/out: "
                                   f"cannot be written: {tmp_path}: Permission denied")


def test_failed_write_is_one_line(tmp_path, capsys, monkeypatch):
    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(DeiTForImageClassification, "save_pretrained", disk_full)
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(tmp_path / "out"), *QUICK_ARGS])
    assert exit_.value.code == 2
    assert _error_line(capsys) == (f"train_digits.py: error: cannot write {tmp_path}/out: "
                                   f"No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_is_one_line_status_130_and_keeps_the_previous_output(tmp_path, capsys, split,
                                                                        monkeypatch):
    out = tmp_path / "out"
    train(out, split=split, **QUICK)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    capsys.readouterr()

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(DeiTForImageClassification, "save_pretrained", interrupted)
    assert main(["--out", str(out), *QUICK_ARGS]) == 130
    assert _error_line(capsys) == "train_digits.py: interrupted"
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert [path.name for path in tmp_path.iterdir()] == ["out"]
