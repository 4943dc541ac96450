"""Where the project's commands write (the repository's ``build/`` tree and its fixed
sub-directories) and how they write a JSON document (atomically): one definition for ``hw``,
``sim``, ``bench`` and ``flow``."""

from __future__ import annotations

import json
from pathlib import Path

from sw.atomic import write_text

__all__ = ["BENCH_ROOT", "BUILD_ROOT", "DIGITS_TEACHER", "REPO_ROOT", "shown_path", "write_json"]

#: The repository's root (this file is ``sw/build_files.py``).
REPO_ROOT = Path(__file__).resolve().parents[1]

#: Everything the commands generate: ``build/<config name>/`` (``make verilog``),
#: ``build/sim/`` (Verilator builds), ``build/models/``, ``build/pruning/``, ``build/images/``,
#: ``build/bench/`` and ``build/demo/``. ``make clean`` removes it.
BUILD_ROOT = REPO_ROOT / "build"

#: ``make bench``'s JSON documents and work directories.
BENCH_ROOT = BUILD_ROOT / "bench"

#: The dense digits DeiT teacher ``python sw/train_digits.py`` writes by default.
DIGITS_TEACHER = BUILD_ROOT / "models" / "digits_deit"


def shown_path(path) -> str:
    """``path`` relative to the repository when it lies inside it (shorter lines in messages
    and reports), else as given."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def write_json(document, path) -> None:
    """Write ``document`` to ``path`` as indented JSON, atomically (a temporary sibling file,
    then a rename: :func:`sw.atomic.write_text`)."""
    write_text(path, json.dumps(document, indent=2) + "\n")
