"""``make demo``: the flow end to end, from a trained digits DeiT to whole layers on the RTL,
answering: how accurate is the pruned model, and how much faster does it run?

1. The dense digits DeiT teacher (``build/models/digits_deit``; trained first if missing, about
   a minute).
2. Fine-pruning of it with the full recipe ``recipes/digits_deit_tokens.json`` (about a minute
   and a half on an idle 2-core machine): block movement pruning to 25 % of the linear weights
   with distillation, heads and FFN neurons removed, both layers pruning tokens (keep rate 0.7,
   fused), then the recipe's fine-tunes.
3. Export with ``sw.image.export`` for the ``tiny`` hardware: the pruned model into
   ``build/images/digits_deit_demo/`` and, with the same exporter and hardware, the unpruned
   teacher into ``build/images/digits_deit_dense/`` (``weights.bin``, ``params.json``,
   ``manifest.json``: the whole model, patch embedding and classifier included); each
   image's golden model, layer by layer and image in to logits out, is checked equal to the
   one quantized from its torch model.
4. Top-1 accuracy of both whole integer (golden) models on the teacher's validation split:
   the patch embedding and the head in integers too (``sw.golden.model_stages``, calibrated on
   the export's images, the stages the image holds), what the RTL runs.
5. Generate the layer engine from each ``params.json`` (what ``make verilog CONFIG=...`` does,
   top ``layer_engine``, into ``build/<config name>/``) and build it with Verilator.
6. Run both whole models on the layer engine for :data:`DEMO_IMAGES` validation images, image
   in and int8 logits out (``sim.encoder_replay.model_cases``, every program and weight from
   the image): the host loads only the quantized patch rows and the position table; the embedding program, every layer and the
   head program run one after the other on what the one before left in the scratchpad; every
   program bit-exact to the golden model, every instruction's cycles equal to the cycle model,
   the logits equal to the whole integer model's (``==``).
7. Write ``build/demo/report.json``, ``report.md`` and plots (``flow.demo_report``), with
   ``make bench``'s pruning runs (``build/bench/pruning.json``, ``tokens.json``) on the
   accuracy-against-cycles plot when they exist (their cycles from the cycle model), and time
   at Fmax where each model's layer engine has been placed and routed (``make synth
   CONFIG=build/images/<name>/params.json``; the report names the command where not).

``--no-progress`` hides every progress bar; bars are drawn only on a terminal anyway.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from flow.demo_report import build_report, console_summary, write_report
from hw.generate import generate
from hw.synth import report_path
from hw.synth.throughput import ENGINE_TOP, engine_clock, missing_clock
from sim.harness import TestbenchFailed, build
from sim.layer_replay import image_cases, model_cycles
from sim.replay import nonzero_macs
from sw.build_files import BENCH_ROOT, BUILD_ROOT, REPO_ROOT, shown_path
from sw.config import load_config
from sw.image.export import ExportError, ExportRequest, export, verify, write
from sw.image.loader import load_image
from sw.image.summary import summary_table
from sw.progress import limit_library_bars

#: The demo's image directory names (also their accelerator config names).
IMAGE_NAME = "digits_deit_demo"
DENSE_NAME = "digits_deit_dense"
IMAGE_DIR = BUILD_ROOT / "images" / IMAGE_NAME
DENSE_DIR = BUILD_ROOT / "images" / DENSE_NAME
PRUNING_DIR = BUILD_ROOT / "pruning" / IMAGE_NAME
REPORT_DIR = BUILD_ROOT / "demo"
#: ``make bench``'s documents whose pruned runs join the accuracy-against-cycles plot: each
#: file, the directory of its runs, and how a run's directory is named.
BENCH_RUNS = ((BENCH_ROOT / "pruning.json", BENCH_ROOT / "pruning", "bench pruned"),
              (BENCH_ROOT / "tokens.json", BENCH_ROOT / "tokens", "bench tokens"))
HARDWARE = "tiny"
#: Validation images each model's whole encoder runs on the RTL (chained layers).
DEMO_IMAGES = 8
STEPS = 7

#: The recipe the demo prunes with, unchanged: block pruning plus token pruning in both layers.
DEMO_RECIPE = REPO_ROOT / "recipes" / "digits_deit_tokens.json"

#: Hardware knobs the dense and the pruned engine must share (only buffer depths may differ:
#: each export sizes them for its model).
SHARED_KNOBS = ("array_rows", "array_cols", "block_rows", "block_cols", "data_width",
                "acc_width", "multiplier_width", "softmax_lanes", "gelu_lanes",
                "layernorm_lanes")


#: The knobs each export sizes for its model.
BUFFER_KNOBS = ("act_buffer_depth", "weight_buffer_depth", "out_buffer_depth")


class DemoFailed(RuntimeError):
    """A step of the demo failed; the message says which and why."""


class _Steps:
    """Numbered step headers with wall times."""

    def __init__(self):
        self.times: list[dict] = []

    @contextmanager
    def step(self, title: str, key: str):
        print(f"\n[{len(self.times) + 1}/{STEPS}] {title}", flush=True)
        started = time.monotonic()
        yield
        seconds = time.monotonic() - started
        self.times.append({"step": key, "seconds": round(seconds, 2)})
        print(f"      ({seconds:.1f} s)", flush=True)


def teacher(progress: bool) -> Path:
    from sw.prune import DEFAULT_TEACHER
    if (DEFAULT_TEACHER / "config.json").exists():
        print(f"      found {DEFAULT_TEACHER}")
    else:
        from sw.train_digits import train
        print(f"      training the dense digits teacher into {DEFAULT_TEACHER}...", flush=True)
        train(DEFAULT_TEACHER, progress=progress)
    return DEFAULT_TEACHER


def prune_with_recipe(teacher_dir: Path, progress: bool) -> dict:
    from sw.prune import prune, resolve_recipe, resolve_token_recipe
    recipe = json.loads(DEMO_RECIPE.read_text())
    args, options = resolve_recipe(recipe)
    _, report = prune(args, options, teacher_dir=teacher_dir, out=PRUNING_DIR, progress=progress,
                      tokens=resolve_token_recipe(recipe))
    print(f"      dense accuracy {report['dense_accuracy']:.3f}, pruned {report['accuracy']:.3f}"
          f"; linear density {report['linear_density']:.3f}; heads removed "
          f"{report['heads_removed']} of {report['heads_total']}; FFN neurons kept "
          f"{report['ffn_density']:.3f}; token rows per layer (attention -> FFN) "
          f"{report['tokens']['tokens_per_layer']}")
    return report


def export_model(model_dir: Path, out: Path, name: str):
    """Export ``model_dir`` for :data:`HARDWARE` into ``out``, checked against the golden
    model; returns the export state and the loaded image."""
    print(f"      {model_dir} -> {out}", flush=True)
    try:
        state = export(ExportRequest(model_dir=model_dir, config=HARDWARE, out=out, name=name),
                       on_step=lambda step: print(f"      - {step}", flush=True))
    except ExportError as error:
        raise DemoFailed(f"export of {model_dir}: {error}") from None
    for note in state.notes:
        print(f"      note: {note}")
    checked = verify(state)
    print(f"      golden model from the image vs from torch on {checked['images']} images: "
          f"{checked['differences']} differing values")
    if checked["differences"]:
        raise DemoFailed(f"{out}: the image's golden model differs from the torch model's")
    write(state, out)
    return state, load_image(out / "weights.bin")


def _integer_accuracy(states: dict, split) -> dict:
    """Top-1 of each whole integer model (``sw.golden.model_stages.model_int``: the embedding
    and the head in integers too, what the RTL runs) on the teacher's validation split."""
    from sw.golden.model_stages import model_int
    labels = split.val_labels.numpy()
    result = {"validation_images": int(len(labels))}
    for model, state in states.items():
        logits = model_int(state.integer_model, state.embedding, state.head,
                           split.val_images.numpy(), token_pruning=state.token_pruning)
        result[model] = float(np.mean(logits.argmax(-1) == labels))
        print(f"      {model}: integer top-1 {result[model]:.3f} on {len(labels)} images")
    return result


