"""Reading the tools' reports: yosys ``stat -json`` cell counts, nextpnr-ecp5's ``--report``
JSON (Fmax and critical path) and, for designs that are not placed, the deepest chain of
combinational cells of a yosys JSON netlist."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from hw.synth.devices import Ecp5Device


class ReportError(Exception):
    """A tool report does not have the expected shape; the message names what is missing."""


def _load(text: str, what: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ReportError(f"{what}: not JSON ({error.msg} at line {error.lineno})") from None


def cell_counts(stat_text: str, top: str) -> dict[str, int]:
    """Cells by type of ``top`` from yosys ``stat -json`` output (the whole-design totals)."""
    stat = _load(stat_text, "yosys stat")
    modules = stat.get("modules", {}) if isinstance(stat, dict) else {}
    section = stat.get("design") if isinstance(stat, dict) else None
    if section is None:
        section = modules.get(f"\\{top}")
    if section is None or "num_cells_by_type" not in section:
        raise ReportError(f"yosys stat: no cell counts for module {top!r}")
    return {name.lstrip("\\"): int(count)
            for name, count in sorted(section["num_cells_by_type"].items())}


def ecp5_resources(cells: dict[str, int]) -> dict[str, int]:
    """LUT4s, flip-flops, CCU2C carry cells, multipliers, block and distributed RAMs."""
    return {
        "lut": cells.get("LUT4", 0),
        "ff": cells.get("TRELLIS_FF", 0),
        "carry": cells.get("CCU2C", 0),
        "dsp": cells.get("MULT18X18D", 0) + cells.get("ALU54B", 0),
        "bram": cells.get("DP16KD", 0),
        "distributed_ram": cells.get("TRELLIS_DPR16X4", 0),
        "mux": cells.get("PFUMX", 0) + cells.get("L6MUX21", 0),
    }


def ecp5_overflows(resources: dict[str, int], device: Ecp5Device) -> list[str]:
    """What ``resources`` needs beyond ``device``; empty when it may fit.

    A LUT4 takes one LUT slot, a CCU2C and a TRELLIS_DPR16X4 two each. Placement decides in
    the end; this check only spares a place-and-route that cannot succeed.
    """
    comb = resources["lut"] + 2 * resources["carry"] + 2 * resources["distributed_ram"]
    needs = [("LUT slots", comb, device.comb), ("FFs", resources["ff"], device.ff),
             ("MULT18X18D", resources["dsp"], device.mult18),
             ("DP16KD", resources["bram"], device.dp16kd)]
    return [f"{name} {used} > {available}" for name, used, available in needs
            if used > available]


_XILINX_LUTRAM = re.compile(r"^RAM(16|32|64|128|256|512)")


def xilinx_resources(cells: dict[str, int]) -> dict[str, int | float]:
    """``synth_xilinx`` counts: LUTs, FFs, CARRY8s, DSP48E2s, BRAM36 equivalents, URAMs."""
    return {
        "lut": sum(count for name, count in cells.items() if re.fullmatch(r"LUT[1-6](_2)?", name)),
        "ff": sum(count for name, count in cells.items() if re.fullmatch(r"FD[CPRSE]+", name)),
        "carry": cells.get("CARRY8", 0) + cells.get("CARRY4", 0),
        "dsp48": cells.get("DSP48E2", 0),
        "bram36": cells.get("RAMB36E2", 0) + cells.get("RAMB18E2", 0) / 2,
        "uram": cells.get("URAM288", 0),
        "lutram": sum(count for name, count in cells.items() if _XILINX_LUTRAM.match(name)),
        "srl": cells.get("SRL16E", 0) + cells.get("SRLC32E", 0),
    }


@dataclass(frozen=True)
class CriticalPath:
    """The longest register-to-register (or port) path of a design.

    ``cells`` counts logic cells (a CCU2C carry cell once, though nextpnr splits it in two
    halves), ``carry_cells`` the CCU2C among them; ``delay_ns`` is nextpnr's total delay, None
    for a logic-depth path of an unplaced netlist; ``through`` lists the ``hw/`` source lines
    the path passes, in order.
    """

    method: str
    start: str
    end: str
    cells: int
    carry_cells: int
    carry_share: float
    delay_ns: float | None
    logic_ns: float | None
    through: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def _hw_sources(sources, seen: list[str]) -> None:
    for source in sources:
        for part in str(source).split("|"):
            if part.startswith("hw/") and part not in seen:
                seen.append(part)


_CCU2_HALF = re.compile(r"\$CCU2_COMB[01]$")


def nextpnr_timing(report_text: str, clock: str = "clk") -> tuple[float | None,
                                                                    CriticalPath | None]:
    """Fmax (MHz) of ``clock`` and its critical path from nextpnr's ``--report`` JSON.

    Both are None when the design has no register-to-register path on that clock.
    """
    report = _load(report_text, "nextpnr report")
    if not isinstance(report, dict) or "fmax" not in report:
        raise ReportError("nextpnr report: no 'fmax' section")
    fmax = report["fmax"].get(clock)
    if fmax is None:
        return None, None
    paths = [path for path in report.get("critical_paths", [])
             if path.get("from") == f"posedge {clock}" and path.get("to") == f"posedge {clock}"]
    if not paths:
        return float(fmax["achieved"]), None
    segments = max(paths, key=lambda path: sum(s["delay"] for s in path["path"]))["path"]
    cells: list[str] = []
    carry = set()
    through: list[str] = []
    for segment in segments:
        _hw_sources(segment.get("sources", []), through)
        if segment["type"] != "logic":
            continue
        name = segment["from"]["cell"]
        merged = _CCU2_HALF.sub("", name)
        if merged != name:
            carry.add(merged)
        if merged not in cells:
            cells.append(merged)
    routed = [s for s in segments if s["type"] == "routing"]
    start = routed[0].get("net", segments[0]["from"]["cell"]) if routed else \
        segments[0]["from"]["cell"]
    end = segments[-1]["to"]
    path = CriticalPath(
        method="nextpnr", start=start.lstrip("\\"), end=f"{end['cell'].lstrip(chr(92))}."
        f"{end['port']}", cells=len(cells), carry_cells=len(carry),
        carry_share=round(len(carry) / len(cells), 3) if cells else 0.0,
        delay_ns=round(sum(s["delay"] for s in segments), 3),
        logic_ns=round(sum(s["delay"] for s in segments if s["type"] != "routing"), 3),
        through=through)
    return float(fmax["achieved"]), path


def _innermost_source(src: str) -> str:
    """The innermost project line of a cell's ``src`` attribute (``outer|...|inner``)."""
    parts = [part for part in str(src).split("|") if part and not part.startswith("/")]
    ours = [part for part in parts if part.startswith("hw/")]
    return (ours or parts or ["(no source)"])[-1]


