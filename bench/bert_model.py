"""Digits-sequence BERT: float and integer accuracy, dense and pruned, and integer-vs-float
agreement (issue 19's accuracy part of ``build/bench/bert.json``).

:func:`run_accuracy` loads the dense digits BERT (``sw/train_digits.py --arch bert``; trained
first by ``sw/prune.py`` when missing), fine-prunes it with ``recipes/digits_bert.json`` at each
target linear density (or reuses an earlier ``sw/prune.py`` output of that recipe), quantizes
the dense and each pruned model (``sw.golden.bert_int``; the pruned model as its ``shrunk/``
folder, heads and FFN neurons removed, the same function as ``pruned/``), calibrated on the
first ``calibration`` training sequences, and measures on the validation sequences::

    {"task": "digits-sequence", "dense_accuracy", "dense_integer_accuracy",
     "dense_integer_agreement",
     "runs": [{"target_density", "linear_density", "accuracy", "integer_accuracy",
               "heads_removed", "heads_total", "integer_agreement"}],
     "integer_agreement", "calibration_sequences", "validation_sequences"}

``accuracy`` is the pruning report's (the masked ``pruned/`` model's); ``integer_agreement``
of a run is the fraction of validation sequences whose integer argmax equals the float
``shrunk/`` model's; the top-level ``integer_agreement`` is the smallest over the dense model
and every run. Not registered in ``python -m bench``; it writes nothing itself.

Command (from the repository root)::

    .venv/bin/python -m bench.bert_model [--pruned build/pruning/digits_bert]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sw.build_files import BUILD_ROOT, REPO_ROOT
from sw.golden.bert_int import predict, quantize_bert
from sw.models import load_model

TEACHER = BUILD_ROOT / "models" / "digits_bert"
RECIPE = REPO_ROOT / "recipes" / "digits_bert.json"
RUNS_DIR = BUILD_ROOT / "bench" / "bert_model"
TARGET_DENSITIES = (0.25,)
CALIBRATION_SEQUENCES = 256


def _float_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.double().numpy()


def _measure(model, split, calibration: int) -> dict:
    """Float and integer accuracy of ``model`` on ``split``'s validation sequences, and the
    fraction where the integer argmax equals the float one."""
    labels = split.val_labels.numpy()
    floats = _float_logits(model, split.val_ids).argmax(1)
    integer = quantize_bert(model, split.train_ids[:calibration], progress=False)
    integers = predict(integer, split.val_ids, progress=False).argmax(1)
    return {"accuracy": float((floats == labels).mean()),
            "integer_accuracy": float((integers == labels).mean()),
            "integer_agreement": float((integers == floats).mean())}


def _pruned_run(target: float, teacher_dir: Path, out: Path, progress: bool) -> dict:
    """The pruning report of ``out``, pruning the teacher there first unless ``out`` already
    holds a run of ``target``."""
    report_path = out / "pruning_report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        threshold = report.get("recipe", {}).get("pruning", {}).get("final_threshold")
        if threshold is not None and abs(threshold - target) < 1e-9:
            return report
        raise ValueError(f"{out}: a pruning run of final_threshold {threshold}, not {target}")
    from sw.prune import prune, resolve_recipe
    args, options = resolve_recipe(json.loads(RECIPE.read_text()), {"final_threshold": target})
    _, report = prune(args, options, teacher_dir=teacher_dir, out=out, progress=progress,
                      arch="bert")
    return report


def digits_split(teacher_dir, model):
    """The digits sequences' train/validation split of ``model`` (the teacher in
    ``teacher_dir``), every sequence unpadded.

    Raises
    ------
    ValueError
        If a digits sequence is padded.
    """
    from sw.prune import check_data
    split = check_data(Path(teacher_dir), "digits", None, arch="bert").load_split(model.config)
    lengths = split.val_ids.ne(split.pad_token_id).sum(1)
    if not bool((lengths == split.val_ids.shape[1]).all()):
        raise ValueError("digits sequences are expected to be unpadded")
    return split


def run_accuracy(targets=TARGET_DENSITIES, *, teacher_dir=TEACHER, pruned_dirs=None,
                 calibration: int = CALIBRATION_SEQUENCES, progress: bool = False) -> dict:
    """Measure the dense and pruned digits BERT, float and integer (see the module docstring).

    ``pruned_dirs[i]``: an ``sw/prune.py`` output for ``targets[i]`` to reuse (default: prune
    into ``build/bench/bert_model/density_<target>``, reusing an earlier run there).
    """
    teacher_dir = Path(teacher_dir)
    pruned_dirs = ([RUNS_DIR / f"density_{target}" for target in targets]
                   if pruned_dirs is None else [Path(p) for p in pruned_dirs])
    reports = [_pruned_run(target, teacher_dir, out, progress)
               for target, out in zip(targets, pruned_dirs)]      # trains the teacher if missing
    dense = load_model(teacher_dir)
    split = digits_split(teacher_dir, dense)
    measured = _measure(dense, split, calibration)
    document = {"task": "digits-sequence", "dense_accuracy": measured["accuracy"],
                "dense_integer_accuracy": measured["integer_accuracy"],
                "dense_integer_agreement": measured["integer_agreement"], "runs": [],
                "calibration_sequences": calibration,
                "validation_sequences": len(split.val_ids)}
    for target, out, report in zip(targets, pruned_dirs, reports):
        shrunk = load_model(out / "shrunk")
        run = _measure(shrunk, split, calibration)
        document["runs"].append({
            "target_density": target, "linear_density": report["linear_density"],
            "accuracy": report["accuracy"], "integer_accuracy": run["integer_accuracy"],
            "heads_removed": report["heads_removed"], "heads_total": report["heads_total"],
            "shrunk_accuracy": run["accuracy"], "integer_agreement": run["integer_agreement"]})
    document["integer_agreement"] = min(
        [document["dense_integer_agreement"]]
        + [run["integer_agreement"] for run in document["runs"]])
    return document


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", type=Path, default=TEACHER)
    parser.add_argument("--pruned", type=Path, action="append",
                        help="an sw/prune.py output of recipes/digits_bert.json to reuse "
                             "(one per --target)")
    parser.add_argument("--target", type=float, action="append",
                        help="target linear density (default 0.25)")
    parser.add_argument("--calibration", type=int, default=CALIBRATION_SEQUENCES)
    options = parser.parse_args(argv)
    targets = tuple(options.target) if options.target else TARGET_DENSITIES
    document = run_accuracy(targets, teacher_dir=options.teacher, pruned_dirs=options.pruned,
                            calibration=options.calibration)
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
