"""Atomic writes: a file or a whole output directory appears complete or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling file and a rename.

    The file gets the permissions a plain ``open(path, "w")`` would give (``0666`` less the
    umask), not the temporary file's owner-only ``0600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as handle:
        handle.write(text)
    os.chmod(handle.name, 0o666 & ~_umask())
    os.replace(handle.name, path)


def replace_directory(out, write) -> None:
    """Call ``write(staging)`` on a temporary sibling directory, then rename it over ``out``.

    A failure inside ``write`` removes the staging directory and leaves ``out`` untouched; an
    existing ``out`` is replaced whole.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    os.chmod(staging, 0o777 & ~_umask())        # as mkdir would, not mkdtemp's 0700
    try:
        write(staging)
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old",
                                            dir=out.parent))
            os.replace(out, retired / out.name)
            os.replace(staging, out)
            shutil.rmtree(retired)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
