"""``python -m hw.board.build`` (``make bitstream``): bad input ends in one line and exit code 2
before any tool runs, an output directory the tool did not write is never replaced, and the
Makefile passes CONFIG as data. (The build itself takes tens of minutes: docs/board.md has the
measured run.)"""

import json
import os
import subprocess

import pytest

from hw.board.build import GENERATOR, REPORT, main, output_names

PROG = "python -m hw.board.build"


def error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_unknown_config(capsys, tmp_path):
    assert main(["--config", "no_such_board", "--out", str(tmp_path / "out")]) == 2
    assert error_line(capsys).startswith(
        f"{PROG}: error: unknown preset 'no_such_board'; presets: ")
    assert not (tmp_path / "out").exists()


def test_config_the_layer_engine_cannot_host(capsys, tmp_path):
    from sw.config import load_config
    config = load_config("tiny").to_dict()
    config["hardware"]["array_cols"] = 8
    config["hardware"]["out_buffer_depth"] = 272
    config["hardware"]["weight_buffer_depth"] = 1024
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(config))
    assert main(["--config", str(path), "--out", str(tmp_path / "out")]) == 2
    assert error_line(capsys) == (
        f"{PROG}: error: config 'tiny': the layer engine needs array_rows (4) equal to "
        f"array_cols (8): it transposes key tiles in place")


def test_baud_rate_too_fast(capsys, tmp_path):
    assert main(["--config", "ulx3s_85f", "--baud", "12000000",
                 "--out", str(tmp_path / "out")]) == 2
    assert error_line(capsys) == (
        f"{PROG}: error: Baud rate 12000000 is too fast for a 2.5e+07 Hz clock: 2.08 cycles "
        f"per bit, at least 4 needed")


def test_refuses_a_directory_it_did_not_write(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["--config", "ulx3s_85f", "--out", str(out)]) == 2
    assert error_line(capsys) == (
        f"{PROG}: error: {out}: not empty and not an earlier output of this tool (no "
        f"{REPORT}); refusing to replace it")
    assert (out / "notes.txt").read_text() == "mine"


def test_refuses_a_report_another_tool_wrote(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / REPORT).write_text(json.dumps({"generator": "somebody else"}))
    assert main(["--config", "ulx3s_85f", "--out", str(out)]) == 2
    assert error_line(capsys) == (
        f"{PROG}: error: {out / REPORT}: exists and was not written by {GENERATOR}; not "
        f"replacing its directory")
    assert json.loads((out / REPORT).read_text()) == {"generator": "somebody else"}


def test_refuses_foreign_files_beside_its_own_report(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / REPORT).write_text(json.dumps({"generator": GENERATOR}))
    (out / "ulx3s_85f.bit").write_bytes(b"old")
    (out / "my_pins.lpf").write_text("mine")
    assert main(["--config", "ulx3s_85f", "--out", str(out)]) == 2
    assert error_line(capsys) == (
        f"{PROG}: error: {out}: holds files this tool did not write (my_pins.lpf); refusing "
        f"to replace it")


def test_output_names_are_the_platform_files_and_the_tools_outputs():
    names = output_names("ulx3s_85f")
    assert len(names) == len(set(names))
    for name in ("ulx3s_85f.bit", "ulx3s_85f.il", "ulx3s_85f.lpf", "ulx3s_85f.ys",
                 "ulx3s_85f.nextpnr.json", "ulx3s_85f.stat.json", "config.json", REPORT):
        assert name in names


@pytest.mark.parametrize("config", ["ulx3s_85f", "my board;touch INJECTED", "$(shell touch X)"])
def test_make_bitstream_passes_config_as_one_argument(checkout, config):
    tmp_path = checkout
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CONFIG")}
    result = subprocess.run(["make", "--no-print-directory", "bitstream", f"CONFIG={config}"],
                            cwd=tmp_path, env=environment, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    arguments = (tmp_path / "arguments").read_text().split("\0")[:-1]
    assert arguments == ["-m", "hw.board.build", "--config", config]
    assert not (tmp_path / "INJECTED").exists() and not (tmp_path / "X").exists()
