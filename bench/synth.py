"""Synthesis benchmark: resources and Fmax of the tiny units and engine (placed and routed on
LFE5U-85F where they fit) and of the deit_b16 units and engine (synthesis only), through
``hw.synth``. Writes ``build/bench/synth.json``::

    {"device", "designs": [{"config", "top", "lut", "ff", "carry", "dsp", "bram", "fits",
     "fmax_mhz", "critical_path", "seconds"}], "deit_b16_units": {top: lut},
     "nongemm_lut_share"}

``nongemm_lut_share`` = (deit_b16 engine LUT4s - its GEMM's LUT4s) / engine LUT4s: what the
special units, residual, gather and control take; null until the engine is synthesised.
``seconds`` is each design's tool time (generation, yosys, nextpnr) when it was measured; an
unchanged design's report is reused. Long: the tiny engine's synthesis alone takes about 20
minutes, each deit_b16 unit minutes.
"""

from __future__ import annotations

from pathlib import Path

from hw.synth import synthesise
from hw.synth.devices import LFE5U_85F
from hw.synth.flow import stderr_log
from sw.build_files import BENCH_ROOT, write_json
from sw.config import load_config

OUTPUT = BENCH_ROOT / "synth.json"

UNITS = ("gelu", "softmax", "layernorm", "token_gather", "block_sparse_gemm")
GEMM = "block_sparse_gemm"
ENGINE = "layer_engine"

#: (config, top, place and route where it fits)
DESIGNS = ([("tiny", top, True) for top in UNITS + (ENGINE,)]
           + [("deit_b16", top, False) for top in UNITS + (ENGINE,)])

FIELDS = ("config", "top", "lut", "ff", "carry", "dsp", "bram", "distributed_ram", "fits",
          "placed", "fmax_mhz", "critical_path", "xilinx_estimate", "seconds")


def nongemm_lut_share(luts: dict[str, int]) -> float | None:
    """The engine's LUT4s outside its GEMM, as a share of the engine's; None without both."""
    if ENGINE not in luts or GEMM not in luts or not luts[ENGINE]:
        return None
    return round((luts[ENGINE] - luts[GEMM]) / luts[ENGINE], 4)


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
    document = {"device": LFE5U_85F.label, "designs": entries, "deit_b16_units": deit,
                "nongemm_lut_share": nongemm_lut_share(deit)}
    write_json(document, output)
    return document


if __name__ == "__main__":
    run()
