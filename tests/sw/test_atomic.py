"""Atomic writes keep the permissions a plain write would give."""

import os
import stat

from sw.atomic import replace_directory, write_text


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
