"""Layer benchmark: a pruned deit_b16 encoder layer against the dense one, on the same RTL.

Both layers (``sim.layer_replay.bench_cases``: the dense layer, and the one pruned as
``BENCH_PRUNING`` says) replay through the deit_b16 layer engine (16 x 16 array) in one
co-simulation; each is bit-exact to the golden layer and every instruction's cycles equal the
cycle model (the testbench fails otherwise). Writes ``build/bench/layer.json``::

    {"config", "linear_density", "heads_kept", "heads_total", "keep_rate", "tokens",
     "tokens_after_gather", "cycles", "model_cycles", "ideal_cycles", "dense_cycles",
     "utilization", "speedup", "mac_reduction", "bit_exact", "cosim_seconds", "build_seconds",
     "units": {name: cycles}, "dense_units": {name: cycles}, "at_fmax", "at_fmax_note",
     "axi_bytes_per_cycle", "onchip_bytes", "external_bytes", "dense_external_bytes",
     "load_seconds", "dense_load_seconds", "bandwidth_sweep": [{"bytes_per_cycle",
     "cycles_dense", "cycles_pruned"}]}

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

The linears' weights stream from cocotbext-axi's AXI RAM at ``axi_bytes_per_cycle`` (one weight
word a beat); ``external_bytes`` / ``dense_external_bytes`` are the bytes one layer reads from
it, ``onchip_bytes`` the engine's on-chip memory (``sw.onchip_memory``), ``load_seconds`` the
share of ``cosim_seconds`` spent putting the layer into the engine and the AXI RAM.
``bandwidth_sweep``: both layers' cycles from the cycle model with the memory delivering 1 to
64 bytes a cycle (``sw.cycle_model.weight_stream``), drawn in ``build/bench/roofline.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

from hw.layer.loading import load_plan
from hw.synth import report_path
from hw.synth.throughput import ENGINE_TOP, engine_clock, missing_clock
from sim.harness import build
from sim.layer_replay import BENCH_PRUNING, bench_cases, model_cycles, replay
from sw.build_files import BENCH_ROOT, write_json
from sw.config import load_config
from sw.cycle_model.weight_stream import AXI_RAM, MemoryTiming
from sw.engine_params import EngineParams
from sw.onchip_memory import onchip_memories, total_bytes

OUTPUT = BENCH_ROOT / "layer.json"
ROOFLINE = BENCH_ROOT / "roofline.png"
SWEEP_BYTES_PER_CYCLE = (1, 2, 4, 8, 16, 32, 64)


def bandwidth_sweep(config, dense_case, pruned_case) -> list[dict]:
    """Both layers' cycles from the model at each of :data:`SWEEP_BYTES_PER_CYCLE`."""
    sweep = []
    for rate in SWEEP_BYTES_PER_CYCLE:
        memory = MemoryTiming(latency=AXI_RAM.latency, bytes_per_cycle=rate)
        sweep.append({"bytes_per_cycle": rate,
                      "cycles_dense": sum(e.cycles for e in model_cycles(config, dense_case,
                                                                         memory)),
                      "cycles_pruned": sum(e.cycles for e in model_cycles(config, pruned_case,
                                                                          memory))})
    return sweep


def plot_roofline(document: dict, path: Path = ROOFLINE) -> None:
    """Cycles of the dense and the pruned layer against the memory's bytes per cycle."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sweep = document["bandwidth_sweep"]
    rates = [p["bytes_per_cycle"] for p in sweep]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.loglog(rates, [p["cycles_dense"] for p in sweep], "o-", label="dense layer")
    axes.loglog(rates, [p["cycles_pruned"] for p in sweep], "s-", label="pruned layer")
    axes.axvline(document["axi_bytes_per_cycle"], color="grey", linestyle=":",
                 label=f"AXI bus of {document['config']}")
    axes.set_xlabel("external memory bandwidth (bytes / cycle)")
    axes.set_ylabel("cycles per layer (cycle model)")
    axes.set_title(f"{document['config']}: weights streamed over AXI")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.png")
    figure.savefig(temporary, dpi=120)
    plt.close(figure)
    temporary.replace(path)


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


def measure_layer(config, pruning: dict = BENCH_PRUNING, work_dir: Path = BENCH_ROOT / "layer"
                  ) -> tuple[dict, tuple]:
    """Replay ``config``'s dense layer and the one pruned as ``pruning`` says
    (``sim.layer_replay.bench_cases``) on its layer engine; return the document's measured
    fields and the two cases.

    Raises
    ------
    AssertionError
        If either layer is not bit-exact or not cycle-exact.
    """
    started = time.monotonic()
    design = build(config, "layer_engine")
    build_seconds = time.monotonic() - started
    dense_case, pruned_case = bench_cases(config, pruning)
    dense, pruned = replay(design, [dense_case, pruned_case], work_dir)
    for result in (dense, pruned):
        if not result["bit_exact"] or result["cycles"] != result["model_cycles"]:
            raise AssertionError(f"{result['name']}: not bit-exact or not cycle-exact")
    hw = config.hardware
    pes = hw.array_rows * hw.array_cols
    dense_macs = sum(e["macs"] for e in dense["instructions"])
    pruned_macs = sum(e["macs"] for e in pruned["instructions"])
    ideal = pruned_macs / pes
    gather = pruned_case.token_pruning
    document = {
        "config": config.name,
        "norm": config.model.norm,
        "linear_density": round(linear_density(config, pruned_case), 4),
        "heads_kept": len(pruning["kept_heads"]),
        "heads_total": config.model.num_heads,
        "keep_rate": pruning["keep_rate"],
        "tokens": config.model.tokens,
        "tokens_after_gather": int(config.model.tokens if gather is None
                                   else gather.output_tokens(config.model.tokens)),
        "cycles": pruned["cycles"], "model_cycles": pruned["model_cycles"],
        "ideal_cycles": round(ideal), "dense_cycles": dense["cycles"],
        "dense_model_cycles": dense["model_cycles"],
        "utilization": round(ideal / pruned["cycles"], 4),
        "speedup": round(dense["cycles"] / pruned["cycles"], 4),
        "mac_reduction": round(dense_macs / pruned_macs, 4),
        "bit_exact": dense["bit_exact"] and pruned["bit_exact"],
        "cosim_seconds": round(pruned["sim_seconds"] + pruned["load_seconds"], 1),
        "dense_cosim_seconds": round(dense["sim_seconds"] + dense["load_seconds"], 1),
        "build_seconds": round(build_seconds, 1),
        "units": _units(pruned), "dense_units": _units(dense),
        "axi_bytes_per_cycle": EngineParams.from_config(config).word_bytes,
        "onchip_bytes": total_bytes(onchip_memories(config)),
        "external_bytes": pruned["external_bytes"],
        "dense_external_bytes": dense["external_bytes"],
        "load_seconds": round(pruned["load_seconds"], 2),
        "dense_load_seconds": round(dense["load_seconds"], 2),
    }
    document["at_fmax"], document["at_fmax_note"] = time_at_fmax(
        config, pruned["cycles"], dense["cycles"], dense_macs)
    return document, (dense_case, pruned_case)


def run(output: Path = OUTPUT) -> dict:
    config = load_config("deit_b16")
    document, (dense_case, pruned_case) = measure_layer(config)
    document["bandwidth_sweep"] = bandwidth_sweep(config, dense_case, pruned_case)
    write_json(document, output)
    plot_roofline(document, output.parent / ROOFLINE.name)
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
