"""``make synth`` passes CONFIG and TOP to ``python -m hw.synth`` as data, and PLACE=0 asks
for synthesis only. Runs the real Makefile in a temporary copy with a stand-in
``.venv/bin/python`` that records its arguments, and tool stamps newer than what they need."""

import os
import subprocess
from pathlib import Path


def make_synth(checkout: Path, *variables: str) -> list[str]:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CONFIG", "TOP", "PLACE")}
    result = subprocess.run(["make", "--no-print-directory", "synth", *variables],
                            cwd=checkout, env=environment, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return (checkout / "arguments").read_text().split("\0")[:-1]


def test_defaults_are_the_tiny_layer_engine_placed(checkout):
    assert make_synth(checkout) == ["-m", "hw.synth", "--config", "tiny", "--top",
                                    "layer_engine"]


def test_config_and_top_are_one_argument_each(checkout):
    arguments = make_synth(checkout, "CONFIG=my run;touch INJECTED", "TOP=$(shell touch X)",
                           "PLACE=0")
    assert arguments == ["-m", "hw.synth", "--config", "my run;touch INJECTED", "--top",
                         "$(shell touch X)", "--no-place"]
    assert not (checkout / "INJECTED").exists() and not (checkout / "X").exists()
