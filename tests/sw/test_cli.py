"""The helpers every command-line tool shares: escaping, Ctrl-C, one-line usage errors."""

import pytest

from sw.cli import INTERRUPTED, OneLineArgumentParser, exit_130_on_interrupt, one_line


def test_one_line_escapes_what_could_forge_a_line_or_colour_the_terminal():
    assert one_line("recipes/digits deit.json") == "recipes/digits deit.json"
    assert one_line("C:\\recipes") == "C:\\recipes"                  # nothing to escape: as is
    assert one_line("x\x1b[31m\nerror: forged") == "x\\x1b[31m\\nerror: forged"
    assert one_line("a\u2028b" + "c" * 100) == "a\\u2028b" + "c" * 100   # escaped, not cut
    assert one_line("chiffres é") == "chiffres é"


def test_interrupt_is_one_line_and_status_130(capsys):
    @exit_130_on_interrupt("tool.py")
    def main(argv=None):
        raise KeyboardInterrupt
    assert main() == INTERRUPTED == 130
    assert capsys.readouterr().err == "tool.py: interrupted\n"


def test_usage_error_is_one_line(capsys):
    parser = OneLineArgumentParser(prog="tool.py")
    parser.add_argument("--count", type=int, required=True)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--count", "x\n"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == ("tool.py: error: argument --count: invalid int value: "
                                       "'x\\n' (see --help)\n")


def test_ctrl_c_while_a_script_imports_torch_is_one_line(tmp_path):
    """A real SIGINT 1 s after start, while ``sw/train_digits.py`` imports torch (were the imports
    already done, ``main``'s handler gives the same line and status)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "sw" / "train_digits.py"
    process = subprocess.Popen([sys.executable, str(script), "--out", str(tmp_path / "out")],
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(1.0)             # the handler is installed first thing; torch takes seconds
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert (process.returncode, stderr) == (130, "train_digits.py: interrupted\n")
    assert list(tmp_path.iterdir()) == []
