"""Generate an accelerator's Verilog from a config: ``python -m hw.generate --config tiny``.

Writes ``build/<name>/<top>.v`` (``layer_engine.v``, the whole accelerator, unless ``--top``
names another) and ``build/<name>/config.json`` (the exact config it was built from), and, for
the layer engine, prints its on-chip memories and their total (``sw.onchip_memory``). Same
config in, same bytes out, wherever the checkout lives. Bad input ends in one ``error:`` line
and exit code 2 before any file is written; Ctrl-C ends in one line and exit code 130, with the
output directory as it was (both files are replaced together or not at all).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import sysconfig
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from sw.cli import BAD_INPUT, INTERRUPTED

#: The line Ctrl-C ends a run with (exit code 130), whenever it comes.
INTERRUPTED_LINE = "error: interrupted; nothing was written"


def _exit_interrupted(signum=None, frame=None):
    # Components cut off half-built would each warn that they were never used.
    warnings.filterwarnings("ignore", message=".* created but never used")
    print(INTERRUPTED_LINE, file=sys.stderr)
    raise SystemExit(INTERRUPTED)


if __name__ == "__main__":
    # Ctrl-C while the imports below take their seconds: one line, not an import traceback.
    signal.signal(signal.SIGINT, _exit_interrupted)

from amaranth.back import rtlil, verilog  # noqa: E402

from hw.gemm import BlockSparseGemm  # noqa: E402
from hw.layer.engine import build_layer_engine  # noqa: E402
from hw.layer.gemm_epilogue import GemmEpilogue  # noqa: E402
from sw.engine_params import LayerEngineError  # noqa: E402
from hw.tokens import TokenGather  # noqa: E402
from hw.tokens.token_gather_bench import TokenGatherBench  # noqa: E402
from hw.units.gelu import Gelu  # noqa: E402
from hw.units.layernorm import LayerNorm  # noqa: E402
from hw.units.softmax import Softmax  # noqa: E402
from hw.units.stream_harness import harness_builder  # noqa: E402
from sw.atomic import write_text  # noqa: E402
from sw.build_files import BUILD_ROOT, REPO_ROOT  # noqa: E402
from sw.config import AcceleratorConfig, ConfigError, load_config  # noqa: E402
from sw.onchip_memory import memory_table, onchip_memories  # noqa: E402

#: Top-level modules this generator writes, by file stem.
TOPS = {"block_sparse_gemm": BlockSparseGemm, "layer_engine": build_layer_engine,
        "softmax": Softmax.from_config, "gelu": Gelu.from_config,
        "layernorm": LayerNorm.from_config, "token_gather": TokenGather,
        "gemm_epilogue": GemmEpilogue.from_config,
        # simulation-only tops: the unit between an input and an output memory, or with an
        # LFSR back-pressure source and a capture memory
        "softmax_harness": harness_builder(Softmax.from_config),
        "gelu_harness": harness_builder(Gelu.from_config),
        "layernorm_harness": harness_builder(LayerNorm.from_config),
        "token_gather_bench": TokenGatherBench}

#: The line above the layer engine's on-chip memory table (``sw.onchip_memory``).
ONCHIP_HEADING = "on-chip memory (bytes = depth x width / 8; DP16KD: ECP5 18 Kbit blocks):"

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


class OutputError(ValueError):
    """The output directory cannot be written; the message names the path and why."""


def check_output_directory(directory: Path) -> None:
    """Raise :class:`OutputError` unless ``directory`` is, or can be created as, a directory
    this process can write into. Creates nothing: it writes and removes a probe file in the
    nearest existing ancestor (``os.access`` says yes to root even where writes fail)."""
    directory = Path(directory)
    existing = directory
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise OutputError(f"{directory}: {existing} is a dangling symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == directory else f"lies under the file {existing}"
        raise OutputError(f"{directory}: {what}, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".hw-generate-probe."):
            pass
    except OSError as error:
        raise OutputError(f"{directory}: cannot write into {existing} "
                          f"({error.strerror or error})") from None


def check_previous_output(directory: Path, top: str) -> None:
    """Raise :class:`OutputError` if writing ``top`` into ``directory`` would replace a file
    this generator did not write: a ``config.json`` that is not an accelerator config, or a
    ``<top>.v`` without the ``config.json`` every generation writes beside it."""
    config_path, verilog_path = Path(directory) / "config.json", Path(directory) / f"{top}.v"
    if config_path.exists():
        try:
            AcceleratorConfig.from_json_file(config_path)
        except ConfigError:
            raise OutputError(f"{directory}: refusing to replace {config_path.name}, which is "
                              f"not an accelerator config (not written by hw.generate)") from None
    elif verilog_path.exists():
        raise OutputError(f"{directory}: refusing to replace {verilog_path.name}, which has no "
                          f"config.json beside it (not written by hw.generate)")


@contextlib.contextmanager
def _uninterrupted():
    """Hold back Ctrl-C (SIGINT) while the block runs, so that files replaced together are all
    replaced. A Ctrl-C that comes meanwhile is dropped: the work it would have stopped is done
    (milliseconds of renames), and a message that nothing was written would be false."""
    previous = signal.getsignal(signal.SIGINT)
    # Python runs signal handlers in the main thread only, and can restore only its own.
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True)
class GeneratedDesign:
    """Files written for one config."""

    directory: Path
    verilog: Path
    config: Path


def generate(config: AcceleratorConfig, out_dir: Path | None = None,
             top: str = "block_sparse_gemm") -> GeneratedDesign:
    """Write the Verilog of ``top`` and the config into ``out_dir`` (``build/<name>``).

    The Verilog is built before anything is written, and both files are replaced with Ctrl-C
    held back, so an interruption leaves ``out_dir`` as it was.

    Raises
    ------
    OutputError
        If ``out_dir`` is a file, lies under one, cannot be written, or holds a file of the
        same name that this generator did not write (checked first).
    LayerEngineError
        If ``top`` is the layer engine and ``config`` exceeds its limits.
    """
    directory = Path(out_dir) if out_dir is not None else BUILD_ROOT / config.name
    check_output_directory(directory)
    check_previous_output(directory, top)
    verilog_path = directory / f"{top}.v"
    config_path = directory / "config.json"
    text = verilog_text(config, top)
    with _uninterrupted():
        write_text(verilog_path, text)
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
        if args.top == "layer_engine":
            config.check_layer_engine()
        design = generate(config, args.out, top=args.top)
    except (ConfigError, LayerEngineError) as error:
        print(f"error: {error}", file=sys.stderr)
        return BAD_INPUT
    except OutputError as error:
        print(f"error: output directory {error}", file=sys.stderr)
        return BAD_INPUT
    except OSError as error:                   # a disk that filled up while writing, ...
        print(f"error: cannot write {error.filename or args.out} ({error.strerror or error})",
              file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:                  # in-process callers; a script gets the handler
        print(INTERRUPTED_LINE, file=sys.stderr)
        return INTERRUPTED
    lines = design.verilog.read_text().count("\n")
    print(f"{config.name}: wrote {design.verilog} ({lines} lines) and {design.config}")
    if args.top == "layer_engine":
        print(ONCHIP_HEADING)
        print(memory_table(onchip_memories(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
