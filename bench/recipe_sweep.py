"""Recipe sweep: the token benchmark's goal setting (keep rate 0.7 with 25 % block pruning, the
digits DeiT) under variations of the training recipe, each at several seeds.

Run ``python -m bench.recipe_sweep`` (about an hour on two cores; not part of ``make bench``),
or ``--variants recipe ft10 --seeds 0 1 2`` for a part. Every run is one process with one CPU
thread (``OMP_NUM_THREADS=1``), two at a time: results are bit-reproducible for a given thread
count, and one thread per run uses both cores with no contention. ``bench.tokens`` runs the
chosen recipe at the default thread count, which gives other (equally valid) draws.

Writes ``build/bench/recipe_sweep.json``::

    {"setting": {...}, "threads": 1, "runs": [{"variant", "seed", "overrides", "accuracy",
      "validation_images", "filled_accuracy", "heads_removed", "linear_density", "seconds"},
      ...],
     "means": [{"variant", "overrides", "seeds", "accuracy", "filled_accuracy",
                "wrong_images"}, ...]}

Each variant names every recipe key it sets, so it means the same run whatever the recipe's
own values are (``recipes/digits_deit_tokens.json``; ``recipe`` is the file as it is).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from sw.build_files import BENCH_ROOT, BUILD_ROOT, write_json

OUTPUT = BENCH_ROOT / "recipe_sweep.json"
SEEDS = (0, 1, 2, 3, 4)
#: Variant name -> recipe overrides ``{"pruning": {...}, "training": {...}}``.
VARIANTS: dict[str, dict] = {
    "recipe": {},
    "ft10": {"training": {"epochs": 20, "final_finetune_epochs": 10}},
    "ft20": {"training": {"epochs": 20, "final_finetune_epochs": 20}},
    "ep40_ft10": {"training": {"epochs": 40, "final_finetune_epochs": 10}},
    "ep40_ft20": {"training": {"epochs": 40, "final_finetune_epochs": 20}},
    "ft10_average5": {"training": {"epochs": 20, "final_finetune_epochs": 10,
                                   "finetune_average_epochs": 5}},
    "ft20_average10": {"training": {"epochs": 20, "final_finetune_epochs": 20,
                                    "finetune_average_epochs": 10}},
    "ft10_temperature4": {"pruning": {"distil_temperature": 4.0},
                          "training": {"epochs": 20, "final_finetune_epochs": 10}},
    "ft10_mask_lr0.05": {"pruning": {"mask_scores_learning_rate": 0.05},
                         "training": {"epochs": 20, "final_finetune_epochs": 10}},
    "ft10_mixup0.4": {"training": {"epochs": 20, "final_finetune_epochs": 10,
                                   "mixup_alpha": 0.4}},
}


def run_one(variant: str, seed: int) -> dict:
    """One fine-pruning run of ``variant`` at ``seed`` in this process; returns its entry."""
    from bench.tokens import GOAL, RECIPE
    from sw.prune import DEFAULT_TEACHER, split_for, prune, resolve_recipe, resolve_token_recipe
    overrides = VARIANTS[variant]
    recipe = json.loads(RECIPE.read_text())
    pruning = dict(overrides.get("pruning", {}))
    if not GOAL["block_pruned"]:
        pruning["final_threshold"] = 1.0
    args, options = resolve_recipe(recipe, pruning, {**overrides.get("training", {}),
                                                     "seed": seed})
    tokens = resolve_token_recipe(recipe, {"keep_rate": GOAL["keep_rate"]})
    started = time.monotonic()
    result, report = prune(args, options, teacher_dir=DEFAULT_TEACHER, out=None,
                           progress=False, tokens=tokens)
    images = len(split_for(DEFAULT_TEACHER, int(result.pruned.config.image_size)).val_labels)
    return {"variant": variant, "seed": seed, "overrides": overrides,
            "accuracy": report["accuracy"], "validation_images": images,
            "filled_accuracy": report.get("filled", {}).get("accuracy"),
            "heads_removed": report["heads_removed"], "linear_density": report["linear_density"],
            "dense_accuracy": report["dense_accuracy"],
            "seconds": round(time.monotonic() - started, 1)}


def _in_subprocess(variant: str, seed: int) -> dict:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, "-m", "bench.recipe_sweep", "--one", variant,
                                str(seed)], capture_output=True, text=True, env=environment,
                               cwd=BUILD_ROOT.parent)
    if completed.returncode != 0:
        raise RuntimeError(f"recipe sweep run {variant} seed {seed} failed:\n"
                           f"{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def means(runs: list[dict]) -> list[dict]:
    """Per variant: its seeds and the mean accuracies over them."""
    result = []
    for variant in dict.fromkeys(run["variant"] for run in runs):
        mine = [run for run in runs if run["variant"] == variant]
        accuracy = sum(run["accuracy"] for run in mine) / len(mine)
        filled = [run["filled_accuracy"] for run in mine if run["filled_accuracy"] is not None]
        result.append({"variant": variant, "overrides": mine[0]["overrides"],
                       "seeds": [run["seed"] for run in mine], "accuracy": accuracy,
                       "filled_accuracy": sum(filled) / len(filled) if filled else None,
                       "wrong_images": [round((1 - run["accuracy"]) * run["validation_images"])
                                        for run in mine]})
    return result


def run(variants=tuple(VARIANTS), seeds=SEEDS, *, output=OUTPUT, workers: int = 2) -> dict:
    """Run every variant at every seed (``workers`` one-thread processes at a time); write
    ``output`` after each run and return the document."""
    from bench.tokens import GOAL
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    document = {"setting": GOAL, "threads": 1, "dense_accuracy": None, "runs": [],
                "means": []}
    jobs = [(variant, seed) for variant in variants for seed in seeds]
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_in_subprocess, *job) for job in jobs]
        for future in futures:
            entry = future.result()
            document["dense_accuracy"] = entry.pop("dense_accuracy")
            document["runs"].append(entry)
            document["means"] = means(document["runs"])
            print(f"{entry['variant']} seed {entry['seed']}: accuracy {entry['accuracy']:.4f} "
                  f"({entry['seconds']:.0f} s)", flush=True)
            write_json(document, output)
    return document


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "SEED"),
                        help=argparse.SUPPRESS)      # one run, in this process (the workers)
    options = parser.parse_args(argv)
    if options.one:
        print(json.dumps(run_one(options.one[0], int(options.one[1]))), flush=True)
        return 0
    run(options.variants, options.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
