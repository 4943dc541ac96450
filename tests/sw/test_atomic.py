"""Atomic writes: permissions, recovery from interruption at every step, refusing outputs."""

import os
import shutil
import signal
import stat

import pytest

from sw.atomic import OutputRefused, check_output_directory, replace_directory, write_text


def test_written_files_and_directories_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x\n")
        replace_directory(tmp_path / "out", lambda d: (d / "f").write_text("y"))
    finally:
        os.umask(previous)
    assert (tmp_path / "a.txt").read_text() == "x\n"
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "out"]


# --- recoverable replacement ------------------------------------------------------------------

def _fail_on_call(monkeypatch, module, name, failing_call):
    """Make ``module.name`` raise KeyboardInterrupt on its ``failing_call``-th call only."""
    real = getattr(module, name)
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args)
        if len(calls) == failing_call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, interrupted)
    return calls


def _previous_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "f").write_text("old")
    return out


def _write_new(staging):
    (staging / "f").write_text("new")


@pytest.mark.parametrize("failing_call, expected", [(1, "old"), (2, "old")])
def test_interrupted_rename_keeps_the_previous_output(tmp_path, monkeypatch, failing_call,
                                                      expected):
    """1st os.replace moves the old output aside, 2nd moves the new one in: an interruption at
    either leaves the old output in place and no hidden siblings."""
    out = _previous_output(tmp_path)
    calls = _fail_on_call(monkeypatch, os, "replace", failing_call)
    with pytest.raises(KeyboardInterrupt):
        replace_directory(out, _write_new)
    assert len(calls) >= failing_call
    assert (out / "f").read_text() == expected
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_previous_output_is_never_deleted_while_it_is_the_only_copy(tmp_path, monkeypatch):
    """The rename of the new output and the rename back both fail: the previous output stays
    in the hidden ``.old`` sibling instead of being cleaned up with it."""
    out = _previous_output(tmp_path)
    real_replace = os.replace
    calls = []

    def failing_after_the_first(*args):
        calls.append(args)
        if len(calls) > 1:
            raise OSError("device gone")
        return real_replace(*args)
    monkeypatch.setattr(os, "replace", failing_after_the_first)
    with pytest.raises(OSError, match="device gone"):
        replace_directory(out, _write_new)
    assert len(calls) == 3 and not out.exists()
    [kept] = [path for path in tmp_path.rglob("f")]
    assert kept.read_text() == "old" and kept.parent.parent.name.endswith(".old")


def test_interrupted_first_rename_of_a_new_output_leaves_nothing(tmp_path, monkeypatch):
    _fail_on_call(monkeypatch, os, "replace", 1)
    with pytest.raises(KeyboardInterrupt):
        replace_directory(tmp_path / "out", _write_new)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("write_fails", [False, True])
def test_interrupted_cleanup_still_cleans_up(tmp_path, monkeypatch, write_fails):
    """The rmtree of the retired old output (after a success) or of the staging directory (after
    a failed write), interrupted: the removal is finished before the KeyboardInterrupt
    propagates, and ``out`` is the new output or the old one."""
    out = _previous_output(tmp_path)
    calls = _fail_on_call(monkeypatch, shutil, "rmtree", 1)

    def write(staging):
        _write_new(staging)
        if write_fails:
            raise OSError("disk full")
    with pytest.raises(KeyboardInterrupt):
        replace_directory(out, write)
    assert len(calls) == 2                                # the interrupted one and the retry
    assert (out / "f").read_text() == ("old" if write_fails else "new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_interrupted_write_leaves_the_previous_output(tmp_path):
    out = _previous_output(tmp_path)

    def interrupted_write(staging):
        _write_new(staging)
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        replace_directory(out, interrupted_write)
    assert (out / "f").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_ctrl_c_between_the_renames_is_held_until_the_new_output_is_in_place(tmp_path,
                                                                             monkeypatch):
    """A real SIGINT arriving during the first rename is delivered after the second."""
    out = _previous_output(tmp_path)
    real_replace = os.replace
    seen = []

    def replace_and_signal(source, target):
        real_replace(source, target)
        if not seen:
            seen.append(target)
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(os, "replace", replace_and_signal)
    with pytest.raises(KeyboardInterrupt):
        replace_directory(out, _write_new)
    assert (out / "f").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_file_is_never_replaced_by_a_directory(tmp_path):
    thesis = tmp_path / "thesis.txt"
    thesis.write_text("years of work")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        replace_directory(thesis, _write_new)
    assert thesis.read_text() == "years of work"
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.txt"]


def test_interrupted_write_text_keeps_the_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    target.write_text("old\n")
    _fail_on_call(monkeypatch, os, "replace", 1)
    with pytest.raises(KeyboardInterrupt):
        write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_write_text_leaves_no_temporary(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "chmod", lambda *args: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(OSError):
        write_text(tmp_path / "a.txt", "x")
    assert list(tmp_path.iterdir()) == []


# --- refusing an output directory ---------------------------------------------------------------

OWN = dict(manifest="record.json", contents=("record.json", "model.bin"))


def test_output_accepted_when_absent_empty_or_the_tools_own(tmp_path):
    check_output_directory(tmp_path / "new" / "deeper", **OWN)
    (tmp_path / "empty").mkdir()
    check_output_directory(tmp_path / "empty", **OWN)
    own = tmp_path / "own"
    own.mkdir()
    (own / "record.json").write_text("{}")
    (own / "model.bin").write_text("")
    check_output_directory(own, **OWN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "own"]   # the probe is gone


@pytest.mark.parametrize("setup, message", [
    (lambda out: out.write_text("thesis"), "{out}: exists and is not a directory; refusing to "
                                           "replace it"),
    (lambda out: (out.mkdir(), (out / "thesis.txt").write_text("x")),
     "{out}: not empty and not an earlier output of this tool (no record.json); refusing to "
     "replace it"),
    (lambda out: (out.mkdir(), (out / "record.json").write_text("{}"),
                  (out / "thesis.txt").write_text("x"), (out / "a\nb").write_text("x")),
     "{out}: holds files this tool did not write (a\\nb, thesis.txt); refusing to replace it"),
    (lambda out: (out.mkdir(), (out / "record.json").mkdir()),
     "{out}: not empty and not an earlier output of this tool (no record.json); refusing to "
     "replace it"),
])
def test_output_refused_when_it_would_lose_the_users_files(tmp_path, setup, message):
    out = tmp_path / "out"
    setup(out)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(OutputRefused) as error:
        check_output_directory(out, **OWN)
    assert str(error.value) == message.format(out=out)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_output_refused_under_a_file_or_where_it_cannot_be_written(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputRefused, match=r"/file/out: cannot be created: .*/file is not a "
                                            r"directory$"):
        check_output_directory(tmp_path / "file" / "out", **OWN)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("tempfile.mkdtemp", denied)
    with pytest.raises(OutputRefused, match=r"/a/b: cannot be written: .*: Permission denied$"):
        check_output_directory(tmp_path / "a" / "b", **OWN)
    assert not (tmp_path / "a").exists()
