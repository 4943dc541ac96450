"""Synthesis benchmark: resources and Fmax of the tiny units and engine and of the board
preset's engine (``ulx3s_85f``; placed and routed on LFE5U-85F where they fit) and of the
deit_b16 units and engine (synthesis only), through ``hw.synth``. Writes ``build/bench/synth.json``::

    {"device", "designs": [{"config", "top", "lut", "ff", "carry", "dsp", "bram", "fits",
     "fmax_mhz", "critical_path", "seconds"}], "deit_b16_units": {top: lut},
     "nongemm_lut_share", "engine_time": [{"config", "dense_image_cycles",
     "dense_image_macs", "at_fmax", "at_fmax_note"}]}

``nongemm_lut_share`` = (deit_b16 engine LUT4s - its GEMM's LUT4s) / engine LUT4s: what the
special units, the GEMM's epilogue (GELU, residual adds), gather and control take; null until the engine is synthesised.
``engine_time`` (:func:`engine_time`): per config whose layer engine is measured here, one
dense image (every layer of the preset's model, unpruned) by the cycle model, and its latency
(us), images per second, effective GOP/s and GOP/s per MULT18X18D at the engine's placed Fmax
(``hw.synth.throughput.at_fmax``); null with a one-line ``at_fmax_note`` where the engine was not
placed and routed (neither the tiny nor the deit_b16 engine fits LFE5U-85F today; the board
preset's does).
``seconds`` is each design's tool time (generation, yosys, nextpnr) when it was measured; an
unchanged design's report is reused. Long: the tiny engine's synthesis alone takes about 20
minutes, each deit_b16 unit minutes.
"""

from __future__ import annotations

from pathlib import Path

from hw.synth import report_path, synthesise
from hw.synth.devices import LFE5U_85F
from hw.synth.flow import stderr_log
from hw.synth.throughput import ENGINE_TOP, engine_clock, missing_clock
from sw.cycle_model.layer import LayerPruning, layer_cycles
from sw.build_files import BENCH_ROOT, write_json
from sw.config import load_config

OUTPUT = BENCH_ROOT / "synth.json"

#: The layer engine's units (GELU and the residual adds are the GEMM's epilogue; the arithmetic
#: GELU unit of ``hw.units.gelu`` is no longer in the engine).
UNITS = ("gemm_epilogue", "softmax", "layernorm", "token_gather", "block_sparse_gemm")
GEMM = "block_sparse_gemm"
ENGINE = ENGINE_TOP

#: (config, top, place and route where it fits)
DESIGNS = ([("tiny", top, True) for top in UNITS + (ENGINE,)]
           + [("ulx3s_85f", ENGINE, True)]
           + [("deit_b16", top, False) for top in UNITS + (ENGINE,)])

FIELDS = ("config", "top", "lut", "ff", "carry", "dsp", "bram", "distributed_ram", "fits",
          "placed", "fmax_mhz", "critical_path", "xilinx_estimate", "seconds")


def nongemm_lut_share(luts: dict[str, int]) -> float | None:
    """The engine's LUT4s outside its GEMM, as a share of the engine's; None without both."""
    if ENGINE not in luts or GEMM not in luts or not luts[ENGINE]:
        return None
    return round((luts[ENGINE] - luts[GEMM]) / luts[ENGINE], 4)


def engine_time(config, report: Path | None = None) -> dict:
    """One dense image of ``config``'s model by the cycle model, at the Fmax of its placed
    layer engine (``report``, default its ``make synth`` report) when there is one."""
    report = report_path(config, ENGINE) if report is None else report
    layer = layer_cycles(config, LayerPruning.dense(config))
    layers = config.model.layers
    cycles, macs = layers * layer.total, layers * layer.macs
    clock = engine_clock(report)
    return {"config": config.name, "dense_image_cycles": cycles, "dense_image_macs": macs,
            "at_fmax": None if clock is None else {"clock": clock.to_dict(),
                                                   **clock.at(cycles, macs)},
            "at_fmax_note": None if clock is not None else missing_clock(
                report, f"make synth CONFIG={config.name}")}


def run(output: Path = OUTPUT, designs=DESIGNS) -> dict:
    entries = []
    for name, top, place in designs:
        report = synthesise(load_config(name), top, place=place, log=stderr_log)
        entry = {key: report[key] for key in FIELDS}
        if entry["xilinx_estimate"] is not None:
            entry["xilinx_estimate"] = {key: value for key, value in
                                        entry["xilinx_estimate"].items() if key != "cells"}
        entries.append(entry)
        print(f"synth: {name}/{top}: {report['lut']} LUT4, {report['dsp']} MULT18X18D, "
              f"{report['bram']} DP16KD, fits {report['fits']}, Fmax {report['fmax_mhz']} MHz, "
              f"{report['seconds']} s", flush=True)
    deit = {entry["top"]: entry["lut"] for entry in entries if entry["config"] == "deit_b16"}
    engines = [engine_time(load_config(name)) for name in
               dict.fromkeys(name for name, top, _ in designs if top == ENGINE)]
    for entry in engines:
        print(f"synth: {entry['config']}: dense image {entry['dense_image_cycles']:,} cycles; "
              + (entry["at_fmax_note"] if entry["at_fmax"] is None else
                 f"{entry['at_fmax']['latency_us']:,.1f} us, {entry['at_fmax']['per_second']:,.2f}"
                 f" images/s at {entry['at_fmax']['fmax_mhz']:g} MHz"), flush=True)
    document = {"device": LFE5U_85F.label, "designs": entries, "deit_b16_units": deit,
                "nongemm_lut_share": nongemm_lut_share(deit), "engine_time": engines}
    write_json(document, output)
    return document


if __name__ == "__main__":
    run()
