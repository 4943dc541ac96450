import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sw.data.digits import load_digits_split
from sw.models import build_small_deit, load_model, small_deit_config
from sw.prune import resolve_recipe
from sw.pruning.structures import linear_modules
from sw.train_digits import evaluate
from tests.sw.test_train_digits import users_directory

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def tiny_teacher(tmp_path) -> Path:
    """An untrained 1-layer DeiT on 8x8 digits, saved with save_pretrained."""
    torch.manual_seed(0)
    config = small_deit_config(image_size=8, patch_size=4, hidden_size=16, num_layers=1,
                               num_heads=2, intermediate_size=32)
    directory = tmp_path / "teacher"
    build_small_deit(config).save_pretrained(directory)
    return directory


def test_recipe_resolves_and_rejects_unknown_keys():
    recipe = json.loads((REPO_ROOT / "recipes" / "digits_deit.json").read_text())
    args, options = resolve_recipe(recipe, {"final_threshold": 0.1}, {"epochs": 3})
    assert args.final_threshold == 0.1 and options.epochs == 3
    assert args.distil_alpha_teacher > 0 and args.final_finetune
    with pytest.raises(ValueError, match="Unknown pruning parameter"):
        resolve_recipe({"pruning": {"final_treshold": 0.1}})
    with pytest.raises(ValueError, match="Unknown training options"):
        resolve_recipe({"training": {"epoch": 1}})


def test_prune_command_end_to_end(tiny_teacher, tmp_path):
    out = tmp_path / "pruned_run"
    command = [sys.executable, str(REPO_ROOT / "sw" / "prune.py"),
               "--teacher", str(tiny_teacher), "--out", str(out), "--epochs", "1",
               "--max-train-samples", "64", "--final-finetune-epochs", "1",
               "--initial_warmup", "0", "--final_warmup", "0", "--final_threshold", "0.5",
               # The recipe's 16x16 head blocks are one block per weight here; use 8x8.
               "--attention_block_rows", "8", "--attention_block_cols", "8",
               "--no-progress"]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path,
                               timeout=900)
    assert completed.returncode == 0, completed.stderr
    assert "linear density" in completed.stdout
    for name in ("pruning_report.json", "recipe.json", "density_per_layer.png",
                 "accuracy.png", "pruned/config.json", "pruned/model.safetensors",
                 "filled/model.safetensors", "filled/surgery.json", "shrunk/surgery.json",
                 "shrunk/shrunk_state.safetensors"):
        assert (out / name).is_file(), name
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["recipe"]["pruning"]["final_threshold"] == 0.5
    assert report["linear_density"] == pytest.approx(0.5, abs=0.05)
    layer = report["layers"][0]
    assert set(layer["linears"]) == {"q", "k", "v", "o", "fc1", "fc2"}
    assert {"kept_heads", "kept_ffn_neurons", "linear_density"} <= set(layer)
    assert layer["linears"]["fc1"]["block_shape"] == [1, 16]
    assert report["dense_baseline"]["weights"] == 4 * 16 * 16 + 2 * 16 * 32
    assert [entry["stage"] for entry in report["history"]] == [
        "prune", "finetune-masked", "finetune-filled"]
    # The pruned model reloads with from_pretrained and keeps its zeros.
    pruned = load_model(out / "pruned")
    _, fc1 = linear_modules(pruned)[0]["fc1"]
    assert int((fc1.weight == 0).all(dim=1).sum()) == 16
    filled = load_model(out / "filled")
    assert linear_modules(filled)[0]["fc1"][1].out_features == layer["kept_ffn_neurons"]
    assert linear_modules(filled)[0]["q"][1].out_features == 8 * layer["kept_heads"]
    images = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        reloaded = filled(pixel_values=images).logits
        # The shrunk model reloads smaller and computes what the dense-shaped pruned one does.
        shrunk = load_model(out / "shrunk")
        assert linear_modules(shrunk)[0]["fc1"][1].out_features == layer["kept_ffn_neurons"]
        torch.testing.assert_close(shrunk(pixel_values=images).logits,
                                   pruned(pixel_values=images).logits, rtol=0, atol=1e-5)
    # Same logits as the model the command evaluated: the report's filled accuracy reproduces.
    split = load_digits_split(8)
    assert evaluate(filled, split.val_images, split.val_labels) == pytest.approx(
        report["filled"]["accuracy"])
    assert torch.isfinite(reloaded).all()


def _command(teacher: Path, out: Path, *extra: str) -> list[str]:
    return [str(REPO_ROOT / "sw" / "prune.py"), "--teacher", str(teacher), "--out", str(out),
            "--epochs", "1", "--max-train-samples", "64", "--final-finetune-epochs", "1",
            "--initial_warmup", "0", "--final_warmup", "0", "--final_threshold", "0.5",
            "--attention_block_rows", "8", "--attention_block_cols", "8", "--no-progress",
            *extra]


