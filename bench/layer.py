"""Layer benchmark: a pruned deit_b16 encoder layer against the dense one, on the same RTL.

Both layers (``sim.layer_replay.bench_cases``: the dense layer, and the one pruned as
``BENCH_PRUNING`` says) replay through the deit_b16 layer engine (16 x 16 array) in one
co-simulation; each is bit-exact to the golden layer and every instruction's cycles equal the
cycle model (the testbench fails otherwise). Writes ``build/bench/layer.json``::

    {"config", "linear_density", "heads_kept", "heads_total", "keep_rate", "tokens",
     "tokens_after_gather", "cycles", "model_cycles", "ideal_cycles", "dense_cycles",
     "utilization", "speedup", "mac_reduction", "bit_exact", "cosim_seconds", "build_seconds",
     "units": {name: cycles}, "dense_units": {name: cycles}, "at_fmax", "at_fmax_note"}

``ideal_cycles`` = non-zero MACs / PEs (the useful multiply-accumulates of the six linears and
the attention products of the kept heads); ``utilization`` = ideal / cycles; ``speedup`` = dense
cycles / cycles; ``mac_reduction`` = dense MACs / pruned MACs; ``cosim_seconds`` = wall time of
the pruned layer's replay (loading and simulation). ``at_fmax`` (:func:`time_at_fmax`):
``{"clock", "layer", "dense_layer", "image"}`` at the Fmax of the placed and routed engine,
``build/deit_b16/synth/layer_engine.json`` (``make synth CONFIG=deit_b16``): each layer's latency
(us), layers per second, effective GOP/s (twice the dense layer's MACs per second of the run:
dense-equivalent) and GOP/s per MULT18X18D (``hw.synth.throughput.at_fmax``); ``image``: the
model's layers one after another, every one pruned like this one. Null while that engine has
not been placed and routed (the deit_b16 engine does not fit LFE5U-85F); ``at_fmax_note`` then
says why, in one line naming the command.
"""

from __future__ import annotations

import time
from pathlib import Path

from hw.layer.loading import load_plan
from hw.synth import report_path
from hw.synth.throughput import ENGINE_TOP, engine_clock, missing_clock
from sim.harness import build
from sim.layer_replay import BENCH_PRUNING, bench_cases, replay
from sw.build_files import BENCH_ROOT, write_json
from sw.config import load_config

OUTPUT = BENCH_ROOT / "layer.json"


def _units(result: dict) -> dict:
    totals: dict = {}
    for entry in result["instructions"]:
        totals[entry["unit"]] = totals.get(entry["unit"], 0) + entry["cycles"]
    return totals


def linear_density(config, case) -> float:
    """Stored weights of the six linears over the dense layer's (``4 d^2 + 2 d f``)."""
    m = config.model
    plan = load_plan(config, case.layer)
    block = config.hardware.block_rows * config.hardware.block_cols
    stored = sum(int(t.mask.sum()) * block for t in plan.tensors[:6])
    return stored / (4 * m.hidden_size ** 2 + 2 * m.hidden_size * m.ffn_size)


def time_at_fmax(config, cycles: int, dense_cycles: int, dense_macs: int,
                 report: Path | None = None) -> tuple[dict | None, str | None]:
    """``(at_fmax, None)`` of the pruned and the dense layer (``cycles``, ``dense_cycles``;
    ``dense_macs``: the dense layer's) at the Fmax of ``config``'s placed layer engine
    (``report``, default its ``make synth`` report), or ``(None, note)`` without one."""
    report = report_path(config, ENGINE_TOP) if report is None else report
    clock = engine_clock(report)
    if clock is None:
        return None, missing_clock(report, f"make synth CONFIG={config.name}")
    layers = config.model.layers
    return {"clock": clock.to_dict(), "layer": clock.at(cycles, dense_macs),
            "dense_layer": clock.at(dense_cycles, dense_macs),
            "image": clock.at(layers * cycles, layers * dense_macs)}, None


def run(output: Path = OUTPUT) -> dict:
    config = load_config("deit_b16")
    started = time.monotonic()
    design = build(config, "layer_engine")
    build_seconds = time.monotonic() - started
    dense_case, pruned_case = bench_cases(config)
    dense, pruned = replay(design, [dense_case, pruned_case],
                           BENCH_ROOT / "layer")
    for result in (dense, pruned):
        if not result["bit_exact"] or result["cycles"] != result["model_cycles"]:
            raise AssertionError(f"{result['name']}: not bit-exact or not cycle-exact")
    hw = config.hardware
    pes = hw.array_rows * hw.array_cols
    dense_macs = sum(e["macs"] for e in dense["instructions"])
    pruned_macs = sum(e["macs"] for e in pruned["instructions"])
    ideal = pruned_macs / pes
    document = {
        "config": config.name,
        "linear_density": round(linear_density(config, pruned_case), 4),
        "heads_kept": len(BENCH_PRUNING["kept_heads"]),
        "heads_total": config.model.num_heads,
        "keep_rate": BENCH_PRUNING["keep_rate"],
        "tokens": config.model.tokens,
        "tokens_after_gather": int(pruned_case.token_pruning.output_tokens(config.model.tokens)),
        "cycles": pruned["cycles"], "model_cycles": pruned["model_cycles"],
        "ideal_cycles": round(ideal), "dense_cycles": dense["cycles"],
        "utilization": round(ideal / pruned["cycles"], 4),
        "speedup": round(dense["cycles"] / pruned["cycles"], 4),
        "mac_reduction": round(dense_macs / pruned_macs, 4),
        "bit_exact": dense["bit_exact"] and pruned["bit_exact"],
        "cosim_seconds": round(pruned["sim_seconds"] + pruned["load_seconds"], 1),
        "dense_cosim_seconds": round(dense["sim_seconds"] + dense["load_seconds"], 1),
        "build_seconds": round(build_seconds, 1),
        "units": _units(pruned), "dense_units": _units(dense),
    }
    document["at_fmax"], document["at_fmax_note"] = time_at_fmax(
        config, pruned["cycles"], dense["cycles"], dense_macs)
    write_json(document, output)
    print(f"layer: {document['cycles']:,} cycles (model {document['model_cycles']:,}), dense "
          f"{document['dense_cycles']:,}; speed-up {document['speedup']:.2f} vs MAC reduction "
          f"{document['mac_reduction']:.2f}; utilization {document['utilization']:.3f}; "
          f"co-simulation {document['cosim_seconds']:.0f} s")
    if document["at_fmax"] is None:
        print(f"layer: {document['at_fmax_note']}")
    else:
        image = document["at_fmax"]["image"]
        print(f"layer: at {image['fmax_mhz']:g} MHz, {image['latency_us']:,.1f} us per image "
              f"({config.model.layers} layers pruned alike), {image['per_second']:,.2f} "
              f"images/s, {image['effective_gops']:.3f} effective GOP/s")
    return document


if __name__ == "__main__":
    run()