def check_same_engine(dense, pruned) -> None:
    for knob in SHARED_KNOBS:
        found, expected = getattr(pruned.hardware, knob), getattr(dense.hardware, knob)
        if found != expected:
            raise DemoFailed(f"config '{pruned.name}' has {knob} {found}, the dense model's "
                             f"'{dense.name}' {expected}: not the same engine")


def _replay(designs: dict, images: dict, states: dict, split) -> tuple[dict, dict]:
    """Both whole models on the RTL for :data:`DEMO_IMAGES` validation images, image in and
    int8 logits out (``sim.encoder_replay.model_cases``: the embedding program, every layer and
    the head program chained on chip); returns the first image's per-program results (each
    instruction with ``nonzero_macs``, each result with its ``part``) and, per model, what the
    images gave: the logits against the integer model's, and the predicted classes."""
    from sim.encoder_replay import model_cases, replay_encoders, whole_model_outcome
    from sw.golden.model_stages import model_int
    replays, whole = {}, {}
    pixels = split.val_images[:DEMO_IMAGES].numpy()
    labels = split.val_labels[:DEMO_IMAGES].numpy()
    for model in ("dense", "pruned"):
        state = states[model]
        print(f"      {model}: embedding, {len(images[model].layers)} layers and head x "
              f"{DEMO_IMAGES} images, chained on chip...", flush=True)
        chains = model_cases(images[model], pixels)
        try:
            runs = replay_encoders(designs[model], chains, REPORT_DIR / "replay" / model)
        except TestbenchFailed as failure:
            raise DemoFailed(f"{model} whole-model replay failed: {failure}") from None
        for case, result in zip(chains[0], runs[0].layers):
            result["part"] = case.part
            for instruction in result["instructions"]:
                instruction["nonzero_macs"] = nonzero_macs(case, instruction)
        golden = model_int(state.integer_model, state.embedding, state.head, pixels,
                           token_pruning=state.token_pruning)
        outcome = whole_model_outcome(runs, golden, state.head.classes, labels)
        whole[model] = {
            "images": len(runs), "bit_exact": all(run.bit_exact for run in runs),
            "cycle_exact": all(run.cycle_exact for run in runs),
            "logits_equal": outcome["logits_bit_exact"],
            "inputs_loaded_per_image": runs[0].to_dict()["inputs_loaded"],
            "cycles": [run.cycles for run in runs],
            "load_words": [run.load_words for run in runs],
            "predicted": outcome["predicted"],
            "integer_predicted": outcome["integer_predicted"],
            "labels": labels.tolist(),
            "top1_rtl": outcome["top1_rtl"], "top1_integer": outcome["top1_integer"]}
        w = whole[model]
        print(f"      {model}: {w['images']} images, bit-exact {w['bit_exact']}, cycle-exact "
              f"{w['cycle_exact']}, int8 logits == integer model {w['logits_equal']}, top-1 on "
              f"the RTL {w['top1_rtl']:.3f} (integer {w['top1_integer']:.3f}), cycles per "
              f"image {min(w['cycles']):,} .. {max(w['cycles']):,}", flush=True)
        replays[model] = list(runs[0].layers)
    return replays, whole


