"""Whole-model benchmark: every program of a model chained on the layer engine's RTL, against
the golden and cycle models.

Two parts (issue 18), each its own co-simulation, each failing the benchmark unless every
program of every image is bit-exact and every instruction cycle-exact:

- ``digits``: the trained digits DeiT pruned with the demo's recipe (``flow.demo``: block
  pruning to 25 %, heads and neurons removed, tokens kept 0.7 in both layers) and its dense
  teacher, exported for the ``tiny`` hardware, each run whole on :data:`DIGITS_IMAGES`
  validation images, image in and int8 logits out (``sim.encoder_replay.model_cases``: the
  embedding program, both layers and the head program, each on what the one before it left in
  the scratchpad; the host loads only the quantized patch rows and the position table). The
  logits are compared with the whole integer model's (``sw.golden.model_stages.model_int``,
  ``==``); top-1 of both against the labels.
- ``deit_b16``: a random whole DeiT-B pruned as ``sim.layer_replay.BENCH_PRUNING`` says (7 of
  12 heads, 30 % of the blocks in every layer; token keep rate 0.7 after the attention of
  layers 3, 6 and 9: 197 -> 140 -> 100 -> 72 rows), image in and int8 logits out on the
  deit_b16 engine: a random patch embedding (224 px images in 16 px patches: 196 rows of 768
  int8 features and the class token's) and head (final LayerNorm, 1,000 classes) of
  :data:`DEIT_B16_STAGES` (``sw.golden.synthetic_layer.synthetic_stages``) as the embedding
  and head programs, the twelve layers between them, all chained; its dense counterpart
  (every head, every block, every token; the same stages) by the cycle model, program by
  program.

Cycles are the engine's, program by program (``cycles_*``); the load-port words between
programs (programs, block structure, constants: one cycle each in the testbench) are reported
beside them (``load_words_*``), not in them (``scope``). Writes ``build/bench/model.json``::

    {"scope",
     "digits": {"images", "logits_bit_exact", "cycles_equal_model", "top1_rtl",
                "top1_integer", "cycles_per_image_dense", "cycles_per_image_pruned", "speedup",
                "mac_reduction", "cycles_embedding_pruned", "cycles_head_pruned",
                "load_words_per_image_pruned", "cosim_seconds", ...},
     "deit_b16": {"layers", "bit_exact", "cycles_equal_model", "cycles_pruned",
                  "cycles_dense_model", "speedup", "mac_reduction", "utilization",
                  "cosim_seconds", "tokens_per_layer", "stage_cycles", ...}}

``python -m bench.model [digits|deit_b16]`` runs one part and keeps the other's last result.
The deit_b16 part takes about 20 min on 2 cores (15 of co-simulation, 2026-12-08; the engine's
Verilator build, cached, 4 to 8 more).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from sim.encoder_replay import measure_encoder, replay_encoders
from sim.harness import build
from sim.layer_replay import BENCH_PRUNING
from sw.build_files import BENCH_ROOT, write_json
from sw.config import load_config

OUTPUT = BENCH_ROOT / "model.json"
WORK = BENCH_ROOT / "model"
#: Validation images of the digits part.
DIGITS_IMAGES = 32
#: Layers whose attention prunes tokens in the deit_b16 part ("after layers 3, 6 and 9").
GATHER_LAYERS = (3, 6, 9)
#: The deit_b16 part's stages: DeiT-B/16's patch embedding (224 px RGB images in 16 px
#: patches, 196 of them, and the class token: the config's 197 rows) and ImageNet's classes.
DEIT_B16_STAGES = {"channels": 3, "patch_size": 16, "classes": 1000, "protected": 1}
SCOPE = ("digits: the whole model on the layer engine, image in and int8 logits out (patch "
         "embedding, every layer and head as engine programs; the host loads the quantized "
         "patch rows and the position table); deit_b16: the same, a random DeiT-B's embedding, "
         "twelve layers and head chained; load-port words between programs (programs, "
         "block structure, constants) are counted separately, not in the cycles")


def _check(runs) -> None:
    for run in runs:
        if not (run.bit_exact and run.cycle_exact):
            raise AssertionError(f"{run.name}: not bit-exact or not cycle-exact")


def measure_digits(images: int = DIGITS_IMAGES, work_dir: Path = WORK / "digits") -> dict:
    """The ``digits`` part (trains and prunes the demo's models first when missing)."""
    from flow.demo import (DENSE_NAME, IMAGE_NAME, PRUNING_DIR, export_model, prune_with_recipe,
                           teacher)
    from sim.encoder_replay import model_cases, whole_model_outcome
    from sw.golden.model_stages import model_int
    from sw.prune import split_for
    teacher_dir = teacher(progress=False)
    if not (PRUNING_DIR / "pruned" / "config.json").is_file():
        prune_with_recipe(teacher_dir, progress=False)
    document, outputs = {"images": images}, {}
    for model, source, name in (("dense", teacher_dir, DENSE_NAME),
                                ("pruned", PRUNING_DIR, IMAGE_NAME)):
        state, image = export_model(source, work_dir / name, name)
        split = split_for(teacher_dir, state.topology["image_size"])
        pixels = split.val_images[:images].numpy()
        labels = split.val_labels[:images].numpy()
        design = build(state.config, "layer_engine")
        started = time.monotonic()
        runs = replay_encoders(design, model_cases(image, pixels, name=name),
                               work_dir / f"{name}-sim")
        seconds = time.monotonic() - started
        _check(runs)
        golden = model_int(state.integer_model, state.embedding, state.head, pixels,
                           token_pruning=state.token_pruning)
        outputs[model] = {"runs": runs, "seconds": seconds, "macs": _macs_per_image(runs),
                          **whole_model_outcome(runs, golden, state.head.classes, labels)}
        print(f"model: digits {model}: {images} images, cycles per image "
              f"{min(r.cycles for r in runs):,} .. {max(r.cycles for r in runs):,}, int8 logits "
              f"== integer model {outputs[model]['logits_bit_exact']}, top-1 RTL "
              f"{outputs[model]['top1_rtl']:.4f} ({seconds:.0f} s)", flush=True)
    dense, pruned = outputs["dense"], outputs["pruned"]
    mean = {model: float(np.mean([run.cycles for run in o["runs"]]))
            for model, o in outputs.items()}
    stages = {part: round(float(np.mean([r["cycles"] for run in pruned["runs"]
                                         for r in run.layers
                                         if r["name"].endswith("." + part)])))
              for part in ("embedding", "head")}
    document.update({
        "logits_bit_exact": pruned["logits_bit_exact"] and dense["logits_bit_exact"],
        "cycles_equal_model": all(run.cycles == run.model_cycles
                                  for o in outputs.values() for run in o["runs"]),
        "top1_rtl": pruned["top1_rtl"], "top1_integer": pruned["top1_integer"],
        "top1_rtl_equals_integer": pruned["top1_equal"],
        "dense_top1_rtl": dense["top1_rtl"], "dense_top1_integer": dense["top1_integer"],
        "cycles_per_image_dense": round(mean["dense"]),
        "cycles_per_image_pruned": round(mean["pruned"]),
        "cycles_embedding_pruned": stages["embedding"], "cycles_head_pruned": stages["head"],
        "speedup": round(mean["dense"] / mean["pruned"], 4),
        "mac_reduction": round(dense["macs"] / pruned["macs"], 4),
        "load_words_per_image_pruned": round(float(np.mean(
            [run.load_words for run in pruned["runs"]]))),
        "load_words_per_image_dense": round(float(np.mean(
            [run.load_words for run in dense["runs"]]))),
        "cosim_seconds": round(pruned["seconds"], 1),
        "dense_cosim_seconds": round(dense["seconds"], 1)})
    return document


def _macs_per_image(runs) -> float:
    return float(np.mean([run.macs for run in runs]))


def measure_deit_b16(layers: int | None = None, work_dir: Path = WORK / "deit_b16") -> dict:
    """The ``deit_b16`` part: the pruned whole model on the RTL, the dense one by the cycle
    model (``sim.encoder_replay.measure_encoder``)."""
    document = measure_encoder(load_config("deit_b16"), BENCH_PRUNING, layers=layers,
                               gather_layers=GATHER_LAYERS, work_dir=work_dir,
                               stages=DEIT_B16_STAGES)
    print(f"model: deit_b16 whole (embedding {document['stage_cycles']['embedding']:,} cycles, "
          f"{document['layers']} layers chained, head {document['stage_cycles']['head']:,}), "
          f"{document['cycles_pruned']:,} "
          f"cycles (model {document['model_cycles_pruned']:,}), dense "
          f"{document['cycles_dense_model']:,} by the cycle model; speed-up "
          f"{document['speedup']:.2f} vs MAC reduction {document['mac_reduction']:.2f}; "
          f"utilization {document['utilization']:.3f}; co-simulation "
          f"{document['cosim_seconds']:.0f} s", flush=True)
    if not (document["bit_exact"] and document["cycles_equal_model"]):
        raise AssertionError("deit_b16 whole model: not bit-exact or not cycle-exact")
    return document


PARTS = {"digits": measure_digits, "deit_b16": measure_deit_b16}


def run(output: Path = OUTPUT, parts=tuple(PARTS)) -> dict:
    document = {"scope": SCOPE}
    if output.is_file():                  # a part not run now keeps its last result
        document.update(json.loads(output.read_text(encoding="utf-8")))
        document["scope"] = SCOPE
    for part in parts:
        document[part] = PARTS[part]()
        write_json(document, output)
    return document


if __name__ == "__main__":
    chosen = sys.argv[1:] or list(PARTS)
    unknown = [part for part in chosen if part not in PARTS]
    if unknown:
        print(f"error: unknown part {unknown[0]!r}; parts: {', '.join(PARTS)}", file=sys.stderr)
        sys.exit(2)
    run(parts=chosen)
