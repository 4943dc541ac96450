"""hw.synth's report parsing, on tool outputs captured from ``synth_fixtures/mac.v`` (a
registered 8 x 8 multiply-accumulate) with yosys 0.23 and nextpnr-ecp5 0.11.1."""

import json
from pathlib import Path

import pytest

from hw.synth.devices import LFE5U_85F
from hw.synth.reports import (ReportError, carry_by_source, cell_counts, ecp5_overflows,
                              ecp5_resources, logic_depth_path, nextpnr_timing,
                              xilinx_resources)

FIXTURES = Path(__file__).parent / "synth_fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_ecp5_cell_counts_and_resources():
    cells = cell_counts(fixture("mac.ecp5.stat.json"), "mac")
    assert cells == {"CCU2C": 8, "LUT4": 3, "MULT18X18D": 1, "PFUMX": 1, "TRELLIS_FF": 33}
    # 8 + 8 input registers, 16 accumulator bits, the "full" flag
    assert ecp5_resources(cells) == {"lut": 3, "ff": 33, "carry": 8, "dsp": 1, "bram": 0,
                                     "distributed_ram": 0, "mux": 1}


def test_cell_counts_without_the_module_is_one_line():
    with pytest.raises(ReportError, match=r"^yosys stat: no cell counts for module 'gelu'$"):
        cell_counts('{"modules": {}}', "gelu")
    with pytest.raises(ReportError, match=r"^yosys stat: not JSON \(Expecting value at line 1\)$"):
        cell_counts("Warning: ...", "gelu")


def test_xilinx_resources():
    cells = cell_counts(fixture("mac.xcup.stat.json"), "mac")
    assert xilinx_resources(cells) == {"lut": 17, "ff": 33, "carry": 4, "dsp48": 1,
                                       "bram36": 0, "uram": 0, "lutram": 0, "srl": 0}
    assert xilinx_resources({"RAMB18E2": 3, "RAMB36E2": 2, "RAM64M": 4, "LUT6_2": 5,
                             "FDCE": 2, "URAM288": 1})["bram36"] == 3.5


def test_overflows_name_each_resource_beyond_the_device():
    fitting = {"lut": 83640 - 2 * 10, "carry": 10, "distributed_ram": 0, "ff": 83640,
               "dsp": 156, "bram": 208}
    assert ecp5_overflows(fitting, LFE5U_85F) == []
    assert ecp5_overflows({**fitting, "carry": 11, "dsp": 164, "bram": 209}, LFE5U_85F) == [
        "LUT slots 83642 > 83640", "MULT18X18D 164 > 156", "DP16KD 209 > 208"]


def test_nextpnr_fmax_and_critical_path():
    fmax, path = nextpnr_timing(fixture("mac.nextpnr.report.json"))
    assert fmax == pytest.approx(119.36, abs=0.005)    # the log's "Max frequency ... 119.36 MHz"
    # a_q -> the multiplier -> 6 of the accumulator's 8 CCU2C (each in two nextpnr halves)
    assert (path.start, path.end, path.cells, path.carry_cells) == (
        "a_q[4]", "acc_TRELLIS_FF_Q.DI", 7, 6)
    assert path.carry_share == pytest.approx(6 / 7, abs=0.001)
    assert path.delay_ns == pytest.approx(1000 / fmax, abs=0.001)
    assert path.method == "nextpnr" and path.through == []


def test_nextpnr_without_the_clock_gives_no_fmax():
    assert nextpnr_timing('{"fmax": {}, "critical_paths": []}') == (None, None)
    with pytest.raises(ReportError, match=r"^nextpnr report: no 'fmax' section$"):
        nextpnr_timing('{"utilization": {}}')


def test_logic_depth_path_of_the_unplaced_netlist():
    path = logic_depth_path(json.loads(fixture("mac.ecp5.netlist.json")))
    # a register -> the multiplier -> the accumulator's whole chain of 8 CCU2C
    assert (path.start, path.cells, path.carry_cells) == ("a_q[0]", 9, 8)
    assert path.end.startswith("acc_TRELLIS_FF_Q_DI")
    assert path.delay_ns is None and path.method == "logic depth (unplaced netlist)"


def test_logic_depth_path_without_a_top_module():
    with pytest.raises(ReportError, match=r"^yosys netlist: no module marked top$"):
        logic_depth_path({"modules": {"mac": {"attributes": {}}}})


def test_carry_cells_by_source_line():
    netlist = json.loads(fixture("mac.ecp5.netlist.json"))
    # mac.v line 9, columns 28-43: "acc + a_q * b_q", the 16-bit accumulate (8 CCU2C)
    assert carry_by_source(netlist) == [["mac.v:9.28-9.43", 8]]
    cell = {"type": "CCU2C", "attributes": {"src": "hw/units/softmax.py:218|"
                                                   "hw/units/reciprocal.py:66|/usr/share/x.v:1"}}
    other = {"type": "LUT4", "attributes": {"src": "hw/units/gelu.py:1"}}
    design = {"modules": {"top": {"attributes": {"top": "00000000000000000000000000000001"},
                                  "cells": {"a": cell, "b": cell, "c": other}}}}
    assert carry_by_source(design) == [["hw/units/reciprocal.py:66", 2]]


def _cell(kind, inputs, outputs):
    return {"type": kind, "port_directions": {**{p: "input" for p in inputs},
                                              **{p: "output" for p in outputs}},
            "connections": {**inputs, **outputs}}


def test_logic_depth_stops_at_registers_and_cuts_loops():
    # in(2) -> a -> ff -> b -> c -> f (3 -> 4 -> 5 -> 9 -> 6); d and e feed each other
    cells = {"a": _cell("LUT4", {"A": [2]}, {"Z": [3]}),
             "ff": _cell("TRELLIS_FF", {"DI": [3]}, {"Q": [4]}),
             "b": _cell("CCU2C", {"A0": [4]}, {"S0": [5]}),
             "c": _cell("LUT4", {"A": [5]}, {"Z": [9]}),
             "f": _cell("LUT4", {"B": [9]}, {"Z": [6]}),
             "d": _cell("LUT4", {"A": [8]}, {"Z": [7]}),
             "e": _cell("LUT4", {"A": [7]}, {"Z": [8]})}
    design = {"modules": {"top": {"attributes": {"top": "1"}, "cells": cells, "netnames": {
        "in": {"bits": [2]}, "r": {"bits": [4]}, "out": {"bits": [6]}}}}}
    path = logic_depth_path(design)
    assert (path.start, path.end, path.cells, path.carry_cells) == ("r", "out", 3, 1)
    # the loop alone: cut where the walk re-enters it, two cells deep
    loop = {name: cells[name] for name in ("d", "e")}
    design["modules"]["top"]["cells"] = loop
    assert logic_depth_path(design).cells == 2
