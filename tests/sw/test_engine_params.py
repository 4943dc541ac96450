"""``sw.engine_params``: the layer engine's derived parameters, built once per config.

The pinned numbers are the ones the generator, the loading plan and the cycle model derived
each on their own before ``EngineParams`` (measured at commit a9fb700), so the move changed
no value; the memory map's are the packed, shared layout of issue 16 item 2.
"""

import doctest

import numpy as np
import pytest

import sw.engine_params
from sw.config import load_config
from sw.engine_params import (ENGINE_TENSORS, ElementType, EngineParams, LayerEngineError,
                              LayerMemoryMap, element_types)
from sw.golden.layer_program import run_layer_program
from sw.golden.synthetic_layer import synthetic_input, synthetic_layer
from sw.image.program import layer_program
from sw.isa import TENSOR_ROLES, Buffer
from sw.scratchpad_regions import live_ranges, program_of


def test_tiny_params_are_the_values_derived_before():
    params = EngineParams.from_config(load_config("tiny"))
    # program: LN1, Q K V, 4 heads x 3, O, gather, LN2, FC1, FC2, END (22) and one spare
    assert (params.words_per_block, params.keys, params.ffn_step, params.program_capacity) == \
        (16, 24, 8, 23)
    assert params.gemm_capacity == {"weight": 8384, "row_ptr": 69, "col_idx": 524, "quant": 122}
    assert (params.memory_map.depth, params.memory_map.offset_bits) == (6246, 11)
    assert [(b, r.base, r.stride) for b, r in list(params.memory_map.regions.items())[:3]] == \
        [(Buffer.INPUT, 0, 16), (Buffer.LN1, 2048, 16), (Buffer.Q, 2048 + 272, 16)]
    assert (params.head_vectors, params.hidden_vectors) == (4, 16)


def test_deit_b16_params_are_the_values_derived_before():
    params = EngineParams.from_config(load_config("deit_b16"))
    # int8 memory 47,280 vectors (GELU + LN2 rows: FC1's output no longer has a buffer), so
    # 16 offset bits; uint8 is memory 3: 3 << 16 + 2,758
    assert (params.keys, params.memory_map.depth, params.program_capacity) == (224, 199366, 47)
    assert params.gemm_capacity == {"weight": 444160, "row_ptr": 233, "col_idx": 6940,
                                    "quant": 450}
    assert params.role_shapes["fc2"] == (768, 3072)
    assert params.role_shapes["values"] == (64, 224)
    assert set(params.role_shapes) == set(ENGINE_TENSORS)


def test_params_are_built_once_per_config():
    config = load_config("tiny")
    params = EngineParams.from_config(config)
    assert EngineParams.from_config(load_config("tiny")) is params
    assert LayerMemoryMap.from_config(config) is params.memory_map


@pytest.mark.parametrize("name", ["tiny", "deit_b16"])
def test_regions_share_vectors_only_in_one_memory_and_never_while_both_live(name):
    config = load_config(name)
    mm = EngineParams.from_config(config).memory_map
    ranges, types = live_ranges(program_of(config)), element_types(config)
    for buffer, region in mm.regions.items():
        index, offset = mm.split(region.base)
        memory = mm.memories[index]
        assert index == region.memory and memory.element == types[buffer]
        assert region.rows == mm.tokens and offset + region.vectors <= memory.depth
    for a, ra in mm.regions.items():
        for b, rb in mm.regions.items():
            if a < b and ra.base < rb.base + rb.vectors and rb.base < ra.base + ra.vectors:
                assert not ranges[a].overlaps(ranges[b]), (a, b)
    # every memory is as deep as its deepest region's end, and sharing made them shallower
    unshared = {s.index: 0 for s in mm.memories}
    for region in mm.regions.values():
        unshared[region.memory] += region.vectors
    assert all(s.depth <= unshared[s.index] for s in mm.memories)
    assert sum(s.depth for s in mm.memories) < sum(unshared.values())


def test_element_types_follow_the_golden_layer():
    types = element_types(load_config("tiny"))
    assert {b for b, t in types.items() if t == ElementType(16, True)} == {
        Buffer.INPUT, Buffer.RESIDUAL1, Buffer.OUTPUT}
    assert (types[Buffer.SCORES], types[Buffer.PROBS]) == (ElementType(32, True),
                                                           ElementType(8, False))
    assert {b for b, t in types.items() if t == ElementType(8, True)} == set(Buffer) - {
        Buffer.INPUT, Buffer.RESIDUAL1, Buffer.OUTPUT, Buffer.SCORES, Buffer.PROBS}
    assert [m.name for m in EngineParams.from_config(load_config("tiny")).memory_map.memories] \
        == ["int16", "int8", "int32", "uint8"]