def bench_runs(sources=BENCH_RUNS) -> list[dict]:
    """``make bench``'s pruned runs, from the documents in ``sources`` that exist:
    ``[{"label", "kind", "accuracy", "linear_density", "directory", "source"}]`` (filled runs
    are left out: the accelerator runs the pruned model). An unreadable document is noted and
    skipped."""
    runs = []
    for document_path, runs_dir, kind in sources:
        if not document_path.is_file():
            continue
        try:
            document = json.loads(document_path.read_text(encoding="utf-8"))
            entries = [run for run in document["runs"] if not run.get("filled")]
            for run in entries:
                if kind == "bench pruned":
                    target = run["target_linear_density"]
                    name, label = f"density_{target}", f"block pruning to {target:g}"
                else:
                    name = run["name"]
                    label = (f"keep {run['keep_rate']:g}, "
                             + ("block pruned" if run["block_pruned"] else "weights dense")
                             + (f", seed {run['seed']}" if run.get("seed") else ""))
                runs.append({"label": f"bench: {label}", "kind": kind,
                             "accuracy": float(run["accuracy"]),
                             "linear_density": float(run["linear_density"]),
                             "directory": runs_dir / name,
                             "source": f"{shown_path(document_path)}, make bench"})
        except (OSError, ValueError, KeyError, TypeError) as error:
            print(f"      note: ignoring {document_path} ({type(error).__name__}: {error})")
    return runs


