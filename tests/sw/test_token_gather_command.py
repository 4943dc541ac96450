"""``python -m sw.cycle_model.token_gather`` refuses out-of-range options in one line (issue 14,
item 13: ``--heads 0``, ``--width 0`` were modelled, ``--protected 0`` was reported as a sum)."""

import pytest

from sw.cycle_model.token_gather import main


@pytest.mark.parametrize("arguments, message", [
    (["--heads", "0"], "--heads must lie in 1..65535, not 0"),
    (["--heads", "-3"], "--heads must lie in 1..65535, not -3"),
    (["--width", "0"], "--width must lie in 1..65535, not 0"),
    (["--protected", "0"], "--protected must lie in 1..255, not 0"),
    (["--protected", "256"], "--protected must lie in 1..255, not 256"),
    (["--tokens", "1"], "--tokens must lie in 2..65535 (more than --protected 1), not 1"),
    (["--tokens", "100000000"], "--tokens must lie in 2..65535 (more than --protected 1), not "
                                "100000000"),
    (["--keep-rate", "nan"], "--keep-rate must lie in (0, 1], not nan"),
    (["--keep-rate", "0"], "--keep-rate must lie in (0, 1], not 0"),
])
def test_bad_options_give_one_line(capsys, arguments, message):
    assert main(arguments) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"error: {message}\n")
