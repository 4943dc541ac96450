"""One design through synthesis and, where it fits, out-of-context place and route: the
Verilog from ``hw.generate``, yosys ``synth_ecp5``, nextpnr-ecp5 on LFE5U-85F, and for designs
too large for it a ``synth_xilinx`` estimate; the result as ``build/<name>/synth/<top>.json``."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from hw.generate import BUILD_ROOT, generate
from hw.synth import reports, tools
from hw.synth.devices import LFE5U_85F, XCZU9EG, Ecp5Device
from sw.atomic import write_text
from sw.config import AcceleratorConfig

#: Written into every report; a file at a report's path without it is not ours to replace.
GENERATOR = "hw.synth"

#: nextpnr's target clock (MHz). The report gives the achieved Fmax whatever it is.
DEFAULT_FREQ_MHZ = 100.0
#: nextpnr placement seed, fixed so that a rerun gives the same Fmax.
DEFAULT_SEED = 1


class SynthError(Exception):
    """The flow cannot run or cannot write its report; the message is one line."""


def synth_dir(config: AcceleratorConfig) -> Path:
    """``build/<name>/synth``: the Verilog, scripts, netlists, tool logs and reports."""
    return BUILD_ROOT / config.name / "synth"


def report_path(config: AcceleratorConfig, top: str, directory: Path | None = None) -> Path:
    """Where ``synthesise`` writes the report of ``top`` (in ``directory`` if given)."""
    return (synth_dir(config) if directory is None else Path(directory)) / f"{top}.json"


def ecp5_script(top: str) -> str:
    return (f"read_verilog {top}.v\n"
            f"synth_ecp5 -top {top}\n"
            f"tee -q -o {top}.ecp5.stat.json stat -json\n"
            f"write_json {top}.ecp5.netlist.json\n")


def xilinx_script(top: str) -> str:
    return (f"read_verilog {top}.v\n"
            f"synth_xilinx -family xcup -flatten -noiopad -noclkbuf -top {top}\n"
            f"tee -q -o {top}.xcup.stat.json stat -json\n")


def _digest(*texts: str | bytes) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode() if isinstance(text, str) else text)
        digest.update(b"\0")
    return digest.hexdigest()


def run_yosys_step(directory: Path, top: str, target: str, script: str, verilog: bytes,
                   version: str, log=print) -> tuple[float, bool]:
    """Run one yosys script unless its outputs already came from this Verilog and script.

    A stamp ``<top>.<target>.stamp.json`` records the inputs' digest and the seconds the run
    took; the seconds and whether the run was reused come back.
    """
    stamp = directory / f"{top}.{target}.stamp.json"
    digest = _digest(verilog, script, version)
    if stamp.is_file():
        try:
            recorded = json.loads(stamp.read_text())
            if recorded.get("inputs_sha256") == digest:
                return float(recorded["seconds"]), True
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            pass
    stamp.unlink(missing_ok=True)
    script_path = directory / f"{top}.{target}.ys"
    write_text(script_path, script)
    log(f"{top}: yosys {target} ...")
    seconds = tools.run_yosys(script_path, directory / f"{top}.{target}.log")
    write_text(stamp, json.dumps({"inputs_sha256": digest, "seconds": round(seconds, 1)}) + "\n")
    return round(seconds, 1), False


def place_and_route(directory: Path, top: str, device: Ecp5Device, freq_mhz: float,
                    seed: int) -> tuple[dict, float]:
    """nextpnr-ecp5 out of context on ``device``: the timing part of the report, and seconds."""
    report = directory / f"{top}.nextpnr.report.json"
    report.unlink(missing_ok=True)
    log = directory / f"{top}.nextpnr.log"
    command = [tools.nextpnr_path(), device.nextpnr_size, "--speed", str(device.speed),
               "--package", device.package, "--json", f"{top}.ecp5.netlist.json",
               "--out-of-context", "--freq", f"{freq_mhz:g}", "--timing-allow-fail",
               "--seed", str(seed), "--report", report.name, "--log", log.name, "--quiet"]
    code, seconds = tools.run_logged(command, directory / f"{top}.nextpnr.stdout", directory)
    if code != 0 or not report.is_file():
        return {"placed": False, "pnr_error": tools.last_error(log)}, seconds
    fmax, path = reports.nextpnr_timing(report.read_text())
    return {"placed": True, "fmax_mhz": None if fmax is None else round(fmax, 2),
            "critical_path": None if path is None else path.as_dict()}, seconds


def _previous_report(path: Path) -> dict:
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return report if isinstance(report, dict) else {}


def _check_writable(path: Path) -> None:
    if not path.exists():
        return
    try:
        owner = json.loads(path.read_text()).get("generator")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        owner = None
    if owner != GENERATOR:
        raise SynthError(f"{path}: exists and was not written by {GENERATOR}; not replacing it")


def synthesise(config: AcceleratorConfig, top: str, *, place: bool = True,
               freq_mhz: float = DEFAULT_FREQ_MHZ, seed: int = DEFAULT_SEED,
               device: Ecp5Device = LFE5U_85F, directory: Path | None = None,
               log=print) -> dict:
    """Synthesise ``top`` of ``config`` (and place and route it when ``place`` and it fits).

    Writes and returns the report ``<top>.json`` in ``directory`` (default
    ``build/<name>/synth``, where the Verilog, netlists and logs go too). A report of the same
    Verilog, options and tool versions is returned as it is; a yosys run is reused when its
    Verilog, script and yosys version are unchanged.

    Raises
    ------
    SynthError
        If the report path holds a file this flow did not write.
    tools.ToolMissing, tools.ToolFailed
        If yosys or nextpnr is not installed, or fails.
    """
    directory = synth_dir(config) if directory is None else Path(directory)
    output = report_path(config, top, directory)
    _check_writable(output)
    started = time.monotonic()
    versions = {"yosys": tools.yosys_version()}
    if place:
        versions["nextpnr"] = tools.nextpnr_version()
    seconds: dict[str, float] = {}
    reused: list[str] = []

    clock = time.monotonic()
    design = generate(config, directory, top=top)
    seconds["generate"] = round(time.monotonic() - clock, 1)
    verilog = design.verilog.read_bytes()
    options = {"place": place, "freq_mhz": freq_mhz, "seed": seed, "device": device.label}
    previous = _previous_report(output)
    if (previous.get("verilog_sha256") == hashlib.sha256(verilog).hexdigest()
            and previous.get("options") == options and previous.get("tools") == versions):
        log(f"{top}: unchanged since {output.name} was written; reusing it")
        return previous

    seconds["yosys_ecp5"], again = run_yosys_step(directory, top, "ecp5", ecp5_script(top),
                                                  verilog, versions["yosys"], log)
    if again:
        reused.append("yosys_ecp5")
    cells = reports.cell_counts((directory / f"{top}.ecp5.stat.json").read_text(), top)
    resources = reports.ecp5_resources(cells)
    overflows = reports.ecp5_overflows(resources, device)

    timing = {"placed": False, "fmax_mhz": None, "critical_path": None}
    if place and not overflows:
        log(f"{top}: nextpnr-ecp5 {device.label} ...")
        timing, seconds["nextpnr"] = place_and_route(directory, top, device, freq_mhz, seed)
        seconds["nextpnr"] = round(seconds["nextpnr"], 1)
    netlist = json.loads((directory / f"{top}.ecp5.netlist.json").read_text())
    deepest = reports.logic_depth_path(netlist)
    carry_sources = reports.carry_by_source(netlist)
    del netlist
    deepest = None if deepest is None else deepest.as_dict()
    if timing.get("critical_path") is None:
        timing = {**timing, "fmax_mhz": timing.get("fmax_mhz"), "critical_path": deepest}

    estimate = None
    if overflows:
        xilinx_seconds, again = run_yosys_step(directory, top, "xcup", xilinx_script(top),
                                               verilog, versions["yosys"], log)
        seconds["yosys_xcup"] = xilinx_seconds
        if again:
            reused.append("yosys_xcup")
        xilinx_cells = reports.cell_counts((directory / f"{top}.xcup.stat.json").read_text(),
                                           top)
        estimate = {"kind": "synthesis only (yosys synth_xilinx -family xcup), not placed",
                    "reference_device": XCZU9EG.name,
                    **reports.xilinx_resources(xilinx_cells), "cells": xilinx_cells}

    # without place and route, fitting is judged by the resource counts alone ("placed": false)
    fits = False if overflows else (timing["placed"] if place else True)
    report = {
        "generator": GENERATOR, "config": config.name, "top": top, "device": device.label,
        **{key: resources[key] for key in ("lut", "ff", "carry", "dsp", "bram",
                                           "distributed_ram", "mux")},
        "fits": fits, "overflows": overflows, "placed": timing["placed"],
        "target_mhz": freq_mhz if timing["placed"] else None, "fmax_mhz": timing["fmax_mhz"],
        "critical_path": timing["critical_path"], "deepest_logic": deepest,
        "carry_by_source": carry_sources,
        **({"pnr_error": timing["pnr_error"]} if "pnr_error" in timing else {}),
        "cells": cells, "xilinx_estimate": estimate, "tools": versions,
        "seconds": round(sum(seconds.values()), 1), "step_seconds": seconds,
        "reused_steps": reused, "options": options,
        "verilog_sha256": hashlib.sha256(verilog).hexdigest(),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    write_text(output, json.dumps(report, indent=2) + "\n")
    return report


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
