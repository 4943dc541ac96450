"""The packages depend downward only (``flow`` and ``bench`` above ``sim`` above ``hw`` above
``sw``), and none imports a private name (``_name``) of another package (issue 15, item 7)."""

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Each source package and the packages it may import.
ALLOWED = {"sw": {"sw"}, "hw": {"hw", "sw"}, "sim": {"sim", "hw", "sw"},
           "flow": {"flow", "sim", "hw", "sw"}, "bench": {"bench", "flow", "sim", "hw", "sw"}}
PROJECT_PACKAGES = set(ALLOWED) | {"tests"}


def imports(path: Path):
    """``(line, module, names)`` of every import of ``path`` (at any depth)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, [alias.name for alias in node.names]


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        where = path.relative_to(REPO_ROOT)
        for line, module, names in imports(path):
            top = module.split(".")[0]
            if top not in PROJECT_PACKAGES:
                continue
            if top not in ALLOWED[package]:
                found.append(f"{where}:{line}: {package} imports {module}")
            if top != package:
                found += [f"{where}:{line}: private {module}.{name}" for name in names
                          if name.startswith("_") and not name.startswith("__")]
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_downward_and_no_private_names(package):
    assert violations(package) == []


def test_the_check_finds_an_upward_and_a_private_import(tmp_path, monkeypatch):
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "bad.py").write_text(
        "from bench.units import run\nimport tests.sw\nfrom sw.prune import _split_for\n"
        "from sim.harness import _private_here\n")
    monkeypatch.setitem(globals(), "REPO_ROOT", tmp_path)
    assert violations("sim") == ["sim/bad.py:1: sim imports bench.units",
                                 "sim/bad.py:2: sim imports tests.sw",
                                 "sim/bad.py:3: private sw.prune._split_for"]
