"""Tests of the Verilog generator: same config in, same bytes out; files; command line."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hw.generate
from hw.generate import ONCHIP_HEADING, REPO_ROOT, generate, main, verilog_text
from sw.onchip_memory import memory_table, onchip_memories
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
    table = memory_table(onchip_memories(TINY))
    assert captured.out == (f"tiny: wrote {tmp_path / 'layer_engine.v'} (2 lines) and "
                            f"{tmp_path / 'config.json'}\n{ONCHIP_HEADING}\n{table}\n")
    assert table.splitlines()[-1].split()[:2] == ["total", "25,666.875"]
    assert captured.err == ""


def test_main_prints_no_memory_table_for_a_single_unit(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("hw.generate.verilog_text", lambda config, top: "module m;\nendmodule\n")
    assert main(["--config", "tiny", "--out", str(tmp_path), "--top", "gelu"]) == 0
    assert capsys.readouterr().out == (f"tiny: wrote {tmp_path / 'gelu.v'} (2 lines) and "
                                       f"{tmp_path / 'config.json'}\n")


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
    assert captured.err == ("error: config 'wide': the layer engine needs array_rows (4) equal "
                            "to array_cols (8): it transposes key tiles in place\n")
    assert not (tmp_path / "out").exists()


def test_main_rejects_lanes_the_layer_engine_cannot_feed(tmp_path, capsys, monkeypatch):
    """The limit comes from the config's own check, before any conversion starts."""
    monkeypatch.setattr("hw.generate.verilog_text", _must_not_convert)
    path = tmp_path / "three.json"
    TINY.replace(name="three", hardware={"layernorm_lanes": 3}).save(path)
    assert main(["--config", str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        "error: config 'three': the layer engine needs layernorm_lanes (3) to divide "
        "array_cols (4): a unit takes whole scratchpad vectors of array_cols values in beats "
        "of its lanes\n")
    assert not (tmp_path / "out").exists()


def _must_not_convert(config, top):
    raise AssertionError("converted to Verilog although the input was bad")


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    return captured.err


@pytest.mark.parametrize("relative, message", [
    ("a_file", "{out}: is a file, not a directory"),
    ("a_file/below/out", "{out}: lies under the file {file}, not a directory"),
])
def test_main_rejects_an_output_path_at_or_under_a_file(tmp_path, capsys, monkeypatch, relative,
                                                        message):
    monkeypatch.setattr("hw.generate.verilog_text", _must_not_convert)
    (tmp_path / "a_file").write_text("the user's notes\n")
    out = tmp_path / relative
    assert main(["--config", "tiny", "--out", str(out)]) == 2
    expected = message.format(out=out, file=tmp_path / "a_file")
    assert _one_error_line(capsys) == f"error: output directory {expected}\n"
    assert (tmp_path / "a_file").read_text() == "the user's notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_main_rejects_an_unwritable_output_path(tmp_path, capsys, monkeypatch):
    """/sys refuses new files even to root (whom ``os.access`` would wave through)."""
    monkeypatch.setattr("hw.generate.verilog_text", _must_not_convert)
    assert main(["--config", "tiny", "--out", "/sys/hw_generate_test/out"]) == 2
    err = _one_error_line(capsys)
    assert err.startswith("error: output directory /sys/hw_generate_test/out: cannot write "
                          "into /sys (")
    assert not Path("/sys/hw_generate_test").exists()


def test_main_rejects_a_buffer_deeper_than_the_schema_allows(tmp_path, capsys, monkeypatch):
    """10**12 words gave a MemoryError for one top and silently generated the other."""
    monkeypatch.setattr("hw.generate.verilog_text", _must_not_convert)
    data = TINY.to_dict()
    data["hardware"]["act_buffer_depth"] = 10 ** 12
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(data))
    for top in ("block_sparse_gemm", "layer_engine"):
        assert main(["--config", str(path), "--out", str(tmp_path / "out"), "--top", top]) == 2
        assert _one_error_line(capsys) == (f"error: {path}: Activation buffer depth must be at "
                                           f"most 16777216, not 1000000000000\n")
    assert not (tmp_path / "out").exists()


def _previous_output(directory: Path) -> dict:
    directory.mkdir()
    files = {"layer_engine.v": "// the previous build\n", "config.json": TINY.to_json()}
    for name, text in files.items():
        (directory / name).write_text(text)
    return files


def test_ctrl_c_during_conversion_leaves_the_previous_output(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    previous = _previous_output(out)

    def interrupted(config, top):
        os.kill(os.getpid(), signal.SIGINT)        # what Ctrl-C does
        time.sleep(5)                              # the handler raises before this ends
        raise AssertionError("SIGINT was not delivered")

    monkeypatch.setattr("hw.generate.verilog_text", interrupted)
    assert main(["--config", "tiny", "--out", str(out)]) == 130
    assert _one_error_line(capsys) == "error: interrupted; nothing was written\n"
    assert {p.name: p.read_text() for p in out.iterdir()} == previous


def test_ctrl_c_while_writing_is_held_back_until_both_files_are_replaced(tmp_path, capsys,
                                                                         monkeypatch):
    out = tmp_path / "out"
    _previous_output(out)
    monkeypatch.setattr("hw.generate.verilog_text", lambda config, top: "module m;\nendmodule\n")
    real_write_text = hw.generate.write_text

    def write_text(path, text):
        os.kill(os.getpid(), signal.SIGINT)
        real_write_text(path, text)

    monkeypatch.setattr("hw.generate.write_text", write_text)
    assert main(["--config", "tiny", "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "layer_engine.v": "module m;\nendmodule\n", "config.json": TINY.to_json()}


def test_ctrl_c_of_the_command_prints_one_line_and_exits_130(tmp_path):
    """A real SIGINT to ``python -m hw.generate`` three seconds in (still importing Amaranth or
    converting deit_t16's layer engine, which takes minutes): one line, 130, files intact."""
    out = tmp_path / "out"
    previous = _previous_output(out)
    process = subprocess.Popen(
        [sys.executable, "-m", "hw.generate", "--config", "deit_t16", "--out", str(out)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert (process.returncode, stdout, stderr) == (
        130, "", "error: interrupted; nothing was written\n")
    assert {p.name: p.read_text() for p in out.iterdir()} == previous


@pytest.mark.parametrize("files", [
    {"config.json": '{"editor.fontSize": 14}\n'},
    {"layer_engine.v": "// the user's own design\n"},
])
def test_main_refuses_to_replace_files_it_did_not_write(tmp_path, capsys, monkeypatch, files):
    monkeypatch.setattr("hw.generate.verilog_text", _must_not_convert)
    out = tmp_path / "out"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    assert main(["--config", "tiny", "--out", str(out)]) == 2
    (name,) = files
    reason = ("which is not an accelerator config" if name == "config.json"
              else "which has no config.json beside it")
    assert _one_error_line(capsys) == (f"error: output directory {out}: refusing to replace "
                                       f"{name}, {reason} (not written by hw.generate)\n")
    assert {p.name: p.read_text() for p in out.iterdir()} == files
