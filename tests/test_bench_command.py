"""``python -m bench``: ``--help`` and ``--list`` start no benchmark, a name runs just that one
(issue 14, item 14: ``--help`` used to start every benchmark)."""

import subprocess
import sys
import types
from pathlib import Path

import pytest

import bench.__main__ as bench_main

REPO_ROOT = Path(__file__).resolve().parents[1]

IMPORTED_BENCHMARKS = ("import sys\nfrom bench.__main__ import main\ntry:\n    main({argv})\n"
                       "except SystemExit:\n    pass\n"
                       "print(sorted(m for m in sys.modules if m.startswith('bench.')))\n")


@pytest.mark.parametrize("argv", [["--help"], ["--list"]])
def test_help_and_list_import_no_benchmark(argv):
    result = subprocess.run([sys.executable, "-c", IMPORTED_BENCHMARKS.format(argv=argv)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                            check=True)
    assert result.stdout.splitlines()[-1] == "['bench.__main__']"


def test_help_names_every_benchmark(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench_main.main(["--help"])
    assert exit_.value.code == 0
    assert "benchmarks, in the order they run: fidelity, pruning, tokens, gemm, units, layer" in \
        " ".join(capsys.readouterr().out.split())


def test_list_gives_each_benchmark_its_docstring_line(capsys):
    assert bench_main.main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(bench_main.BENCHMARKS)
    assert lines[3] == ("gemm      GEMM benchmark: a DeiT-B FFN-shaped GEMM (197 x 768 times "
                        "768 x 3072) on a 16 x 16 array, co-simulated at block densities 1.0, "
                        "0.5, 0.25 and 0.1.")


@pytest.fixture
def recorded(monkeypatch):
    """Two stand-in benchmark modules that record their runs."""
    runs = []
    registry = {}
    for name in ("first", "second"):
        module = types.ModuleType(f"stand_in_{name}")
        module.run = lambda name=name: runs.append(name)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        registry[name] = module.__name__
    monkeypatch.setattr(bench_main, "BENCHMARKS", registry)
    return runs


def test_no_name_runs_all_in_registry_order(recorded):
    assert bench_main.main([]) == 0
    assert recorded == ["first", "second"]


def test_names_run_just_those_once_in_the_order_given(recorded):
    assert bench_main.main(["second", "first", "second"]) == 0
    assert recorded == ["second", "first"]


def test_an_unknown_name_runs_nothing(recorded, capsys):
    assert bench_main.main(["first", "nope"]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "", "error: unknown benchmark 'nope'; benchmarks: first, second\n")
    assert recorded == []
