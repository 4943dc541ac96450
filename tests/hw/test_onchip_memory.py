"""The on-chip memory accounting (``sw.onchip_memory``) against the elaborated layer engine.

The oracle is the design itself: every ``amaranth.lib.memory.Memory`` the tiny engine
elaborates into (found through the fragments' public ``origins``), its depth, word width and
read ports, compared with ``==``, memory by memory.
"""

import doctest

import pytest
from amaranth.hdl import Fragment, Shape
from amaranth.lib import data, memory

from hw.layer.engine import build_layer_engine
import sw.onchip_memory
from sw.config import load_config
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


@pytest.fixture(scope="module")
def tiny_design():
    config = load_config("tiny")
    return config, design_memories(build_layer_engine(config))


def test_accounting_lists_exactly_the_memories_of_the_design(tiny_design):
    config, design = tiny_design
    accounted = onchip_memories(config)
    assert sorted(m.name for m in accounted) == sorted(design)
    for m in accounted:
        assert (m.depth, m.width, m.read_ports, 1) == design[m.name], m.name


def test_total_bytes_equal_the_design_bits(tiny_design):
    config, design = tiny_design
    bits = sum(depth * width for depth, width, _, _ in design.values())
    assert total_bytes(onchip_memories(config)) == bits / 8
    assert bits == 889_751                      # tiny: 111,218.875 bytes


def test_bytes_are_depth_times_width_over_eight_exactly():
    memory_ = OnChipMemory("x", depth=69, width=10, read_ports=1, what="")
    assert memory_.bytes == 86.25


@pytest.mark.parametrize("depth, width, read_ports, blocks", [
    (512, 36, 1, 1),            # one block at 512 x 36
    (513, 36, 1, 2),
    (16384, 1, 1, 1),
    (4284, 128, 3, 3 * 36),     # 9 x 4 at 512 x 36 (1024 x 18: 5 x 8), one copy per read
    (4, 28, 1, 1),
    (0, 8, 1, 0),
])
def test_dp16kd_takes_the_cheapest_aspect_ratio_per_read_port(depth, width, read_ports, blocks):
    assert OnChipMemory("x", depth, width, read_ports, "").dp16kd == blocks


def test_table_ends_with_the_total_in_bytes_and_mib():
    memories = onchip_memories(load_config("tiny"))
    last = memory_table(memories).splitlines()[-1]
    assert last.split()[:2] == ["total", "111,218.875"]
    assert last.endswith(f"{total_dp16kd(memories):7d}  (0.106 MiB)")


def test_doctests_pass():
    result = doctest.testmod(sw.onchip_memory)
    assert result.attempted > 0 and result.failed == 0
