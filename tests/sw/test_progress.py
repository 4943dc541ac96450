"""Progress bars only on a terminal, none after ``--no-progress``, the libraries' bars
included (issue 15, item 7: a redirected ``make demo`` log was 128 KB of carriage returns)."""

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import huggingface_hub.utils
import pytest
import transformers.utils.logging

from sw.progress import bars_wanted, limit_library_bars, progress_bar
from sw.synthetic_deit import save_pruned_deit

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Draws a three-step bar and writes one plain line through tqdm.
BAR_SCRIPT = ("import sys\nfrom sw.progress import progress_bar\n"
              "bar = progress_bar(range(3), enabled=sys.argv[1] == 'on', desc='steps')\n"
              "for _ in bar:\n    bar.write('plain line', file=sys.stderr)\n")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def library_bars():
    """The libraries' bars on before the test and after it (process-wide state that an
    in-process export of another test may have turned off)."""
    transformers.utils.logging.enable_progress_bar()
    huggingface_hub.utils.enable_progress_bars()
    yield
    transformers.utils.logging.enable_progress_bar()
    huggingface_hub.utils.enable_progress_bars()


def test_bars_only_when_requested_and_on_a_terminal():
    assert bars_wanted(True, _Terminal())
    assert not bars_wanted(False, _Terminal())
    assert not bars_wanted(True, io.StringIO())
    assert not bars_wanted(True, object())          # no isatty at all


def _stderr_of_bar_script(argument: str, *, terminal: bool) -> bytes:
    command = [sys.executable, "-c", BAR_SCRIPT, argument]
    if not terminal:
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, timeout=120,
                              check=True)
        return done.stderr
    leader, follower = pty.openpty()
    # 24 x 80: tqdm hides a bar on a terminal of 0 rows, which a bare pty reports
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                   stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:                      # EIO: the process closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=120) == 0
    finally:
        os.close(leader)
    return b"".join(chunks)


def test_a_bar_draws_on_a_terminal_only_and_plain_lines_print_everywhere():
    on_terminal = _stderr_of_bar_script("on", terminal=True)
    assert b"\r" in on_terminal and b"steps" in on_terminal
    redirected = _stderr_of_bar_script("on", terminal=False)
    assert redirected == b"plain line\n" * 3
    assert b"steps" not in _stderr_of_bar_script("off", terminal=True)


def test_progress_bar_disabled_off_a_terminal(capsys):
    assert list(progress_bar(range(4), desc="steps")) == [0, 1, 2, 3]
    assert capsys.readouterr().err == ""           # pytest's captured stderr is no terminal


def test_library_bars_stay_on_a_terminal_unless_no_progress(library_bars, monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    limit_library_bars(True)
    assert transformers.utils.logging.is_progress_bar_enabled()
    assert not huggingface_hub.utils.are_progress_bars_disabled()
    limit_library_bars(False)                       # --no-progress
    assert not transformers.utils.logging.is_progress_bar_enabled()
    assert huggingface_hub.utils.are_progress_bars_disabled()


def test_library_bars_off_when_stderr_is_no_terminal(library_bars):
    limit_library_bars(True)
    assert not transformers.utils.logging.is_progress_bar_enabled()
    assert huggingface_hub.utils.are_progress_bars_disabled()


def test_export_redirected_writes_no_carriage_return(tmp_path):
    """transformers' "Loading weights" bar was the one ``--no-progress`` did not silence."""
    model = save_pruned_deit(tmp_path / "run", removed_heads={}, removed_neurons={},
                             hidden_size=32, num_heads=2, intermediate_size=64, num_layers=1,
                             image_size=8)
    done = subprocess.run([sys.executable, str(REPO_ROOT / "sw" / "export_sparse.py"),
                           "--model", str(model), "--config", "tiny", "--out",
                           str(tmp_path / "image"), "--calibration-images", "8"],
                          cwd=tmp_path, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert b"\r" not in done.stderr + done.stdout
