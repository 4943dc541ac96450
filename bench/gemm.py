"""GEMM benchmark: a DeiT-B FFN-shaped GEMM (197 x 768 times 768 x 3072) on a 16 x 16 array,
co-simulated at block densities 1.0, 0.5, 0.25 and 0.1. Writes ``build/bench/gemm.json``."""

from pathlib import Path

from flow.gemm_sweep import format_table, sweep
from sw.build_files import BENCH_ROOT, write_json
from sw.config import load_config

OUTPUT = BENCH_ROOT / "gemm.json"


def run(output: Path = OUTPUT) -> dict:
    config = load_config("deit_b16")
    m = config.model
    document = sweep(config, tokens=m.tokens, in_features=m.hidden_size,
                     out_features=m.ffn_size, work_dir=BENCH_ROOT / "gemm")
    write_json(document, output)
    print(format_table(document))
    print(f"wrote {output}")
    return document