def test_bad_schedule_is_one_line_before_training(tiny_teacher, tmp_path):
    (tiny_teacher / "training.json").write_text(json.dumps({"data": {"train_samples": 256}}))
    command = [sys.executable, *_command(tiny_teacher, tmp_path / "out", "--final_warmup", "5")]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "exceed total_steps 1" in lines[0], completed.stderr
    assert not (tmp_path / "out").exists()


def test_torchrun_two_processes_match_one(tiny_teacher, tmp_path):
    """Two data-parallel processes (Gloo on CPU, half of each batch each, gradients
    synchronised by Accelerate) train the same model as one process: same losses, same function.
    Without augmentation the two runs see the same global batches. (Weights are not compared
    one by one: the K bias has a mathematically zero gradient, so its movement score is rounding
    noise and its mask may differ, without any effect on the function.)"""
    recipe = json.loads((REPO_ROOT / "recipes" / "digits_deit.json").read_text())
    recipe["training"]["max_shift"] = 0
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    extra = ("--recipe", str(tmp_path / "recipe.json"))
    one = subprocess.run([sys.executable, *_command(tiny_teacher, tmp_path / "one", *extra)],
                         capture_output=True, text=True, timeout=900)
    assert one.returncode == 0, one.stderr
    torchrun = Path(sys.executable).with_name("torchrun")
    two = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2",
                          *_command(tiny_teacher, tmp_path / "two", *extra)],
                         capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stderr
    reports = [json.loads((tmp_path / run / "pruning_report.json").read_text())
               for run in ("one", "two")]
    assert [report["processes"] for report in reports] == [1, 2]
    losses = [[entry["loss"] for entry in report["history"]] for report in reports]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    images = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        first, second = (load_model(tmp_path / run / "pruned")(pixel_values=images).logits
                         for run in ("one", "two"))
    torch.testing.assert_close(second, first, rtol=1e-4, atol=1e-5)


def test_setting_the_model_cannot_take_is_one_line(tiny_teacher, tmp_path):
    """Token pruning at a layer the 1-layer teacher lacks: exit 2, one line, nothing written."""
    command = [sys.executable, *_command(tiny_teacher, tmp_path / "out", "--recipe",
                                         str(REPO_ROOT / "recipes" / "digits_deit_tokens.json"))]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 2
    errors = [line for line in completed.stderr.splitlines() if "error" in line.lower()]
    assert errors == ["prune.py: error: tokens.layers [1] do not exist: the model has 1 layers"]
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "out").exists()


# --- bad input: one line, status 2, nothing created or removed ---------------------------------

def _run_main(argv, capsys):
    """``prune.main`` in this process: (exit status, the stderr lines that are not progress)."""
    from sw import prune as prune_module
    try:
        status = prune_module.main(argv)
    except SystemExit as exit_:
        status = exit_.code
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.strip() and "it/s]" not in line]
    return status, lines


def _tree(path: Path) -> dict:
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(path.rglob("*"))}