def cycle_model_cycles(state) -> int:
    """Cycles per image of an exported model (``sw.image.export``'s state) on its engine, by
    the cycle model: every encoder layer's program, END included."""
    x = state.integer_model.embed(state.calibration[:1])[0]
    return sum(entry.cycles for case in image_cases(state.image, x)
               for entry in model_cycles(state.config, case))


def _bench_points() -> list[dict]:
    """:func:`bench_runs` with each run's cycles on the demo's engine (cycle model; None where
    the run's directory is gone or does not export)."""
    points = []
    for run in bench_runs():
        directory = run.pop("directory")
        run["cycles"] = None
        try:
            state = export(ExportRequest(model_dir=directory, config=HARDWARE,
                                         calibration_images=8))
            run["cycles"] = cycle_model_cycles(state)
        except ExportError as error:
            print(f"      note: {run['label']}: no cycles ({error})")
        points.append(run)
    if points:
        print(f"      {len(points)} make bench runs on the plot (cycles by the cycle model)")
    return points


def engine_clocks(configs: dict, directories: dict) -> dict:
    """``{model: {"clock", "note"}}`` for the report: each model's layer engine clock (the
    Fmax of its placed and routed ``make synth`` report), or why there is none and the
    command that measures it (``directories``: each model's image directory)."""
    clocks = {}
    for model, config in configs.items():
        report = report_path(config, ENGINE_TOP)
        clock = engine_clock(report)
        command = f"make synth CONFIG={shown_path(directories[model] / 'params.json')}"
        clocks[model] = ({"clock": clock.to_dict(), "note": None} if clock is not None else
                         {"clock": None, "note": missing_clock(report, command)})
    return clocks


