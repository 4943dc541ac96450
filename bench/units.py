"""Special-function unit benchmark: softmax, GELU and LayerNorm of the deit_b16 instance
co-simulated at DeiT-B sizes (one head's 197 x 197 attention rows, 197 LayerNorm rows of 768,
the GELU of a 64 x 3072 slice of the FC1 output). Writes ``build/bench/units.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hw.generate import BUILD_ROOT, verilog_text
from sim.harness import build
from sim.unit_cases import UnitJob, run_unit_jobs
from sw.atomic import write_text
from sw.config import load_config

OUTPUT = BUILD_ROOT / "bench" / "units.json"

#: Tokens of the GELU slice: 64 x 3072 values fill most of the harness memory.
GELU_TOKENS = 64


def bench_jobs(config) -> list[UnitJob]:
    """One job per unit, drawn like real activations (fixed seed)."""
    m = config.model
    g = np.random.default_rng(2026)
    scale = 0.02
    scores = np.round(g.normal(0, 3, (m.tokens, m.tokens)) / scale).astype(np.int64)
    residual = np.round(g.normal(0, 4000, (m.tokens, m.hidden_size))
                        + g.normal(0, 2000, (m.tokens, 1))).clip(-32768, 32767).astype(np.int64)
    fc1 = g.integers(-128, 128, (GELU_TOKENS, m.ffn_size))
    return [
        UnitJob("softmax", scores, {"input_scale": scale}, name="softmax"),
        UnitJob("gelu", fc1, {"input_scale": 0.03, "out_scale": 0.02}, name="gelu"),
        UnitJob("layernorm", residual, {"out_scale": 0.05}, gamma=g.normal(1, 0.2, m.hidden_size),
                beta=g.normal(0, 0.3, m.hidden_size), name="layernorm"),
    ]


def run(output: Path = OUTPUT) -> dict:
    config = load_config("deit_b16")
    units = []
    for job in bench_jobs(config):
        design = build(config, f"{job.unit}_harness")
        result, = run_unit_jobs(design, job.unit, [job],
                                BUILD_ROOT / "bench" / "units" / job.unit)
        if not result["bit_exact"] or result["cycles"] != result["model_cycles"]:
            raise AssertionError(f"{job.unit}: not bit-exact or cycles differ from the model: "
                                 f"{result}")
        units.append({
            "name": job.unit, "lanes": result["lanes"], "elements": result["elements"],
            "rows": result["rows"], "row_length": result["length"],
            "cycles": result["cycles"], "model_cycles": result["model_cycles"],
            "elements_per_cycle_per_lane": round(result["elements_per_cycle_per_lane"], 4),
            "latency": result["latency"], "bit_exact": result["bit_exact"],
            "verilog_lines": verilog_text(config, job.unit).count("\n"),
        })
    document = {"config": config.name, "units": units}
    write_text(output, json.dumps(document, indent=2) + "\n")
    print(format_table(document))
    print(f"wrote {output}")
    return document


def format_table(document: dict) -> str:
    lines = [f"{'unit':<10} {'lanes':>5} {'elements':>9} {'cycles':>8} {'el/cyc/lane':>11} "
             f"{'latency':>7} {'verilog lines':>13}"]
    for u in document["units"]:
        lines.append(f"{u['name']:<10} {u['lanes']:>5} {u['elements']:>9} {u['cycles']:>8} "
                     f"{u['elements_per_cycle_per_lane']:>11.4f} {u['latency']:>7} "
                     f"{u['verilog_lines']:>13}")
    return "\n".join(lines)


if __name__ == "__main__":
    run()
