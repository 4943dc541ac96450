"""``sw.engine_params``: the layer engine's derived parameters, built once per config.

The pinned numbers are the ones the generator, the loading plan and the cycle model derived
each on their own before ``EngineParams`` (measured at commit a9fb700), so the move changed
no value.
"""

import doctest

import pytest

import sw.engine_params
from sw.config import load_config
from sw.engine_params import ENGINE_TENSORS, EngineParams, LayerEngineError, LayerMemoryMap
from sw.isa import Buffer


def test_tiny_params_are_the_values_derived_before():
    params = EngineParams.from_config(load_config("tiny"))
    assert (params.words_per_block, params.keys, params.ffn_step, params.program_capacity) == \
        (16, 24, 8, 26)
    assert params.gemm_capacity == {"weight": 8384, "row_ptr": 69, "col_idx": 524, "quant": 122}
    assert params.memory_map.depth == 4284
    assert [(b, r.base, r.stride) for b, r in list(params.memory_map.regions.items())[:3]] == \
        [(Buffer.INPUT, 0, 16), (Buffer.LN1, 272, 16), (Buffer.Q, 544, 16)]
    assert (params.head_vectors, params.hidden_vectors) == (4, 16)


def test_deit_b16_params_are_the_values_derived_before():
    params = EngineParams.from_config(load_config("deit_b16"))
    assert (params.keys, params.memory_map.depth, params.program_capacity) == (224, 185180, 50)
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


def test_regions_follow_one_another_without_overlap():
    mm = EngineParams.from_config(load_config("deit_b16")).memory_map
    end = 0
    for buffer in Buffer:
        region = mm.regions[buffer]
        assert region.base == end and region.rows == mm.tokens
        end = region.address(region.rows)
    assert end == mm.depth


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