@pytest.mark.parametrize("content, message", [
    ('{"training": {"lr": "0.001"}}', "training.lr must be a finite number > 0, not '0.001'"),
    ('{"training": {"max_train_samples": "10"}}',
     "training.max_train_samples must be a positive integer, not '10'"),
    ('{"training": {"max_train_samples": 10.5}}',
     "training.max_train_samples must be a positive integer, not 10.5"),
    ('{"training": {"weight_decay": "x"}}',
     "training.weight_decay must be a finite number >= 0, not 'x'"),
    ('{"training": {"weight_decay": -1}}',
     "training.weight_decay must be a finite number >= 0, not -1"),
    ('{"training": {"lr": Infinity}}', "training.lr must be a finite number > 0, not inf"),
    ('{"training": {"tie_attention_heads": "yes"}}',
     "training.tie_attention_heads must be true or false, not 'yes'"),
    ('{"pruning": [1, 2]}', "pruning must be an object of settings, not a list of 2 items"),
    ("3", "a recipe must be a JSON object with sections pruning, training, tokens, description; "
          "found 3"),
    ('{"pruning": {"x\\u001b[31m\\nprune.py: error: forged": 1}}',
     "pruning: Unknown pruning parameter 'x\\x1b[31m\\nprune.py: error: forged'; known: "
     "mask_scores_learning_rate, dense_pruning_method"),
])
def test_bad_recipe_is_one_line_before_any_work(tiny_teacher, tmp_path, capsys, content,
                                                message):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(content)
    before = _tree(tmp_path)
    status, lines = _run_main(["--recipe", str(recipe), "--teacher", str(tiny_teacher),
                               "--out", str(tmp_path / "out"), "--no-progress"], capsys)
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith(f"prune.py: error: {recipe}: {message}")
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe{}", "not UTF-8 text (byte 0xff at offset 0)"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON: nested too deeply"),
])
def test_unreadable_recipe_is_one_line(tiny_teacher, tmp_path, capsys, content, message):
    recipe = tmp_path / "recipe.json"
    recipe.write_bytes(content)
    status, lines = _run_main(["--recipe", str(recipe), "--teacher", str(tiny_teacher),
                               "--out", str(tmp_path / "out")], capsys)
    assert (status, lines) == (2, [f"prune.py: error: {recipe}: {message}"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("file, content, message", [
    ("training.json", "{garbage", "training.json: not valid JSON: Expecting property name "
                                  "enclosed in double quotes at line 1 column 2"),
    ("training.json", '{"options": {"val_fraction": "x"}}',
     "training.json: options.val_fraction must be a number between 0 and 1 (exclusive), "
     "not 'x'"),
    ("training.json", '{"data": {"train_samples": 0}}',
     "training.json: data.train_samples must be a positive integer, not 0"),
    ("training.json", "[]", "training.json: must be a JSON object, not a list of 0 items"),
    ("config.json", '{"hidden_size": ', "config.json: not valid JSON: Expecting value at line 1 "
                                        "column 17"),
])
def test_bad_teacher_file_is_reported_against_that_file(tiny_teacher, tmp_path, capsys, file,
                                                        content, message):
    (tiny_teacher / file).write_text(content)
    status, lines = _run_main(_command(tiny_teacher, tmp_path / "out")[1:], capsys)
    assert (status, lines) == (2, [f"prune.py: error: {tiny_teacher}/{message}"])
    assert not (tmp_path / "out").exists()


def test_teacher_config_of_the_wrong_type_is_one_line(tiny_teacher, tmp_path, capsys):
    config = json.loads((tiny_teacher / "config.json").read_text())
    config["hidden_size"] = "16"
    (tiny_teacher / "config.json").write_text(json.dumps(config))
    status, lines = _run_main(_command(tiny_teacher, tmp_path / "out")[1:], capsys)
    assert status == 2
    assert lines == [f"prune.py: error: {tiny_teacher}: cannot load the teacher model: "
                     f"Validation error for field 'hidden_size': TypeError: Field 'hidden_size' "
                     f"expected int, got str (value: '16')"]
    assert not (tmp_path / "out").exists()


def test_block_shape_that_does_not_divide_names_the_field_and_the_layer(tiny_teacher, tmp_path,
                                                                        capsys):
    status, lines = _run_main([*_command(tiny_teacher, tmp_path / "out")[1:],
                               "--attention_block_rows", "5"], capsys)
    assert (status, lines) == (2, [
        "prune.py: error: pruning.attention_block_rows 5 does not divide the 16 rows of "
        "deit.layers.0.attention.q_proj (layer 0, q)"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("make_out, reason", [
    (users_directory, "not empty and not an earlier output of this tool (no "
                      "pruning_report.json); refusing to replace it"),
    (lambda tmp: users_directory(tmp) / "thesis.txt",
     "exists and is not a directory; refusing to replace it"),
])
def test_out_holding_the_users_files_is_refused_before_training(tiny_teacher, tmp_path, capsys,
                                                                  make_out, reason):
    out = make_out(tmp_path)
    before = _tree(tmp_path)
    status, lines = _run_main(_command(tiny_teacher, out)[1:], capsys)
    assert (status, lines) == (2, [f"prune.py: error: argument --out: {out}: {reason}"])
    assert _tree(tmp_path) == before


def test_unwritable_out_is_one_line(tiny_teacher, tmp_path, capsys, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("tempfile.mkdtemp", denied)
    status, lines = _run_main(_command(tiny_teacher, tmp_path / "a" / "out")[1:], capsys)
    assert (status, lines) == (2, [f"prune.py: error: argument --out: {tmp_path}/a/out: cannot "
                                   f"be written: {tmp_path}: Permission denied"])
    assert not (tmp_path / "a").exists()


def _earlier_output(tmp_path) -> Path:
    """What an earlier run left (the names it writes, the report as its manifest)."""
    out = tmp_path / "out"
    (out / "pruned").mkdir(parents=True)
    (out / "pruned" / "config.json").write_text("{}")
    (out / "pruning_report.json").write_text("{}")
    return out


def test_ctrl_c_is_one_line_status_130_and_keeps_the_previous_output(tiny_teacher, tmp_path,
                                                                        capsys, monkeypatch):
    from sw import prune as prune_module
    out = _earlier_output(tmp_path)
    before = _tree(tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(prune_module, "fine_prune", interrupted)
    status, lines = _run_main(_command(tiny_teacher, out)[1:], capsys)
    assert (status, lines) == (130, ["prune.py: interrupted"])
    assert _tree(tmp_path) == before


def test_earlier_output_is_accepted_and_a_users_file_in_it_is_not(tmp_path):
    from sw.atomic import OutputRefused
    from sw.prune import check_output
    out = _earlier_output(tmp_path)
    check_output(out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match=r"holds files this tool did not write \(notes.txt\)"):
        check_output(out)


def test_bad_flag_value_is_one_line(tiny_teacher, tmp_path, capsys):
    status, lines = _run_main([*_command(tiny_teacher, tmp_path / "out")[1:], "--bias_mask", "yes"],
                              capsys)
    assert (status, lines) == (2, ["prune.py: error: argument --bias_mask: invalid boolean value: "
                                   "'yes' (see --help)"])