def carry_by_source(netlist: dict, limit: int = 8) -> list[list]:
    """The source lines with most CCU2C carry cells, ``[[line, count], ...]``, most first.

    Carry cells keep their source through ABC, LUT4s do not, so this is where the adders,
    subtracters and comparators of a design come from.
    """
    _, module = top_module(netlist)
    counts: dict[str, int] = {}
    for cell in module.get("cells", {}).values():
        if cell["type"] == "CCU2C":
            line = _innermost_source(cell.get("attributes", {}).get("src", ""))
            counts[line] = counts.get(line, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [[line, count] for line, count in ranked[:limit]]


#: Cells whose outputs are registered: paths start and end at them (ECP5 and UltraScale+).
SEQUENTIAL = re.compile(r"^(TRELLIS_FF|DP16KD|FD[CPRSE]+|RAMB(18|36)E2|URAM288)$")


def top_module(netlist: dict) -> tuple[str, dict]:
    """The module of a yosys JSON netlist marked ``top``."""
    for name, module in netlist.get("modules", {}).items():
        if str(module.get("attributes", {}).get("top", "0")).strip("0"):   # "000...1" is set
            return name, module
    raise ReportError("yosys netlist: no module marked top")


def logic_depth_path(netlist: dict) -> CriticalPath | None:
    """The chain of most combinational cells between registers or ports of a JSON netlist.

    For designs that are not placed: it counts cells, not delays, so it points at the long
    path without timing it. None when the design has no combinational cell.
    """
    _, module = top_module(netlist)
    names = {}
    for net, entry in module.get("netnames", {}).items():
        net = net.lstrip("\\")
        for index, bit in enumerate(entry["bits"]):
            if isinstance(bit, int):
                label = net if len(entry["bits"]) == 1 else f"{net}[{index}]"
                if bit not in names or (names[bit].startswith("$") and not net.startswith("$")):
                    names[bit] = label
    driver: dict[int, str] = {}
    inputs: dict[str, list[int]] = {}
    cells = module.get("cells", {})
    registered: dict[int, str] = {}
    for name, cell in cells.items():
        directions = cell.get("port_directions", {})
        if SEQUENTIAL.match(cell["type"]):
            for port, bits in cell["connections"].items():
                if directions.get(port) == "output":
                    registered.update((bit, name) for bit in bits if isinstance(bit, int))
            continue
        ins = []
        for port, bits in cell["connections"].items():
            for bit in bits:
                if not isinstance(bit, int):
                    continue
                if directions.get(port) == "output":
                    driver[bit] = name
                else:
                    ins.append(bit)
        inputs[name] = ins
    if not inputs:
        return None
    # depth[c]: most cells on a path ending at c; best[c]: (predecessor cell or None, bit)
    depth: dict[str, int] = {}
    best: dict[str, tuple[str | None, int | None]] = {}
    for root in inputs:
        if root in depth:
            continue
        stack = [(root, False)]
        on_stack = set()
        while stack:
            cell, expanded = stack.pop()
            if expanded:
                on_stack.discard(cell)
                top, pred, from_bit = 0, None, None
                for bit in inputs[cell]:
                    source = driver.get(bit)
                    level = depth.get(source, 0) if source is not None else 0
                    if from_bit is None:
                        from_bit = bit
                    if level > top:
                        top, pred, from_bit = level, source, bit
                depth[cell] = top + 1
                best[cell] = (pred, from_bit)
                continue
            if cell in depth or cell in on_stack:
                continue                    # done, or a combinational loop: cut it here
            on_stack.add(cell)
            stack.append((cell, True))
            for bit in inputs[cell]:
                source = driver.get(bit)
                if source is not None and source not in depth and source not in on_stack:
                    stack.append((source, False))
    end = max(depth, key=lambda cell: (depth[cell], cell))
    chain = [end]
    while best[chain[-1]][0] is not None:
        chain.append(best[chain[-1]][0])
    chain.reverse()
    start_bit = best[chain[0]][1]
    end_bits = [bit for port, bits in cells[end]["connections"].items()
                if cells[end].get("port_directions", {}).get(port) == "output"
                for bit in bits if isinstance(bit, int)]
    through: list[str] = []
    for cell in chain:
        _hw_sources([cells[cell].get("attributes", {}).get("src", "")], through)
    carry = sum(1 for cell in chain if cells[cell]["type"] in ("CCU2C", "CARRY8", "CARRY4"))

    def label(bit: int | None, fallback: str) -> str:
        name = names.get(bit, "") if bit is not None else ""
        if (not name or name.startswith("$")) and bit in registered:
            name = registered[bit].lstrip("\\")
        return (name or fallback).lstrip("\\")

    return CriticalPath(
        method="logic depth (unplaced netlist)",
        start=label(start_bit, "(unnamed net)"), end=label(end_bits[0] if end_bits else None, end),
        cells=len(chain), carry_cells=carry, carry_share=round(carry / len(chain), 3),
        delay_ns=None, logic_ns=None, through=through)
