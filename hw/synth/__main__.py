"""``python -m hw.synth --config tiny --top gelu``: synthesise one generated design for
LFE5U-85F (yosys), place and route it out of context where it fits (nextpnr-ecp5), and write
``build/<name>/synth/<top>.json``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hw.generate import DEFAULT_TOP, TOPS
from hw.layer.memory_map import LayerEngineError
from hw.synth.flow import DEFAULT_FREQ_MHZ, DEFAULT_SEED, SynthError, stderr_log, synthesise
from hw.synth.tools import ToolFailed, ToolMissing
from sw.config import ConfigError, load_config


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MHz, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of MHz, not {text!r}")
    return value


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit 2 (argparse prints the usage first)."""

    def error(self, message):
        self.exit(2, f"error: {message}\n")


def summary(report: dict) -> str:
    """One line: what was measured."""
    fmax = "not placed" if report["fmax_mhz"] is None else f"Fmax {report['fmax_mhz']} MHz"
    fits = {True: "fits", False: "does not fit", None: "fit not checked"}[report["fits"]]
    path = report["critical_path"]
    longest = "" if path is None else (f", critical path {path['cells']} cells "
                                       f"({path['carry_cells']} carry)")
    return (f"{report['config']}/{report['top']}: {report['lut']} LUT4, {report['ff']} FF, "
            f"{report['carry']} CCU2C, {report['dsp']} MULT18X18D, {report['bram']} DP16KD; "
            f"{fits} {report['device']}; {fmax}{longest}; {report['seconds']} s")


def main(argv: list[str] | None = None) -> int:
    parser = _OneLineParser(prog="python -m hw.synth",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True,
                        help="a preset name (tiny, deit_b16, ...) or the path of a config JSON")
    parser.add_argument("--top", choices=sorted(TOPS), default=DEFAULT_TOP,
                        help=f"the design to synthesise (default: {DEFAULT_TOP})")
    parser.add_argument("--no-place", action="store_true",
                        help="synthesis only: skip nextpnr even where the design fits")
    parser.add_argument("--freq", type=_positive, default=DEFAULT_FREQ_MHZ,
                        help=f"nextpnr's target clock in MHz (default {DEFAULT_FREQ_MHZ:g})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"nextpnr placement seed (default {DEFAULT_SEED})")
    parser.add_argument("--out", type=Path, default=None,
                        help="working and report directory (default: build/<config name>/synth)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        report = synthesise(config, args.top, place=not args.no_place, freq_mhz=args.freq,
                            seed=args.seed, directory=args.out, log=stderr_log)
    except (ConfigError, LayerEngineError, SynthError, ToolMissing) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ToolFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
