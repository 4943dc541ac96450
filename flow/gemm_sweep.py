"""Co-simulate one GEMM shape at several block densities and tabulate what sparsity buys.

Used by ``make bench`` (DeiT-B FFN on a 16 x 16 array).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm import tqdm

from sim.gemm_cases import GemmCase, make_operands, save_operands
from sim.harness import build, run_testbench
from sw.config import AcceleratorConfig

DENSITIES = (1.0, 0.5, 0.25, 0.1)


def sweep(config: AcceleratorConfig, *, tokens: int, in_features: int, out_features: int,
          densities=DENSITIES, work_dir: Path, seed: int = 0) -> dict:
    """Build the engine for ``config`` once and run one random block-sparse GEMM per density.

    Returns the ``gemm.json`` document: array, shape, and per density the measured cycles, the
    cycle model's, the ideal ``ceil(non-zero MACs / PEs)``, the dense run's cycles, utilization
    (ideal / cycles), speed-up (dense / cycles), bit-exactness and simulation wall time.
    Raises ``sim.harness.TestbenchFailed`` if any run is not bit-exact or not cycle-exact.
    """
    hw = config.hardware
    started = time.monotonic()
    print(f"building the {hw.array_rows}x{hw.array_cols} GEMM engine for '{config.name}' "
          "with Verilator (cached after the first time)...", flush=True)
    design = build(config)
    print(f"  ready in {time.monotonic() - started:.0f} s", flush=True)
    runs = []
    for index, density in enumerate(tqdm(densities, desc="densities", unit="run")):
        case = GemmCase(f"density{density}", tokens, in_features, out_features,
                        density=density, seed=seed + index)
        run_dir = Path(work_dir) / case.name
        run_dir.mkdir(parents=True, exist_ok=True)
        save_operands(make_operands(case, hw), run_dir / "operands.npz")
        run_testbench(design, "sim.tb_block_sparse_gemm", run_dir, extra_env={
            "GEMM_OPERANDS": str((run_dir / "operands.npz").resolve()),
            "GEMM_RESULT": str((run_dir / "result.json").resolve())})
        runs.append((density, json.loads((run_dir / "result.json").read_text())))
    dense = next((r for d, r in runs if d == 1.0), None)
    results = []
    for density, r in runs:
        results.append({
            "density": density,
            "block_density": r["block_density"],
            "cycles": r["cycles"],
            "model_cycles": r["model_cycles"],
            "ideal_cycles": r["ideal_cycles"],
            "busy_cycles": r["busy"],
            "stall_cycles": r["stall"],
            "fixed_cycles": r["cycles"] - r["busy"] - r["stall"],
            "dense_cycles": dense["cycles"] if dense else None,
            "utilization": r["ideal_cycles"] / r["cycles"],
            "speedup": dense["cycles"] / r["cycles"] if dense else None,
            "bit_exact": r["bit_exact"],
            "cycle_exact": r["cycles"] == r["model_cycles"] == r["edge_cycles"],
            "sim_seconds": r["sim_seconds"],
            "load_seconds": r["load_seconds"],
            "readback_seconds": r["readback_seconds"],
        })
    return {"config": config.name, "array": [hw.array_rows, hw.array_cols],
            "block": [hw.block_rows, hw.block_cols],
            "shape": [tokens, in_features, out_features], "results": results}


def format_table(document: dict) -> str:
    """The sweep as a fixed-width text table."""
    m, k, n = document["shape"]
    rows, cols = document["array"]
    lines = [f"GEMM {m} x {k} times {k} x {n} on a {rows} x {cols} array, "
             f"{document['block'][0]} x {document['block'][1]} blocks",
             f"{'density':>8} {'cycles':>10} {'model':>10} {'ideal':>10} {'stall':>8} "
             f"{'fixed':>6} {'util':>6} {'speedup':>8} {'exact':>6} {'sim s':>7}"]
    for r in document["results"]:
        speedup = f"{r['speedup']:.2f}" if r["speedup"] is not None else "-"
        lines.append(f"{r['density']:>8.2f} {r['cycles']:>10} {r['model_cycles']:>10} "
                     f"{r['ideal_cycles']:>10} {r['stall_cycles']:>8} {r['fixed_cycles']:>6} "
                     f"{r['utilization']:>6.3f} {speedup:>8} "
                     f"{'yes' if r['bit_exact'] and r['cycle_exact'] else 'NO':>6} "
                     f"{r['sim_seconds']:>7.2f}")
    lines.append("stall: issue cycles without useful work (zero tiles of block rows with no")
    lines.append("       stored block, period padding); fixed: start-up and drain of the job")
    return "\n".join(lines)

