"""Pruning benchmark: fine-prune the digits DeiT to linear densities near 0.5, 0.25 and 0.1.

Writes ``build/bench/pruning.json``::

    {"dense_accuracy": ..., "runs": [{"target_linear_density", "linear_density", "accuracy",
      "heads_removed", "heads_total", "ffn_density", "filled", "seconds"}, ...]}

Every run uses ``recipes/digits_deit.json`` with ``final_threshold`` set to the target (topK:
the fraction of blocks / neurons kept per linear). Each target gives two entries: ``filled:
false`` is the block-sparse pruned model (masks in force, dense baseline = the teacher's
Q/K/V/O/FC1/FC2 weights), ``filled: true`` the shrunk model with in-head masks dropped after
its own fine-tune. Each run's full report goes to ``build/bench/pruning/<target>/``.
"""

from __future__ import annotations

import json

from sw.build_files import BENCH_ROOT, write_json
from sw.prune import DEFAULT_RECIPE, DEFAULT_TEACHER, prune, resolve_recipe

OUTPUT = BENCH_ROOT / "pruning.json"
RUNS_DIR = BENCH_ROOT / "pruning"
TARGET_DENSITIES = (0.5, 0.25, 0.1)


def run(targets=TARGET_DENSITIES, *, progress: bool = False) -> dict:
    """Run one fine-pruning per target density and write ``OUTPUT``; return the document."""
    recipe = json.loads(DEFAULT_RECIPE.read_text())
    document = {"dense_accuracy": None, "recipe": str(DEFAULT_RECIPE.name), "runs": []}
    for target in targets:
        args, options = resolve_recipe(recipe, {"final_threshold": target})
        print(f"pruning the digits DeiT to linear density ~{target}...", flush=True)
        _, report = prune(args, options, teacher_dir=DEFAULT_TEACHER,
                          out=RUNS_DIR / f"density_{target}", progress=progress)
        document["dense_accuracy"] = report["dense_accuracy"]
        common = {"target_linear_density": target, "heads_removed": report["heads_removed"],
                  "heads_total": report["heads_total"], "ffn_density": report["ffn_density"],
                  "seconds": report["seconds"]}
        document["runs"].append({"linear_density": report["linear_density"],
                                 "accuracy": report["accuracy"], **common, "filled": False})
        if "filled" in report:
            document["runs"].append({"linear_density": report["filled"]["linear_density"],
                                     "accuracy": report["filled"]["accuracy"], **common,
                                     "filled": True})
        print(f"  linear density {report['linear_density']:.3f} accuracy "
              f"{report['accuracy']:.4f} heads removed {report['heads_removed']}/"
              f"{report['heads_total']} ({report['seconds']:.0f} s)", flush=True)
    write_json(document, OUTPUT)
    return document


if __name__ == "__main__":
    run()
