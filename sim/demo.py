"""``make demo``: the flow end to end, from a trained digits DeiT to co-simulated RTL.

1. The dense digits DeiT teacher (``build/models/digits_deit``; trained first if missing, about
   a minute).
2. A brief fine-pruning run of it (:data:`DEMO_PRUNING`, well under a minute): block movement
   pruning with distillation; heads and FFN neurons go.
3. Export with ``sw.image.export``: ``build/images/digits_deit_demo/`` holds ``weights.bin``,
   ``params.json`` and ``manifest.json``; the golden model run from the image's bytes is checked
   equal to the one quantized from the torch model.
4. Generate the accelerator from ``params.json`` (what ``make verilog CONFIG=...`` does) and
   co-simulate every linear layer of the image on it with Verilator: each bit-exact to the
   golden model and cycle-exact to the cycle model.
5. The GEMM density sweep on the ``tiny`` preset: what sparsity buys on one FFN shape.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hw.generate import BUILD_ROOT, generate
from sim.gemm_sweep import format_table, sweep, write_json
from sim.harness import TestbenchFailed, build
from sim.image_gemm import image_gemm_jobs, run_image_gemms
from sw.config import load_config
from sw.cycle_model.gemm import dense_gemm_cycles
from sw.image.export import ExportError, ExportRequest, export, verify, write
from sw.image.loader import load_image
from sw.image.summary import dense_shape, summary_table

#: The demo's image directory name and accelerator config name.
IMAGE_NAME = "digits_deit_demo"
IMAGE_DIR = BUILD_ROOT / "images" / IMAGE_NAME
PRUNING_DIR = BUILD_ROOT / "pruning" / IMAGE_NAME
HARDWARE = "tiny"

#: A brief run of recipes/digits_deit.json: its topK blocks (16x16 head blocks, whole FFN
#: neurons) and distillation, pruned straight to the final threshold in 3 epochs on 768 images,
#: without the final fine-tune (the filled model is not what the accelerator runs).
DEMO_PRUNING = {"final_threshold": 0.3, "initial_warmup": 0, "final_warmup": 1,
                "final_finetune": False}
DEMO_TRAINING = {"epochs": 3, "max_train_samples": 768}


def _prune() -> dict:
    from sw.prune import DEFAULT_RECIPE, DEFAULT_TEACHER, prune, resolve_recipe
    recipe = json.loads(Path(DEFAULT_RECIPE).read_text())
    args, options = resolve_recipe(recipe, DEMO_PRUNING, DEMO_TRAINING)
    _, report = prune(args, options, teacher_dir=DEFAULT_TEACHER, out=PRUNING_DIR,
                      progress=True)
    print(f"      dense accuracy {report['dense_accuracy']:.3f}, pruned {report['accuracy']:.3f}"
          f"; linear density {report['linear_density']:.3f}; heads removed "
          f"{report['heads_removed']} of {report['heads_total']}; FFN neurons kept "
          f"{report['ffn_density']:.3f}; {report['seconds']:.0f} s")
    return report


def _cosimulation_table(image, jobs, results) -> tuple[str, int, int]:
    hw = image.config.hardware
    lines = [f"{'linear':<12}{'M x K x N':>16}{'blocks':>9}{'cycles':>9}{'model':>9}"
             f"{'dense':>9}{'speedup':>9}{'exact':>7}"]
    total = dense_total = 0
    for job, result in zip(jobs, results):
        m, k, n = result["shape"]
        weights = job.operands.weights
        blocks = f"{weights.nnz_blocks}/{weights.grid[0] * weights.grid[1]}"
        out, inner = dense_shape(image, result["name"].split(".")[1])
        dense = dense_gemm_cycles(array_rows=hw.array_rows, array_cols=hw.array_cols,
                                  block_rows=hw.block_rows, block_cols=hw.block_cols,
                                  tokens=m, in_features=inner, out_features=out).total
        total += result["cycles"]
        dense_total += dense
        exact = (result["bit_exact"] and result["matches_layer"]
                 and result["cycles"] == result["model_cycles"] == result["edge_cycles"])
        lines.append(f"{result['name']:<12}{f'{m} x {k} x {n}':>16}"
                     f"{blocks:>9}"
                     f"{result['cycles']:>9}{result['model_cycles']:>9}{dense:>9}"
                     f"{dense / result['cycles']:>9.2f}{'yes' if exact else 'NO':>7}")
    lines.append(f"{'all':<12}{'':>16}{'':>9}{total:>9}{'':>9}{dense_total:>9}"
                 f"{dense_total / total:>9.2f}")
    lines.append("dense: the cycle model's count for the unpruned weight (all heads, neurons and "
                 "blocks) on the same engine")
    return "\n".join(lines), total, dense_total


def main() -> int:
    started = time.monotonic()
    print("[1/5] dense digits DeiT teacher (build/models/digits_deit; trained now if missing)")
    print(f"[2/5] brief fine-pruning ({DEMO_TRAINING['epochs']} epochs on "
          f"{DEMO_TRAINING['max_train_samples']} images, threshold "
          f"{DEMO_PRUNING['final_threshold']}) -> {PRUNING_DIR}", flush=True)
    _prune()

    print(f"[3/5] exporting the pruned model for the '{HARDWARE}' hardware -> {IMAGE_DIR}",
          flush=True)
    try:
        state = export(ExportRequest(model_dir=PRUNING_DIR, config=HARDWARE, out=IMAGE_DIR,
                                     name=IMAGE_NAME),
                       on_step=lambda name: print(f"      - {name}", flush=True))
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for note in state.notes:
        print(f"      note: {note}")
    checked = verify(state)
    print(f"      golden model from the image vs from torch on {checked['images']} images: "
          f"{checked['differences']} differing values")
    if checked["differences"]:
        print("error: the image's golden model differs from the torch model's", file=sys.stderr)
        return 1
    write(state, IMAGE_DIR)
    image = load_image(IMAGE_DIR / "weights.bin")
    print()
    print(summary_table(image, source=str(IMAGE_DIR / "weights.bin")))
    print()

    config = load_config(IMAGE_DIR / "params.json")
    hw = config.hardware
    print(f"[4/5] generating the accelerator from {IMAGE_DIR / 'params.json'} "
          f"({hw.array_rows}x{hw.array_cols} array, {hw.block_rows}x{hw.block_cols} blocks) and "
          f"co-simulating every linear layer of the image", flush=True)
    design = generate(config)
    print(f"      {design.verilog}")
    x = state.integer_model.embed(state.calibration[:1])[0]
    jobs = image_gemm_jobs(image, x)
    print(f"      building with Verilator (cached after the first time), then {len(jobs)} GEMM "
          f"jobs in one run...", flush=True)
    try:
        results = run_image_gemms(build(config), IMAGE_DIR / "weights.bin", jobs,
                                  BUILD_ROOT / "demo" / "image")
    except TestbenchFailed as failure:
        print(f"error: co-simulation failed: {failure}", file=sys.stderr)
        return 1
    table, total, dense_total = _cosimulation_table(image, jobs, results)
    print()
    print(table)
    print()

    tiny = load_config("tiny")
    m = tiny.model
    print(f"[5/5] co-simulating the FFN-up GEMM of the '{tiny.name}' preset ({m.tokens} x "
          f"{m.hidden_size} times {m.hidden_size} x {m.ffn_size}) at several block densities",
          flush=True)
    try:
        document = sweep(tiny, tokens=m.tokens, in_features=m.hidden_size,
                         out_features=m.ffn_size, work_dir=BUILD_ROOT / "demo" / "gemm")
    except TestbenchFailed as failure:
        print(f"error: co-simulation failed: {failure}", file=sys.stderr)
        return 1
    write_json(document, BUILD_ROOT / "demo" / "gemm.json")
    print()
    print(format_table(document))
    print()
    print("Every co-simulated GEMM is bit-exact to the golden model (sw/golden/) and its cycle")
    print("count equals the cycle model (sw/cycle_model/gemm.py). The image's linears ran with")
    print(f"weights read back from the image; they take {total} cycles where the unpruned")
    print(f"model's would take {dense_total} ({dense_total / total:.2f}x fewer).")
    print(f"inspect the image: python sw/export_sparse.py --inspect {IMAGE_DIR / 'weights.bin'}")
    print(f"reports: {IMAGE_DIR / 'manifest.json'}, {BUILD_ROOT / 'demo' / 'gemm.json'}  "
          f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
