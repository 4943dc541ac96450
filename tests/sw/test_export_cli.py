"""``python sw/export_sparse.py``: exit codes, one-line errors, --inspect, --verify, bytes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sw.export_sparse import main
from sw.image.format import ImageError
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
