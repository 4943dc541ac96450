"""Tests of the Verilog generator: same config in, same bytes out; files; command line."""

import dataclasses
import re
import sys

import pytest

from hw.generate import REPO_ROOT, generate, main, verilog_text
from sw.config import load_config

TINY = load_config("tiny")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Three generations of the tiny preset (about 2 s each): ``verilog_text``, ``generate``
    and the command line given the path of a config JSON."""
    root = tmp_path_factory.mktemp("generated")
    config_path = root / "tiny_copy.json"
    TINY.save(config_path)
    cli_out = root / "cli"
    exit_code = main(["--config", str(config_path), "--out", str(cli_out),
                      "--top", "block_sparse_gemm"])
    return {
        "text": verilog_text(TINY),
        "design": generate(TINY, root / "api"),
        "cli_exit_code": exit_code,
        "cli_out": cli_out,
    }


def test_verilog_is_deterministic(generated):
    text = generated["text"]
    assert "module block_sparse_gemm(" in text
    assert generated["design"].verilog.read_text() == text
    assert (generated["cli_out"] / "block_sparse_gemm.v").read_text() == text


def test_verilog_names_no_checkout_or_venv_path(generated):
    text = generated["text"]
    for prefix in ("/work/", str(REPO_ROOT), "site-packages", sys.prefix):
        assert prefix not in text
    sources = re.findall(r'src = "([^"]*)"', text)
    assert "hw/gemm/block_sparse_gemm.py:" in " ".join(sources)
    assert "amaranth/lib/memory.py:" in " ".join(sources)


def test_verilog_sources_are_all_relative(generated):
    sources = re.findall(r'src = "([^"]*)"', generated["text"])
    assert sources
    assert [source for source in sources if source.startswith("/")] == []


def test_verilog_has_no_memory_initialisation(generated):
    text = generated["text"]
    assert re.search(r"\binitial\b", text) is None
    assert re.search(r"reg \[\d+:0\] weight_mem \[2047:0\];", text)   # the memories remain


def test_generate_writes_verilog_and_its_config(generated):
    design = generated["design"]
    assert design.verilog == design.directory / "block_sparse_gemm.v"
    assert design.config == design.directory / "config.json"
    assert sorted(path.name for path in design.directory.iterdir()) == [
        "block_sparse_gemm.v", "config.json"]                            # no temporary files
    assert design.config.read_text() == TINY.to_json()
    assert load_config(design.config) == TINY


def test_main_accepts_a_config_path(generated):
    assert generated["cli_exit_code"] == 0
    assert (generated["cli_out"] / "config.json").read_text() == TINY.to_json()


def test_main_prints_what_it_wrote(tmp_path, capsys, monkeypatch):
    # The line is the contract here, not the Verilog: skip the 2 s conversion.
    monkeypatch.setattr("hw.generate.verilog_text", lambda config, top: "module m;\nendmodule\n")
    assert main(["--config", "tiny", "--out", str(tmp_path)]) == 0     # the default top
    captured = capsys.readouterr()
    assert captured.out == (f"tiny: wrote {tmp_path / 'layer_engine.v'} (2 lines) and "
                            f"{tmp_path / 'config.json'}\n")
    assert captured.err == ""


def test_main_rejects_an_unknown_preset(capsys):
    assert main(["--config", "nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: unknown preset 'nope'")
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n")


@pytest.mark.parametrize("contents,message", [
    ("{ not json", "invalid JSON at line 1 column 3"),
    ('{"schema_version": 1, "name": "x"}', "missing field 'model'"),
    (None, "no such file"),
])
def test_main_rejects_a_bad_config_file(tmp_path, capsys, contents, message):
    path = tmp_path / "bad.json"
    if contents is not None:
        path.write_text(contents)
    assert main(["--config", str(path), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {path}: {message}")
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n")
    assert not (tmp_path / "out").exists()


def test_main_rejects_a_config_the_layer_engine_cannot_hold(tmp_path, capsys):
    """A non-square array cannot transpose key tiles in place: one line, exit 2, no files."""
    path = tmp_path / "wide.json"
    TINY.replace(name="wide", hardware=dataclasses.replace(TINY.hardware, array_cols=8,
                                                           block_rows=8)).save(path)
    assert main(["--config", str(path), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("error: config 'wide': hardware.array_rows must be equal to "
                            "array_cols (8): key tiles are transposed in place, found 4\n")
    assert not (tmp_path / "out").exists()
