"""Atomic writes: a file or a whole output directory appears complete or not at all, and a
tool replaces only an output directory it wrote itself.

:func:`check_output_directory` is the refusal rule every tool that writes a directory shares
(absent, empty, or the tool's own earlier output); :func:`replace_directory` and
:func:`write_text` then write so that an error or an interruption (Ctrl-C included) leaves either
the previous output or the complete new one, and no hidden staging files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Collection
from pathlib import Path

__all__ = ["OutputRefused", "check_output_directory", "replace_directory", "write_text"]


class OutputRefused(ValueError):
    """An output path the tool must not write: it would replace or lose something of the user's,
    or it cannot be written at all."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _shown(path: Path) -> str:
    """``path`` for an error line (:func:`sw.cli.one_line`)."""
    from sw.cli import one_line
    return one_line(path)


def check_output_directory(out, *, manifest: str, contents: Collection[str]) -> None:
    """Refuse an output directory that :func:`replace_directory` could not replace safely.

    Accepted: ``out`` absent, with its nearest existing ancestor a directory this process can
    create entries in; ``out`` an empty directory; or ``out`` a directory holding ``manifest``
    (the tool's own record of an earlier run) and no entry whose name is not in ``contents``
    (everything the tool writes). Anything else would lose a file the tool did not write, or
    replace a regular file with a directory. Call it before the work, so a refusal costs nothing.

    Raises
    ------
    OutputRefused
        With one line naming the path and the reason.
    """
    out = Path(out)
    if out.is_symlink() or out.exists():
        if not out.is_dir():
            raise OutputRefused(f"{_shown(out)}: exists and is not a directory; refusing to "
                                f"replace it")
        try:
            entries = sorted(entry.name for entry in out.iterdir())
        except OSError as error:
            raise OutputRefused(f"{_shown(out)}: cannot list it: {error.strerror}") from None
        if entries:
            others = [name for name in entries if name not in contents]
            if manifest not in entries or not (out / manifest).is_file():
                raise OutputRefused(
                    f"{_shown(out)}: not empty and not an earlier output of this tool (no "
                    f"{manifest}); refusing to replace it")
            if others:
                listed = ", ".join(_shown(name) for name in others[:5])
                raise OutputRefused(
                    f"{_shown(out)}: holds files this tool did not write ({listed}"
                    f"{', ...' if len(others) > 5 else ''}); refusing to replace it")
    ancestor = out.absolute().parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputRefused(f"{_shown(out)}: cannot be created: {_shown(ancestor)} is not a "
                            f"directory")
    try:     # the only sure test of writability (root, read-only mounts, ACLs): try it
        probe = tempfile.mkdtemp(prefix=".write-test.", dir=ancestor)
    except OSError as error:
        raise OutputRefused(f"{_shown(out)}: cannot be written: {_shown(ancestor)}: "
                            f"{error.strerror or error}") from None
    os.rmdir(probe)


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold Ctrl-C (SIGINT) until the block ends, then deliver it: the block runs whole.

    Only the main thread can install signal handlers; elsewhere the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:                        # a handler installed outside Python
        yield
        return
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(signal.SIGINT, None)       # default_int_handler raises KeyboardInterrupt
        elif received and previous == signal.SIG_DFL:
            raise KeyboardInterrupt


def _discard(path: Path) -> None:
    """Remove ``path`` (a directory or a file) if it exists; errors are ignored, and an
    interruption part-way finishes the removal before it propagates."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_symlink() or path.exists():
            path.unlink()
    except OSError:
        pass
    except BaseException:
        with _interrupts_deferred():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_symlink() or path.exists():
                with contextlib.suppress(OSError):
                    path.unlink()
        raise


def write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling file and a rename.

    The file gets the permissions a plain ``open(path, "w")`` would give (``0666`` less the
    umask), not the temporary file's owner-only ``0600``. On any error or interruption the
    temporary file is removed and ``path`` keeps its previous content (or stays absent).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".partial", delete=False)
    temporary = Path(handle.name)
    try:
        with handle:
            handle.write(text)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        _discard(temporary)
        raise


def replace_directory(out, write) -> None:
    """Call ``write(staging)`` on a temporary sibling directory, then rename it over ``out``.

    At every moment ``out`` is either the previous directory, intact, or the complete new one:
    a failure inside ``write`` leaves ``out`` untouched; the previous ``out`` is moved aside,
    the new one renamed into place and only then the previous one deleted, and if the second
    rename fails the previous one is moved back. Ctrl-C is held during the two renames. Every
    exit path, KeyboardInterrupt included, removes the hidden ``.<name>.*.partial`` and
    ``.<name>.*.old`` siblings. (Only a kill that no handler sees between the two renames, or a
    failure of the rename back, leaves the previous output in the ``.old`` sibling, never
    deleted.)

    Raises
    ------
    NotADirectoryError
        If ``out`` exists and is not a directory (a file is never replaced by a directory).
    """
    out = Path(out)
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise NotADirectoryError(f"{_shown(out)}: exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    retired = None
    try:
        os.chmod(staging, 0o777 & ~_umask())        # as mkdir would, not mkdtemp's 0700
        write(staging)
        if not (out.exists() or out.is_symlink()):
            os.replace(staging, out)
            return
        retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        previous = retired / out.name
        with _interrupts_deferred():
            os.replace(out, previous)
            try:
                os.replace(staging, out)
            except BaseException:
                os.replace(previous, out)           # put the previous output back
                raise
    finally:
        try:
            _discard(staging)
        finally:
            # Never delete the previous output while it is the only copy (the rename back failed)
            if retired is not None and (out.exists() or out.is_symlink()):
                _discard(retired)
