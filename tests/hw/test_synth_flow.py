"""``python -m hw.synth``: its one-line refusals (fast) and one real synthesis, place and route
of the tiny GELU (slow: yosys and nextpnr, about a minute on an idle machine)."""

import json

import pytest

from hw.synth.__main__ import main
from hw.synth.tools import ToolMissing, nextpnr_path, yosys_path


def error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and captured.out == ""
    return lines[0]


def test_unknown_preset_is_one_line(capsys):
    assert main(["--config", "no_such_preset", "--top", "gelu"]) == 2
    assert error_line(capsys).startswith("error: unknown preset 'no_such_preset'; presets: ")


@pytest.mark.parametrize("argv, message", [
    (["--config", "tiny", "--top", "nope"], "error: argument --top: invalid choice: 'nope' "),
    (["--config", "tiny", "--freq", "-5"],
     "error: argument --freq: expected a positive number of MHz, not '-5'"),
    (["--top", "gelu"], "error: the following arguments are required: --config"),
])
def test_bad_arguments_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert error_line(capsys).startswith(message)


def test_refuses_to_replace_a_file_it_did_not_write(tmp_path, capsys):
    report = tmp_path / "gelu.json"
    report.write_text("my notes\n")
    assert main(["--config", "tiny", "--top", "gelu", "--out", str(tmp_path)]) == 2
    assert error_line(capsys) == (f"error: {report}: exists and was not written by hw.synth; "
                                  "not replacing it")
    assert report.read_text() == "my notes\n"


def test_missing_yosys_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing):
        yosys_path()
    assert main(["--config", "tiny", "--top", "gelu", "--out", str(tmp_path)]) == 2
    assert error_line(capsys) == ("error: yosys not found on PATH: `make synth` installs "
                                  "Debian's yosys (apt-get install -y yosys)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_tiny_gelu_synthesises_places_and_routes(tmp_path, capsys):
    yosys_path(), nextpnr_path()          # installed by `make synth`
    assert main(["--config", "tiny", "--top", "gelu", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gelu.json").read_text())
    assert report["generator"] == "hw.synth" and report["device"] == "LFE5U-85F speed 6"
    assert report["fits"] is True and report["placed"] is True
    assert report["lut"] > 0 and report["ff"] > 0 and report["carry"] > 0
    assert report["dsp"] == report["cells"]["MULT18X18D"] > 0
    assert report["fmax_mhz"] > 0
    path = report["critical_path"]
    assert path["method"] == "nextpnr" and 0 < path["carry_cells"] <= path["cells"]
    assert path["delay_ns"] == pytest.approx(1000 / report["fmax_mhz"], rel=1e-3)
    assert report["tools"]["yosys"].startswith("Yosys ")
    assert report["step_seconds"]["yosys_ecp5"] > 0 and report["reused_steps"] == []
    assert capsys.readouterr().out.startswith("tiny/gelu: ")
    # a second run reuses the synthesis of the same Verilog and rewrites its own report
    assert main(["--config", "tiny", "--top", "gelu", "--out", str(tmp_path), "--no-place"]) == 0
    again = json.loads((tmp_path / "gelu.json").read_text())
    assert again["reused_steps"] == ["yosys_ecp5"] and again["placed"] is False
    assert again["lut"] == report["lut"] and again["fmax_mhz"] is None