def run(progress: bool = True) -> dict:
    """The whole demo; returns the report. ``progress``: bars (on a terminal only) and
    per-epoch lines. Raises :class:`DemoFailed`."""
    limit_library_bars(progress)
    steps = _Steps()
    with steps.step("dense digits DeiT teacher (build/models/digits_deit; trained now if "
                    "missing)", "teacher"):
        teacher_dir = teacher(progress)
    with steps.step(f"fine-pruning with {shown_path(DEMO_RECIPE)} (block pruning to 25 %, "
                    f"tokens kept 0.7, then its fine-tunes) -> {shown_path(PRUNING_DIR)}",
                    "prune"):
        pruning = prune_with_recipe(teacher_dir, progress)
    with steps.step(f"exporting the pruned model and the dense teacher for the '{HARDWARE}' "
                    f"hardware", "export"):
        pruned_state, pruned_image = export_model(PRUNING_DIR, IMAGE_DIR, IMAGE_NAME)
        print()
        print(summary_table(pruned_image, source=str(IMAGE_DIR / "weights.bin")))
        print()
        dense_state, dense_image = export_model(teacher_dir, DENSE_DIR, DENSE_NAME)
    states = {"dense": dense_state, "pruned": pruned_state}
    images = {"dense": dense_image, "pruned": pruned_image}
    with steps.step("integer (golden) model accuracy on the validation split", "accuracy"):
        from sw.prune import split_for
        split = split_for(teacher_dir, dense_state.topology["image_size"])
        integer = _integer_accuracy(states, split)
    configs = {"dense": load_config(DENSE_DIR / "params.json"),
               "pruned": load_config(IMAGE_DIR / "params.json")}
    check_same_engine(configs["dense"], configs["pruned"])
    hw = configs["pruned"].hardware
    designs = {}
    with steps.step(f"generating the layer engine ({hw.array_rows}x{hw.array_cols} array, "
                    f"{hw.block_rows}x{hw.block_cols} blocks) from each params.json and "
                    f"building it with Verilator (cached after the first time)", "generate"):
        for model in ("pruned", "dense"):
            design = generate(configs[model], top="layer_engine")
            print(f"      {design.verilog}", flush=True)
            built = build(configs[model], "layer_engine", verilog=design.verilog.read_text())
            print(f"      {built.directory} ({built.build_seconds:.0f} s)", flush=True)
            designs[model] = built
    with steps.step(f"running both whole models on the layer engine RTL for {DEMO_IMAGES} "
                    f"validation images (image in, logits out, chained on chip)", "replay"):
        replays, whole = _replay(designs, images, states, split)
    with steps.step(f"writing the report into {REPORT_DIR}", "report"):
        topology = dense_image.model
        facts = {
            "model": {"name": "digits DeiT", "layers": topology.layers,
                      "tokens": topology.tokens, "hidden_size": topology.hidden_size,
                      "num_heads": topology.num_heads, "head_dim": topology.head_dim,
                      "ffn_size": topology.ffn_size},
            "hardware": {"array_rows": hw.array_rows, "array_cols": hw.array_cols,
                         "block_rows": hw.block_rows, "block_cols": hw.block_cols,
                         "dense_config": configs["dense"].name,
                         "pruned_config": configs["pruned"].name,
                         "buffers": {model: {knob: getattr(configs[model].hardware, knob)
                                             for knob in BUFFER_KNOBS} for model in configs}},
            "accuracy": {"dense": {"float": pruning["dense_accuracy"],
                                   "integer": integer["dense"]},
                         "pruned": {"float": pruning["accuracy"], "integer": integer["pruned"]},
                         "validation_images": integer["validation_images"],
                         "sources": {model: {
                             "float": f"{shown_path(PRUNING_DIR)}/pruning_report.json",
                             "integer": f"golden model of {shown_path(directory)}, make demo"}
                             for model, directory in (("dense", DENSE_DIR),
                                                      ("pruned", IMAGE_DIR))}},
            "pruning": {**{key: pruning[key] for key in ("linear_density", "heads_removed",
                                                         "heads_total", "ffn_density")},
                        "token_rows": [[layer.tokens, layer.token_keep]
                                       for layer in images["pruned"].layers]},
            "replays": replays,
            "whole_images": whole,
            "steps": list(steps.times),       # the report's own step is not in it
            "bench": _bench_points(),
            "clocks": engine_clocks(configs, {"dense": DENSE_DIR, "pruned": IMAGE_DIR}),
        }
        report = build_report(facts)
        paths = write_report(report, REPORT_DIR)
    for path in paths.values():
        print(f"      {path}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flow.demo", description="make demo: prune the digits DeiT, export it "
        "and its dense teacher, replay every layer of both on the layer engine's RTL, and "
        f"report accuracy and cycles into {shown_path(REPORT_DIR)}/.")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars and no per-epoch lines (bars are drawn only on "
                             "a terminal anyway)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        report = run(progress=not args.no_progress)
    except DemoFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print()
    print(console_summary(report))
    print()
    print(f"inspect the image: python sw/export_sparse.py --inspect "
          f"{shown_path(IMAGE_DIR / 'weights.bin')}")
    print(f"report: {shown_path(REPORT_DIR / 'report.md')}  (whole demo "
          f"{time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
