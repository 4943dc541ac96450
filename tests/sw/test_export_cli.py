"""``python sw/export_sparse.py``: exit codes, one-line errors, --inspect, --verify, bytes."""

import subprocess
import sys
from pathlib import Path

import pytest

from sw.export_sparse import main
from sw.image.export import ExportRequest, export
from tests.sw.image_models import save_pruned_deit

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "sw" / "export_sparse.py"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_pruned_deit(tmp_path_factory.mktemp("cli") / "run", removed_heads={0: [0]},
                            removed_neurons={0: list(range(8))}, hidden_size=32, num_heads=2,
                            intermediate_size=64, num_layers=1, image_size=8)


def run(*arguments, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, arguments)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_export_verify_inspect_in_a_fresh_process(model_dir, tmp_path):
    out = tmp_path / "image"
    done = run("--model", model_dir, "--config", "tiny", "--out", out, "--verify",
               "--calibration-images", "8", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "layer 0 output: 0 of 1536 values differ" in done.stdout    # 8 images x 6 x 32
    assert "final LayerNorm: 0 of" in done.stdout
    assert "layer0.fc1" in done.stdout and "whole image" in done.stdout
    # a fresh process gives the bytes an in-process export gives: same model in, same bytes out
    again = export(ExportRequest(model_dir=model_dir, config="tiny", name="image",
                                 calibration_images=8))
    assert (out / "weights.bin").read_bytes() == again.data
    inspected = run("--inspect", out / "weights.bin", cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    table = done.stdout[done.stdout.index(str(out / "weights.bin")):].splitlines()
    assert inspected.stdout.splitlines() == table[:len(inspected.stdout.splitlines())]

    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes((out / "weights.bin").read_bytes()[:1000])
    failed = run("--inspect", truncated, cwd=tmp_path)
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
