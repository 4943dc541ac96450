"""``python sw/export_sparse.py``: exit codes, one-line errors, --inspect, --verify, bytes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sw.export_sparse import main
from sw.image.format import ImageError
from sw.image.export import ExportRequest, export
from sw.synthetic_deit import save_pruned_deit

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "sw" / "export_sparse.py"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_pruned_deit(tmp_path_factory.mktemp("cli") / "run", removed_heads={0: [0]},
                            removed_neurons={0: list(range(8))}, hidden_size=32, num_heads=2,
                            intermediate_size=64, num_layers=1, image_size=8)


def run_cli(*arguments, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, arguments)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_export_verify_inspect_in_a_fresh_process(model_dir, tmp_path):
    out = tmp_path / "image"
    done = run_cli("--model", model_dir, "--config", "tiny", "--out", out, "--verify",
               "--calibration-images", "8", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "layer 0 output: 0 of 1536 values differ" in done.stdout    # 8 images x 6 x 32
    assert "final LayerNorm: 0 of" in done.stdout
    assert "layer0.fc1" in done.stdout and "whole image" in done.stdout
    # a fresh process gives the bytes an in-process export gives: same model in, same bytes out
    again = export(ExportRequest(model_dir=model_dir, config="tiny", name="image",
                                 calibration_images=8))
    assert (out / "weights.bin").read_bytes() == again.data
    inspected = run_cli("--inspect", out / "weights.bin", cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    table = done.stdout[done.stdout.index(str(out / "weights.bin")):].splitlines()
    assert inspected.stdout.splitlines() == table[:len(inspected.stdout.splitlines())]

    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes((out / "weights.bin").read_bytes()[:1000])
    failed = run_cli("--inspect", truncated, cwd=tmp_path)
    assert failed.returncode == 2
    assert failed.stdout == ""
    lines = failed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {truncated}: truncated: the file has "
                                                   f"1000 bytes")
    assert "section" in lines[0] and "offset" in lines[0]


@pytest.mark.parametrize("arguments,message", [
    (["--config", "tiny9"], "error: --config: unknown preset 'tiny9'; presets: "),
    (["--config", "tiny", "--calibration-images", "0"],
     "error: --calibration-images must be a positive integer, not 0"),
    (["--config", "tiny", "--name", "my image"],
     "error: --name: Name must be letters, digits, '_', '.' or '-' and not start with '.', not "
     "'my image'"),
])
def test_bad_export_input_is_one_line(model_dir, tmp_path, capsys, arguments, message):
    assert main(["--model", str(model_dir), "--out", str(tmp_path / "o"), "--no-progress",
                 *arguments]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(message)
    assert not (tmp_path / "o").exists()


def test_inspect_errors(tmp_path, capsys):
    assert main(["--inspect", str(tmp_path / "missing.bin")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.bin'}: no such file\n"
    (tmp_path / "text.bin").write_text("hello, not an image\n")
    assert main(["--inspect", str(tmp_path / "text.bin")]) == 2
    assert "not a weight image: it starts with 68 65 6c 6c 6f 2c 20 6e" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--model", "x"])
    assert exited.value.code == 2
    assert "missing --config, --out (or use --inspect FILE)" in capsys.readouterr().err


# --- --inspect: header first, directories, closed pipes, the padding count ---------------------

@pytest.fixture(scope="module")
def image_dir(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "image"
    assert main(["--model", str(model_dir), "--config", "tiny", "--out", str(out),
                 "--calibration-images", "4", "--no-progress"]) == 0
    return out


def test_inspect_takes_a_directory_holding_weights_bin(image_dir, tmp_path, capsys):
    capsys.readouterr()
    assert main(["--inspect", str(image_dir)]) == 0
    assert capsys.readouterr().out.startswith(f"{image_dir / 'weights.bin'}: ")
    assert main(["--inspect", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: a directory without weights.bin\n"


def test_inspect_reads_the_header_before_the_file(image_dir, tmp_path, capsys):
    """An 8 GiB sparse file (a valid image followed by zeros, or only zeros) and /dev/zero are
    refused after the header and the section table: the test would run out of memory (or
    take minutes) if the loader read them whole."""
    import resource
    image = (image_dir / "weights.bin").read_bytes()
    padded = tmp_path / "padded.bin"
    padded.write_bytes(image)
    zeros = tmp_path / "zeros.bin"
    zeros.touch()
    for path in (padded, zeros):
        os.truncate(path, 8 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    capsys.readouterr()
    assert main(["--inspect", str(padded)]) == 2
    assert capsys.readouterr().err == (f"error: {padded}: {(8 << 30) - len(image)} unexpected "
                                       f"bytes after the end of the image (byte {len(image)})\n")
    for path in (zeros, Path("/dev/zero")):
        assert main(["--inspect", str(path)]) == 2
        assert capsys.readouterr().err == (f"error: {path}: not a weight image: it starts with "
                                           f"00 00 00 00 00 00 00 00, expected the magic 89 53 "
                                           f"50 49 4d 47 0d 0a\n")
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before     # KiB on Linux
    assert grown < 64 * 1024


def test_inspect_refuses_a_declared_size_beyond_the_limit(image_dir, capsys):
    from sw.image.loader import MAX_IMAGE_BYTES, parse_image
    from sw.packing import pack_array
    data = (image_dir / "weights.bin").read_bytes()
    huge = data[:24] + pack_array([MAX_IMAGE_BYTES + 1], "u64") + data[32:]
    with pytest.raises(ImageError, match=rf"^x: header field file_size at offset 24 declares "
                                         rf"{MAX_IMAGE_BYTES + 1} bytes, more than the "
                                         rf"{MAX_IMAGE_BYTES} \(4 GiB\) this loader reads$"):
        parse_image(huge, source="x")


def test_inspect_into_a_closed_pipe_exits_quietly(image_dir, tmp_path):
    """``--inspect good.bin | head -1``: the reader is gone before the table is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)                          # every write now fails with EPIPE
    try:
        done = subprocess.run([sys.executable, str(SCRIPT), "--inspect", str(image_dir)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                              timeout=300)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


# --- bad model files, report entries and --out: one line, before any work ---------------------

def copy_run(model_dir, tmp_path) -> Path:
    import shutil
    return Path(shutil.copytree(model_dir, tmp_path / "run"))


def export_fails(arguments, capsys, out) -> str:
    capsys.readouterr()
    assert main(["--config", "tiny", "--out", str(out), "--calibration-images", "2",
                 "--no-progress", *map(str, arguments)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert not out.exists()
    return lines[0]


@pytest.mark.parametrize("damage, message", [
    (lambda weights: weights.write_bytes(os.urandom(1000)),
     "model.safetensors: not a readable safetensors file (Error while deserializing header: "),
    (lambda weights: weights.write_bytes(weights.read_bytes()[:20000]),
     "model.safetensors: not a readable safetensors file (Error while deserializing header: "
     "incomplete metadata, file not fully covered)"),
])
def test_garbage_or_truncated_weights_are_one_line(model_dir, tmp_path, capsys, damage, message):
    run = copy_run(model_dir, tmp_path)
    damage(run / "pruned" / "model.safetensors")
    line = export_fails(["--model", run], capsys, tmp_path / "out")
    assert line.startswith(f"error: {run / 'pruned' / message}")


@pytest.mark.parametrize("value, shown", [('"32"', '"32"'), ("32.0", "32.0"), ("0", "0"),
                                          ("true", "true")])
def test_a_model_size_that_is_not_a_positive_integer(model_dir, tmp_path, capsys, value, shown):
    run = copy_run(model_dir, tmp_path)
    config = run / "pruned" / "config.json"
    text = config.read_text()
    assert '"hidden_size": 32' in text
    config.write_text(text.replace('"hidden_size": 32', f'"hidden_size": {value}'))
    assert export_fails(["--model", run], capsys, tmp_path / "out") == (
        f"error: {config}: hidden_size must be a positive integer, found {shown}")


def test_a_hidden_size_the_weights_do_not_have_is_one_line(model_dir, tmp_path):
    """Without transformers' 27-line load report before it (hence a fresh process: the report
    goes to the stderr transformers' logging handler was created with)."""
    run = copy_run(model_dir, tmp_path)
    config = run / "pruned" / "config.json"
    config.write_text(config.read_text().replace('"hidden_size": 32', '"hidden_size": 48'))
    done = run_cli("--model", run, "--config", "tiny", "--out", tmp_path / "out",
                   "--no-progress", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (f"error: {run / 'pruned'}: the weights do not match config.json's "
                           f"sizes: classifier.weight is 10x32 in the weights, config.json "
                           f"gives 10x48 (and 22 more tensors)\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tokens, message", [
    ({"keep_rate": 0.7, "protected": 2, "fuse": True, "layers": [0, "a"]},
     "pruning_report.json: tokens layers must be a non-empty increasing list of indices below "
     "1, found [0, 'a']"),
    ({"keep_rate": "0.7", "protected": 2, "fuse": True, "layers": [0]},
     "pruning_report.json: tokens keep_rate '0.7', protected 2, fuse True are out of range"),
    ({"keep_rate": 0.7, "protected": 2.5, "fuse": True, "layers": [0]},
     "pruning_report.json: tokens keep_rate 0.7, protected 2.5, fuse True are out of range"),
    ([0.7], "pruning_report.json: 'tokens' needs keep_rate, protected, fuse and layers"),
])
def test_a_bad_tokens_entry_is_one_line(model_dir, tmp_path, capsys, tokens, message):
    import json
    run = copy_run(model_dir, tmp_path)
    report = json.loads((run / "pruning_report.json").read_text())
    report["tokens"] = tokens
    (run / "pruning_report.json").write_text(json.dumps(report))
    assert export_fails(["--model", run], capsys, tmp_path / "out").startswith(
        f"error: {message}")


def unwritable_directory(tmp_path) -> Path:
    """A directory nobody may create entries in: /sys as root (root ignores permissions),
    a read-only directory otherwise."""
    if os.geteuid() == 0:
        return Path("/sys")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    return locked


def test_out_that_cannot_be_written_is_refused_before_the_export(model_dir, tmp_path, capsys):
    (tmp_path / "thesis.txt").write_text("mine")
    locked = unwritable_directory(tmp_path)
    for out, message in (
            (tmp_path / "thesis.txt" / "image",
             f"cannot create it: {tmp_path / 'thesis.txt'} is not a directory"),
            (tmp_path / "thesis.txt" / "a" / "b",
             f"cannot create it: {tmp_path / 'thesis.txt'} is not a directory"),
            (tmp_path / "thesis.txt", "exists and is not a directory"),
            (locked / "image", f"cannot write in {locked} (")):
        capsys.readouterr()
        assert main(["--model", str(model_dir), "--config", "tiny", "--out", str(out),
                     "--no-progress"]) == 2
        captured = capsys.readouterr()
        assert captured.out == "- read hardware config\n"      # nothing loaded or quantized
        assert captured.err.startswith(f"error: {out}: {message}")
        assert len(captured.err.splitlines()) == 1
    assert (tmp_path / "thesis.txt").read_text() == "mine"


def test_calibration_images_beyond_the_data_are_noted(model_dir):
    state = export(ExportRequest(model_dir=model_dir, config="tiny", calibration_images=5000))
    assert len(state.calibration) == 1437                   # 1,797 digits less the 20 % split
    assert state.notes[-1] == ("--calibration-images 5000: the train split of digits has 1437 "
                               "images; calibrated on all of them")


def test_ctrl_c_prints_one_line_and_leaves_the_previous_output(model_dir, tmp_path, capsys,
                                                               monkeypatch):
    import sw.image.export as export_module
    out = tmp_path / "image"
    arguments = ["--model", str(model_dir), "--config", "tiny", "--out", str(out),
                 "--calibration-images", "2", "--no-progress"]
    assert main(arguments) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    real = export_module.replace_directory

    def interrupted_while_writing(target, fill):
        def fill_then_interrupt(staging):
            fill(staging)
            raise KeyboardInterrupt
        real(target, fill_then_interrupt)
    monkeypatch.setattr(export_module, "replace_directory", interrupted_while_writing)
    capsys.readouterr()
    assert main([*arguments[:-2], "3", "--no-progress"]) == 130     # a different image
    assert capsys.readouterr().err == (f"error: interrupted; nothing written, {out} is as it "
                                       f"was\n")
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["image"]    # no staging left


@pytest.mark.parametrize("name, text, message", [
    ("pruning_report.json", "[" * 100_000 + "]" * 100_000,
     "cannot read it as JSON (maximum recursion depth exceeded"),
    ("pruning_report.json", '{"surgery": 1' + "0" * 5000 + "}",
     "cannot read it as JSON (Exceeds the limit (4300 digits) for integer string conversion"),
    ("pruned/config.json", '{"model_type": "deit", "hidden_size": 1' + "0" * 5000 + "}",
     "cannot read the model config (ValueError: Exceeds the limit (4300 digits)"),
    ("pruned/config.json", "\xff\xfe", "cannot read the model config (UnicodeDecodeError: "),
])
def test_unreadable_report_or_model_config(model_dir, tmp_path, capsys, name, text, message):
    run = copy_run(model_dir, tmp_path)
    (run / name).write_bytes(text.encode("latin-1"))
    assert export_fails(["--model", run], capsys, tmp_path / "out").startswith(
        f"error: {run / name}: {message}")


def test_a_real_ctrl_c_during_the_export(model_dir, tmp_path):
    """SIGINT while the model is being quantized: one line, status 130, the previous output
    intact and nothing left beside it."""
    import signal
    out = tmp_path / "image"
    arguments = [sys.executable, str(SCRIPT), "--model", str(model_dir), "--config", "tiny",
                 "--out", str(out), "--no-progress", "--calibration-images"]
    assert subprocess.run([*arguments, "2"], capture_output=True, timeout=300).returncode == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    process = subprocess.Popen([*arguments, "1000"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    for line in process.stdout:
        if line == "- quantize\n":
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert (process.returncode, stderr) == (
        130, f"error: interrupted; nothing written, {out} is as it was\n")
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["image"]


def test_weights_missing_a_tensor_are_refused_and_extra_ones_noted(model_dir, tmp_path, capsys):
    """transformers would initialise a missing tensor at random and print a load report; the
    exporter refuses in one line. A tensor the model does not have is ignored with a note."""
    from safetensors.torch import load_file, save_file
    run = copy_run(model_dir, tmp_path)
    path = run / "pruned" / "model.safetensors"
    tensors = load_file(path)
    save_file({**tensors, "extra.tensor": tensors["classifier.bias"].clone()}, path,
              metadata={"format": "pt"})
    state = export(ExportRequest(model_dir=run, config="tiny", calibration_images=2))
    assert state.notes == [f"{run / 'pruned'}: 1 tensors of the weights are not in the model of "
                           f"config.json and were ignored (extra.tensor)"]
    del tensors["deit.encoder.layer.0.intermediate.dense.bias"]
    save_file(tensors, path, metadata={"format": "pt"})
    assert export_fails(["--model", run], capsys, tmp_path / "out") == (
        f"error: {run / 'pruned'}: the weights lack deit.layers.0.mlp.fc1.bias, which the model "
        f"of config.json has (it would be initialised at random)")
