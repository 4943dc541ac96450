"""Special-function unit benchmark: softmax, GELU and LayerNorm of the deit_b16 instance
co-simulated at DeiT-B sizes (one head's 197 x 197 attention rows, 197 LayerNorm rows of 768,
the GELU of a 64 x 3072 slice of the FC1 output). Writes ``build/bench/units.json``."""

from __future__ import annotations

from pathlib import Path

from hw.generate import verilog_text
from sim.harness import build
from sim.unit_cases import benchmark_jobs, run_unit_jobs
from sw.build_files import BENCH_ROOT, write_json
from sw.config import load_config

OUTPUT = BENCH_ROOT / "units.json"

def run(output: Path = OUTPUT) -> dict:
    config = load_config("deit_b16")
    units = []
    for job in benchmark_jobs(config):
        design = build(config, f"{job.unit}_harness")
        result, = run_unit_jobs(design, job.unit, [job],
                                BENCH_ROOT / "units" / job.unit)
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
    write_json(document, output)
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
