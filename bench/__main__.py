"""``python -m bench [NAME ...]``: run the benchmarks (``make bench`` runs them all).

``--list`` names them with the first sentence of each module's docstring; ``--help`` and ``--list``
import no benchmark, so they answer at once. Each benchmark is a module of this package with a
``run()`` that writes its JSON under ``build/bench/``; :data:`BENCHMARKS` is the registry.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import sys
from pathlib import Path

#: Name -> module of every benchmark, in the order ``make bench`` runs them. Adding one is one
#: line here: a module with a ``run()`` that needs no arguments.
BENCHMARKS = {
    "fidelity": "bench.fidelity",
    "pruning": "bench.pruning",
    "tokens": "bench.tokens",
    "gemm": "bench.gemm",
    "units": "bench.units",
    "layer": "bench.layer",
    "model": "bench.model",
    "bert": "bench.bert",
    "synth": "bench.synth",
}


def summary(name: str) -> str:
    """First sentence of the benchmark's module docstring, read without importing the module."""
    origin = importlib.util.find_spec(BENCHMARKS[name]).origin
    docstring = ast.get_docstring(ast.parse(Path(origin).read_text(encoding="utf-8"))) or ""
    paragraph = " ".join(docstring.split("\n\n", 1)[0].split())
    return paragraph.split(". ", 1)[0].removesuffix(".") + "."


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run the benchmarks; each writes a JSON document "
        "under build/bench/.",
        epilog=f"benchmarks, in the order they run: {', '.join(BENCHMARKS)}")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="benchmarks to run, in the order given (default: all)")
    parser.add_argument("--list", action="store_true",
                        help="name each benchmark and what it measures, run none")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark {unknown[0]!r}; benchmarks: {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    if args.list:
        width = max(map(len, BENCHMARKS))
        for name in BENCHMARKS:
            print(f"{name:<{width}}  {summary(name)}")
        return 0
    for name in dict.fromkeys(args.names) or BENCHMARKS:      # each once, in the order given
        importlib.import_module(BENCHMARKS[name]).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
