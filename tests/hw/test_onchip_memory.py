"""The on-chip memory accounting (``sw.onchip_memory``) against the elaborated layer engine.

The oracle is the design itself: every ``amaranth.lib.memory.Memory`` the tiny engine
elaborates into (found through the fragments' public ``origins``), its depth, word width and
read ports, compared with ``==``, memory by memory.
"""

import dataclasses
import doctest

import pytest
from amaranth.hdl import Fragment, Shape
from amaranth.lib import data, memory

from hw.layer.engine import build_layer_engine
import sw.onchip_memory
from sw.config import load_config, minimum_buffers
from sw.onchip_memory import (OnChipMemory, memory_table, onchip_memories, total_bytes,
                              total_dp16kd)


def _width(shape) -> int:
    if isinstance(shape, data.Layout):
        return shape.size
    return Shape.cast(shape).width


def design_memories(top) -> dict:
    """``{path: (depth, width, read ports, write ports)}`` of every memory in ``top``."""
    found = {}

    def walk(fragment, path):
        for sub, name, _ in fragment.subfragments:
            here = (*path, str(name))
            for origin in getattr(sub, "origins", None) or ():
                if isinstance(origin, memory.Memory):
                    found[".".join(here)] = (origin.depth, _width(origin.shape),
                                             len(origin.read_ports), len(origin.write_ports))
            walk(sub, here)

    walk(Fragment.get(top, None), ())
    return found


def digits_shaped():
    """The digits DeiT's topology on the tiny preset's hardware (66 tokens), as
    ``sim/test_layer_engine.py`` exports it."""
    tiny = load_config("tiny")
    return tiny.replace(name="digits_shaped", model={"tokens": 66}, hardware=minimum_buffers(
        dataclasses.replace(tiny.model, tokens=66), array_rows=4, array_cols=4, block_rows=8,
        block_cols=8))


@pytest.fixture(scope="module")
def tiny_design():
    config = load_config("tiny")
    return config, design_memories(build_layer_engine(config))


def check_accounting(config, design):
    accounted = onchip_memories(config)
    assert sorted(m.name for m in accounted) == sorted(design)
    for m in accounted:
        assert (m.depth, m.width, m.read_ports, 1) == design[m.name], m.name


def test_accounting_lists_exactly_the_memories_of_the_design(tiny_design):
    check_accounting(*tiny_design)


@pytest.mark.parametrize("config", [digits_shaped(), load_config("deit_t16")],
                         ids=lambda config: config.name)
def test_accounting_of_other_shapes(config):                 # about 1 s and 5 s
    check_accounting(config, design_memories(build_layer_engine(config)))


@pytest.mark.slow
def test_accounting_of_deit_b16():                            # about 40 s
    config = load_config("deit_b16")
    check_accounting(config, design_memories(build_layer_engine(config)))


def test_total_bytes_equal_the_design_bits(tiny_design):
    config, design = tiny_design
    bits = sum(depth * width for depth, width, _, _ in design.values())
    assert total_bytes(onchip_memories(config)) == bits / 8
    assert bits == 205_335                      # tiny: 25,666.875 bytes


def test_bytes_are_depth_times_width_over_eight_exactly():
    memory_ = OnChipMemory("x", depth=69, width=10, read_ports=1, what="")
    assert memory_.bytes == 86.25


@pytest.mark.parametrize("depth, width, read_ports, blocks", [
    (512, 36, 1, 1),            # one block at 512 x 36
    (513, 36, 1, 2),
    (16384, 1, 1, 1),
    (4284, 128, 3, 3 * 36),     # 9 x 4 at 512 x 36 (1024 x 18: 5 x 8), one copy per read
    (544, 64, 3, 3 * 4),        # tiny's scratchpad.int16: 2 x 2 at 512 x 36
    (4, 28, 1, 1),
    (0, 8, 1, 0),
])
def test_dp16kd_takes_the_cheapest_aspect_ratio_per_read_port(depth, width, read_ports, blocks):
    assert OnChipMemory("x", depth, width, read_ports, "").dp16kd == blocks


def test_table_ends_with_the_total_in_bytes_and_mib():
    memories = onchip_memories(load_config("tiny"))
    last = memory_table(memories).splitlines()[-1]
    assert last.split()[:2] == ["total", "25,666.875"]
    assert last.endswith(f"{total_dp16kd(memories):7d}  (0.024 MiB)")


def test_doctests_pass():
    result = doctest.testmod(sw.onchip_memory)
    assert result.attempted > 0 and result.failed == 0


def test_command_prints_the_table(capsys):
    assert sw.onchip_memory.main(["--config", "tiny"]) == 0
    out = capsys.readouterr().out
    assert out == ("tiny: layer engine on-chip memory (bytes = depth x width / 8)\n"
                   + memory_table(onchip_memories(load_config("tiny"))) + "\n")


def test_command_prints_the_regions(capsys):
    assert sw.onchip_memory.main(["--config", "tiny", "--regions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-18].split() == ["region", "memory", "offset", "vectors", "bytes", "live"]
    assert lines[-17].split() == ["INPUT", "int16", "0", "272", "2,176", "-1..16"]
    assert lines[-5].startswith("6 region pairs share vectors: INPUT/OUTPUT LN1/CONTEXT ")
    assert lines[-4:] == [
        "scratchpad bytes in 32-bit lanes: 51,136 (0.049 MiB)",
        "scratchpad bytes packed: 17,272 (0.016 MiB)",
        "scratchpad bytes packed and shared: 10,744 (0.010 MiB)",
        "scratchpad bytes live at once at most (instruction 6): 8,568 (0.008 MiB)"]


def test_scratchpad_memories_hold_their_regions_once_packed_and_shared():
    memories = onchip_memories(load_config("deit_b16"))
    scratchpad = {m.name: m for m in memories if m.name.startswith("scratchpad.")}
    assert {name: (m.depth, m.width) for name, m in scratchpad.items()} == {
        "scratchpad.int16": (18912, 256), "scratchpad.int8": (47280, 128),
        "scratchpad.int32": (2758, 512), "scratchpad.uint8": (2758, 128)}
    assert sum(m.bytes for m in scratchpad.values()) == 1_582_304    # 8,220,416 in 32-bit lanes
    assert scratchpad["scratchpad.int8"].what == "regions LN1 Q K V CONTEXT LN2 GELU"


def test_command_rejects_a_bad_config_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text("{")
    assert sw.onchip_memory.main(["--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"error: {path}: ")