@pytest.mark.parametrize("heads, keep", [((0, 1, 2, 3), 17), ((1, 3), 9)])
def test_every_golden_value_fits_its_buffers_element_type(heads, keep):
    config = load_config("tiny")
    m, hw = config.model, config.hardware
    types = element_types(config)
    for seed in range(3):
        layer = synthetic_layer(hidden=m.hidden_size, head_dim=m.head_dim, heads=m.num_heads,
                                ffn=m.ffn_size, kept_heads=heads, kept_ffn=m.ffn_size,
                                block=(hw.block_rows, hw.block_cols), density=0.5, seed=seed)
        x = synthetic_input(tokens=m.tokens, hidden=m.hidden_size, seed=seed)
        trace = {}
        run_layer_program(layer_program(heads, tokens=m.tokens, token_keep=keep), layer, x,
                          trace=trace)
        # every buffer, and each GEMM's output before its epilogue by tensor role
        assert set(trace) == {buffer.name.lower() for buffer in Buffer} | set(TENSOR_ROLES)
        for buffer in Buffer:
            values, element = np.asarray(trace[buffer.name.lower()]), types[buffer]
            low = -(1 << element.bits - 1) if element.signed else 0
            high = (1 << element.bits - element.signed) - 1
            assert low <= values.min() and values.max() <= high, buffer


def test_a_config_the_engine_cannot_build_is_refused_with_the_configs_message():
    config = load_config("tiny")
    wide = config.replace(hardware=config.hardware.__class__(
        **{**config.hardware.__dict__, "array_rows": 8}))
    with pytest.raises(LayerEngineError, match=r"^config 'tiny': the layer engine needs "
                       r"array_rows \(8\) equal to array_cols \(4\): it transposes key tiles "
                       r"in place$"):
        EngineParams.from_config(wide)
    with pytest.raises(TypeError, match=r"^Config must be an AcceleratorConfig, not 'tiny'$"):
        EngineParams.from_config("tiny")


def test_doctests_pass():
    result = doctest.testmod(sw.engine_params)
    assert result.attempted >= 4 and result.failed == 0


def test_a_memory_map_unsafe_for_either_norm_is_refused(monkeypatch):
    """The map is laid out by the pre-LN program; building it checks that the densest program of
    each norm runs on it (here a stand-in check that finds a problem for post-LN only)."""
    def unsafe_for_post(program, memory_map):
        post = program[0].opcode.name == "GEMM"              # post-LN starts with Q's GEMM
        return ["instruction 12 reads OUTPUT, but ..."] if post else []

    monkeypatch.setattr(sw.engine_params, "overwritten_reads", unsafe_for_post)
    config = load_config("tiny").replace(name="tiny_unsafe_post")
    with pytest.raises(LayerEngineError, match=r"^tiny_unsafe_post: the scratchpad's memory map "
                       r"is unsafe for a post-LN layer: instruction 12 reads OUTPUT, but \.\.\.$"):
        EngineParams.from_config(config)


@pytest.mark.parametrize("name", ["tiny", "deit_b16", "bert_base", "ulx3s_85f"])
def test_layers_chain_in_place_output_is_the_next_layers_input(name):
    """A whole encoder runs without moving its residual stream: OUTPUT and INPUT are one region
    (the co-simulation of chained layers, ``sim/test_layer_engine.py``, relies on it)."""
    mm = EngineParams.from_config(load_config(name)).memory_map
    assert mm.regions[Buffer.OUTPUT] == mm.regions[Buffer.INPUT]


def test_a_memory_map_where_layers_cannot_chain_is_refused(monkeypatch):
    """First fit puts OUTPUT on INPUT; a placement that does not is refused by name."""
    real_first_fit = sw.engine_params.first_fit

    def apart(sizes, ranges):
        offsets = real_first_fit(sizes, ranges)
        if Buffer.OUTPUT in offsets:
            offsets[Buffer.OUTPUT] = max(offsets.values()) + max(sizes.values())
        return offsets

    monkeypatch.setattr(sw.engine_params, "first_fit", apart)
    config = load_config("tiny").replace(name="tiny_apart")
    with pytest.raises(LayerEngineError, match=r"^tiny_apart: the scratchpad's memory map puts "
                       r"OUTPUT at .* layers cannot chain in place$"):
        EngineParams.from_config(config)
