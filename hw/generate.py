"""Generate an accelerator's Verilog from a config: ``python -m hw.generate --config tiny``.

Writes ``build/<name>/block_sparse_gemm.v`` and ``build/<name>/config.json`` (the exact config
it was built from). Same config in, same bytes out, wherever the checkout lives.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil, verilog

from hw.gemm import BlockSparseGemm
from hw.layer.engine import build_layer_engine
from hw.layer.memory_map import LayerEngineError
from hw.tokens import TokenGather
from hw.tokens.token_gather_bench import TokenGatherBench
from hw.units.gelu import Gelu
from hw.units.layernorm import LayerNorm
from hw.units.softmax import Softmax
from hw.units.stream_harness import harness_builder
from sw.atomic import write_text
from sw.config import AcceleratorConfig, ConfigError, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_ROOT = REPO_ROOT / "build"

#: Top-level modules this generator writes, by file stem.
TOPS = {"block_sparse_gemm": BlockSparseGemm, "layer_engine": build_layer_engine,
        "softmax": Softmax.from_config, "gelu": Gelu.from_config,
        "layernorm": LayerNorm.from_config, "token_gather": TokenGather,
        # simulation-only tops: the unit between an input and an output memory, or with an
        # LFSR back-pressure source and a capture memory
        "softmax_harness": harness_builder(Softmax.from_config),
        "gelu_harness": harness_builder(Gelu.from_config),
        "layernorm_harness": harness_builder(LayerNorm.from_config),
        "token_gather_bench": TokenGatherBench}

#: What ``make verilog`` writes: the layer engine, the whole accelerator.
DEFAULT_TOP = "layer_engine"


@contextlib.contextmanager
def _without_zero_memory_init():
    """Emit no initial contents for memories whose contents are all zeros.

    Amaranth 0.5 always initialises memories and spells the contents out one constant net per
    bit: 19 million for deit_b16's buffers, minutes of conversion and a 16 MB file of zeros.
    Every buffer of this design is written through the load port, or by the engine, before it
    is read, so its power-on contents are irrelevant; leaving them out is what a hand-written
    RAM would do.
    """
    original = rtlil.ModuleEmitter.emit_memory

    def emit_memory(self, cell_idx, cell):
        if any(cell.init):
            original(self, cell_idx, cell)

    rtlil.ModuleEmitter.emit_memory = emit_memory
    try:
        yield
    finally:
        rtlil.ModuleEmitter.emit_memory = original


def _relative_sources(text: str) -> str:
    """Make ``src`` attributes independent of where the checkout and the venv live."""
    prefixes = [entry for entry in sys.path if entry.endswith("site-packages")]
    prefixes.append(sysconfig.get_paths()["stdlib"])     # FSMs are attributed to contextlib
    for prefix in prefixes:
        text = text.replace(f"{prefix}/", "")
    return text.replace(f"{REPO_ROOT}/", "")


def verilog_text(config: AcceleratorConfig, top: str = "block_sparse_gemm") -> str:
    """The Verilog of ``top`` for ``config``."""
    with _without_zero_memory_init():
        text = verilog.convert(TOPS[top](config), name=top)
    return _relative_sources(text)


@dataclass(frozen=True)
class GeneratedDesign:
    """Files written for one config."""

    directory: Path
    verilog: Path
    config: Path


def generate(config: AcceleratorConfig, out_dir: Path | None = None,
             top: str = "block_sparse_gemm") -> GeneratedDesign:
    """Write the Verilog of ``top`` and the config into ``out_dir`` (``build/<name>``)."""
    directory = Path(out_dir) if out_dir is not None else BUILD_ROOT / config.name
    verilog_path = directory / f"{top}.v"
    config_path = directory / "config.json"
    write_text(verilog_path, verilog_text(config, top))
    write_text(config_path, config.to_json())
    return GeneratedDesign(directory=directory, verilog=verilog_path, config=config_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw.generate", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--config", required=True,
                        help="a preset name (tiny, deit_b16, ...) or the path of a config JSON")
    parser.add_argument("--top", choices=sorted(TOPS), default=DEFAULT_TOP,
                        help=f"top-level module (default: {DEFAULT_TOP}, the whole accelerator)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: build/<config name>)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        design = generate(config, args.out, top=args.top)
    except LayerEngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    lines = design.verilog.read_text().count("\n")
    print(f"{config.name}: wrote {design.verilog} ({lines} lines) and {design.config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
