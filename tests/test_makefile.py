"""The Makefile passes its variables to commands as data: ``make verilog CONFIG='tiny;echo
INJECTED'`` must not run ``echo`` (issue 14, item 9). Each case runs the real Makefile in a
temporary copy of the checkout's top, with a stand-in ``.venv/bin/python`` that records its
arguments."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

RECORDER = """#!/bin/sh
for argument in "$@"; do printf '%s\\0' "$argument"; done > "$(dirname "$0")/../../arguments"
"""


def run_make(checkout: Path, *arguments: str) -> subprocess.CompletedProcess:
    # Not the variables of a ``make test`` this may run under.
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CONFIG")}
    return subprocess.run(["make", "--no-print-directory", *arguments], cwd=checkout,
                          env=environment, capture_output=True, text=True, timeout=60)


@pytest.fixture
def checkout(tmp_path):
    """The Makefile and a pyproject.toml, with a venv stamp newer than it (``setup`` is done)."""
    shutil.copy(REPO_ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(RECORDER)
    python.chmod(0o755)
    stamp = tmp_path / ".venv" / ".installed"
    stamp.write_text("")
    os.utime(tmp_path / "pyproject.toml", (1, 1))
    return tmp_path


@pytest.mark.parametrize("config", [
    "tiny;touch INJECTED",
    "tiny && touch INJECTED",
    "`touch INJECTED`",
    "$$(touch INJECTED)",
    "$(shell touch INJECTED)",
    "it's;touch INJECTED;'",
    "images/my run/params.json",
    "tiny",
])
def test_verilog_passes_config_as_one_argument(checkout, config):
    result = run_make(checkout, "verilog", f"CONFIG={config}")
    assert result.returncode == 0, result.stderr
    arguments = (checkout / "arguments").read_text().split("\0")[:-1]
    assert arguments == ["-m", "hw.generate", "--config", config]
    assert not (checkout / "INJECTED").exists()


def test_verilog_default_config_is_tiny(checkout):
    assert run_make(checkout, "verilog").returncode == 0
    assert (checkout / "arguments").read_text().split("\0")[:-1] == [
        "-m", "hw.generate", "--config", "tiny"]
