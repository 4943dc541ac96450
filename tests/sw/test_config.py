"""Tests of the accelerator configuration: presets, validation messages, JSON loading, saving."""

import dataclasses
import doctest
import json
import os
import re
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sw.config
from sw.config import (
    CONFIGS_DIR,
    SCHEMA_VERSION,
    AcceleratorConfig,
    ConfigError,
    HardwareParams,
    ModelTopology,
    load_config,
    minimum_buffers,
    preset_names,
)

# name: (hidden, heads, head_dim, ffn, tokens, layers, array side, block side, lanes)
PRESET_TABLE = {
    "tiny": (64, 4, 16, 128, 17, 2, 4, 8, (1, 1, 1)),
    "deit_t16": (192, 3, 64, 768, 197, 12, 16, 32, (8, 16, 8)),
    "deit_s16": (384, 6, 64, 1536, 197, 12, 16, 32, (8, 16, 8)),
    "deit_b16": (768, 12, 64, 3072, 197, 12, 16, 32, (8, 16, 8)),
    "bert_base": (768, 12, 64, 3072, 128, 12, 16, 32, (8, 16, 8)),
    "ulx3s_85f": (64, 4, 16, 128, 66, 2, 2, 8, (1, 1, 1)),
}


def expected_preset(name):
    """The preset as the project defines it: act/out buffers at the minimum, a dense FFN weight
    matrix fits the weight buffer."""
    hidden, heads, head_dim, ffn, tokens, layers, array, block, lanes = PRESET_TABLE[name]
    model = ModelTopology(
        hidden_size=hidden, num_heads=heads, head_dim=head_dim, ffn_size=ffn, tokens=tokens,
        layers=layers, norm="post" if name.startswith("bert") else "pre",
    )
    minimum = minimum_buffers(
        model, array_rows=array, array_cols=array, block_rows=block, block_cols=block
    )
    hardware = HardwareParams(
        array_rows=array, array_cols=array, block_rows=block, block_cols=block,
        act_buffer_depth=minimum["act_buffer_depth"],
        weight_buffer_depth=hidden * ffn // array,
        out_buffer_depth=minimum["out_buffer_depth"],
        softmax_lanes=lanes[0], gelu_lanes=lanes[1], layernorm_lanes=lanes[2],
    )
    return AcceleratorConfig(name=name, model=model, hardware=hardware)


TINY_MODEL = dict(hidden_size=64, num_heads=4, head_dim=16, ffn_size=128, tokens=17, layers=2)
TINY_HARDWARE = dict(
    array_rows=4, array_cols=4, block_rows=8, block_cols=8, act_buffer_depth=544,
    weight_buffer_depth=2048, out_buffer_depth=544,
)


def build(model=None, hardware=None, name="tiny"):
    """A tiny configuration with some model and hardware fields changed."""
    return AcceleratorConfig(
        name=name,
        model=ModelTopology(**{**TINY_MODEL, **(model or {})}),
        hardware=HardwareParams(**{**TINY_HARDWARE, **(hardware or {})}),
    )


def raises(message):
    return pytest.raises(ConfigError, match=re.escape(message))


# Presets ---------------------------------------------------------------------------------------


def test_preset_names():
    assert preset_names() == ["bert_base", "deit_b16", "deit_s16", "deit_t16", "tiny",
                              "ulx3s_85f"]


@pytest.mark.parametrize("name", preset_names())
def test_preset_loads_and_round_trips(name):
    path = CONFIGS_DIR / f"{name}.json"
    config = load_config(name)
    assert config == expected_preset(name)
    assert path.read_bytes() == config.to_json().encode("utf-8")
    again = AcceleratorConfig.from_dict(json.loads(config.to_json()))
    assert again == config
    assert again.to_json() == config.to_json()
    assert AcceleratorConfig.from_json_file(path) == config
    assert config.name == name


def test_preset_buffer_depths():
    tiny = load_config("tiny")
    assert (tiny.hardware.act_buffer_depth, tiny.hardware.out_buffer_depth) == (544, 544)
    assert tiny.hardware.weight_buffer_depth == 2048
    deit_b16 = load_config("deit_b16")
    assert deit_b16.hardware.act_buffer_depth == 37824
    assert deit_b16.hardware.out_buffer_depth == 37824
    assert deit_b16.hardware.weight_buffer_depth == 147456


def test_tiny_buffers_are_exactly_the_minimum():
    with raises("act_buffer_depth (543) is too small"):
        build(hardware={"act_buffer_depth": 543})
    with raises("out_buffer_depth (543) is too small"):
        build(hardware={"out_buffer_depth": 543})


def test_derived_properties():
    tiny = load_config("tiny")
    assert tiny.schema_version == SCHEMA_VERSION == 1
    assert tiny.max_gemm_rows == 17
    assert tiny.max_gemm_inner == 128
    assert tiny.max_gemm_outer == 128


def test_to_dict_key_order():
    data = load_config("tiny").to_dict()
    assert list(data) == ["schema_version", "name", "model", "hardware"]
    assert list(data["model"]) == [spec.name for spec in dataclasses.fields(ModelTopology)]
    assert list(data["hardware"]) == [spec.name for spec in dataclasses.fields(HardwareParams)]


def test_module_examples():
    assert doctest.testmod(sw.config).failed == 0


# load_config -----------------------------------------------------------------------------------


def test_load_config_by_path(tmp_path, monkeypatch):
    tiny = load_config("tiny")
    path = tmp_path / "mine.json"
    tiny.replace(name="mine").save(path)
    assert load_config(path).name == "mine"
    assert load_config(str(path)).name == "mine"
    monkeypatch.chdir(tmp_path)
    assert load_config("mine.json").name == "mine"
    os.rename("mine.json", "mine")
    assert load_config("mine").name == "mine"  # an existing file without a suffix


def test_load_config_prefers_preset_over_file_of_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    load_config("tiny").replace(name="imposter").save(tmp_path / "tiny")
    assert load_config("tiny").name == "tiny"
    assert load_config("./tiny").name == "imposter"


def test_load_config_unknown_preset():
    with raises("unknown preset 'foo'; presets: bert_base, deit_b16, deit_s16, deit_t16, tiny, "
                "ulx3s_85f"):
        load_config("foo")


def test_load_config_missing_path(tmp_path):
    with raises(f"{tmp_path / 'absent.json'}: no such file"):
        load_config(tmp_path / "absent.json")


# Field validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "section, field, human",
    [
        ("hardware", "array_rows", "Array rows"),
        ("hardware", "array_cols", "Array columns"),
        ("hardware", "block_rows", "Block rows"),
        ("hardware", "block_cols", "Block columns"),
        ("hardware", "data_width", "Data width"),
        ("hardware", "acc_width", "Accumulator width"),
        ("hardware", "multiplier_width", "Multiplier width"),
        ("hardware", "act_buffer_depth", "Activation buffer depth"),
        ("hardware", "weight_buffer_depth", "Weight buffer depth"),
        ("hardware", "out_buffer_depth", "Output buffer depth"),
        ("hardware", "softmax_lanes", "Softmax lanes"),
        ("hardware", "gelu_lanes", "GELU lanes"),
        ("hardware", "layernorm_lanes", "LayerNorm lanes"),
        ("hardware", "axi_burst_beats", "AXI burst beats"),
        ("hardware", "axi_max_outstanding", "AXI outstanding reads"),
        ("hardware", "weight_stream_bytes", "Weight stream bytes"),
        ("model", "hidden_size", "Hidden size"),
        ("model", "num_heads", "Number of heads"),
        ("model", "head_dim", "Head dimension"),
        ("model", "ffn_size", "FFN size"),
        ("model", "tokens", "Tokens"),
        ("model", "layers", "Layers"),
    ],
)
@pytest.mark.parametrize("value, shown", [(0, "0"), (-3, "-3"), (True, "True"), ("4", "'4'"),
                                          (4.0, "4.0"), (None, "None")])
def test_positive_integer_fields(section, field, human, value, shown):
    with raises(f"{human} must be a positive integer, not {shown}"):
        build(**{section: {field: value}})


def test_every_field_is_checked():
    checked = {"array_rows", "array_cols", "block_rows", "block_cols", "data_width", "acc_width",
               "multiplier_width", "act_buffer_depth", "weight_buffer_depth", "out_buffer_depth",
               "softmax_lanes", "gelu_lanes", "layernorm_lanes", "axi_burst_beats",
               "axi_max_outstanding", "weight_stream_bytes", "hidden_size", "num_heads",
               "head_dim", "ffn_size", "tokens", "layers", "norm"}
    all_fields = {spec.name for cls in (ModelTopology, HardwareParams)
                  for spec in dataclasses.fields(cls)}
    assert all_fields == checked


@pytest.mark.parametrize("value", ["Post", "", 1, None, ["post"]])
def test_norm_is_pre_or_post(value):
    data = build().to_dict()
    data["model"]["norm"] = value
    with raises("<dict>: field 'model.norm' must be one of 'pre', 'post', found "):
        AcceleratorConfig.from_dict(data)
    with raises("Norm must be one of 'pre', 'post', not "):
        ModelTopology(**{**TINY_MODEL, "norm": value})


def test_norm_defaults_to_pre_when_left_out():
    data = build().to_dict()
    del data["model"]["norm"]
    assert AcceleratorConfig.from_dict(data).model.norm == "pre"


def test_hidden_size_is_heads_times_head_dim():
    with raises("hidden_size (64) must equal num_heads (3) x head_dim (16) = 48"):
        build(model={"num_heads": 3})


@pytest.mark.parametrize(
    "model, hardware, message",
    [
        ({}, {"block_cols": 24}, "block_cols (24) must divide hidden_size (64)"),
        ({"ffn_size": 48}, {"block_cols": 32}, "block_cols (32) must divide ffn_size (48)"),
        ({}, {"block_rows": 24}, "block_rows (24) must divide hidden_size (64)"),
        ({"ffn_size": 48}, {"block_rows": 32}, "block_rows (32) must divide ffn_size (48)"),
        ({}, {"block_rows": 32},
         "block_rows (32) must divide head_dim (16), so a pruning block never straddles two "
         "heads"),
        ({}, {"block_cols": 32},
         "block_cols (32) must divide head_dim (16), so a pruning block never straddles two "
         "heads"),
    ],
)
def test_block_divides_model(model, hardware, message):
    with raises(message):
        build(model=model, hardware=hardware)


def test_array_tiles_block():
    with raises("block_rows (8) must be a multiple of array_cols (3), so the array tiles the "
                "block"):
        build(hardware={"array_cols": 3})
    with raises("block_cols (8) must be a multiple of array_rows (3), so the array tiles the "
                "block"):
        build(hardware={"array_rows": 3})


@pytest.mark.parametrize(
    "hardware, message",
    [
        ({"data_width": 1}, "Data width must be between 2 and 16 bits, not 1"),
        ({"data_width": 17}, "Data width must be between 2 and 16 bits, not 17"),
        ({"acc_width": 65}, "Accumulator width must be between 2 and 64 bits, not 65"),
        ({"acc_width": 15}, "acc_width (15) must be at least 2 x data_width (8) = 16"),
        ({"multiplier_width": 1}, "Multiplier width must be between 2 and 32 bits, not 1"),
        ({"multiplier_width": 33}, "Multiplier width must be between 2 and 32 bits, not 33"),
    ],
)
def test_widths(hardware, message):
    with raises(message):
        build(hardware=hardware)


def test_widths_at_their_limits_are_accepted():
    build(hardware={"data_width": 2, "acc_width": 4, "multiplier_width": 2})
    build(hardware={"data_width": 16, "acc_width": 64, "multiplier_width": 32})


def test_buffer_depths():
    with raises("act_buffer_depth (100) is too small: tokens (17) x widest input (128) / "
                "array_rows (4) needs 544 words"):
        build(hardware={"act_buffer_depth": 100})
    with raises("out_buffer_depth (100) is too small: tokens (17) x widest output (128) / "
                "array_cols (4) needs 544 words"):
        build(hardware={"out_buffer_depth": 100})
    with raises("weight_buffer_depth (10) is too small: one block_rows (8) x block_cols (8) "
                "block / array_cols (4) needs 16 words"):
        build(hardware={"weight_buffer_depth": 10})
    build(hardware={"weight_buffer_depth": 16})


def test_minimum_buffers():
    model = ModelTopology(**TINY_MODEL)
    assert minimum_buffers(model, array_rows=4, array_cols=8, block_rows=8, block_cols=16) == {
        "act_buffer_depth": 544, "weight_buffer_depth": 16, "out_buffer_depth": 272,
    }
    with raises("model must be a ModelTopology, not dict"):
        minimum_buffers(TINY_MODEL, array_rows=4, array_cols=4, block_rows=8, block_cols=8)
    with raises("Array columns must be a positive integer, not 0"):
        minimum_buffers(model, array_rows=4, array_cols=0, block_rows=8, block_cols=8)


@pytest.mark.parametrize("name", ["", "a/b", ".", "..", ".hidden", "x y", "tiny\n"])
def test_bad_names(name):
    with raises(f"Name must be letters, digits, '_', '.' or '-' and not start with '.', "
                f"not {name!r}"):
        build(name=name)


def test_name_and_sections_must_have_their_types():
    with raises("Name must be a string, not 3"):
        build(name=3)
    with raises("model must be a ModelTopology, not dict"):
        AcceleratorConfig(name="x", model=TINY_MODEL, hardware=HardwareParams(**TINY_HARDWARE))
    with raises("hardware must be a HardwareParams, not dict"):
        AcceleratorConfig(name="x", model=ModelTopology(**TINY_MODEL), hardware=TINY_HARDWARE)


def test_frozen():
    tiny = load_config("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny.name = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny.model.tokens = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny.hardware.array_rows = 8


# replace ---------------------------------------------------------------------------------------


def test_replace():
    tiny = load_config("tiny")
    wide = tiny.replace(name="tiny_wide", hardware={"array_cols": 8})
    assert (wide.name, wide.hardware.array_cols, wide.hardware.array_rows) == ("tiny_wide", 8, 4)
    assert wide.model is tiny.model
    assert tiny.hardware.array_cols == 4
    model = dataclasses.replace(tiny.model, layers=1)
    assert tiny.replace(model=model).model.layers == 1
    assert tiny.replace(model={"layers": 3}).model.layers == 3
    assert tiny.replace() == tiny


def test_replace_validates():
    tiny = load_config("tiny")
    with raises("Array rows must be a positive integer, not 0"):
        tiny.replace(hardware={"array_rows": 0})
    with raises("act_buffer_depth (544) is too small: tokens (33)"):
        tiny.replace(model={"tokens": 33})
    with raises("replace(): unknown field 'hardware.arry_rows' (did you mean "
                "'hardware.array_rows'?)"):
        tiny.replace(hardware={"arry_rows": 8})
    with raises("replace(): unknown field 'modle'"):
        tiny.replace(modle={})
    with raises("model must be a ModelTopology, not list"):
        tiny.replace(model=[])


# JSON loading ----------------------------------------------------------------------------------


def write_json(tmp_path, data, name="deit.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def tiny_dict():
    return load_config("tiny").to_dict()


def test_missing_field(tmp_path):
    data = tiny_dict()
    del data["hardware"]["array_rows"]
    path = write_json(tmp_path, data)
    with raises(f"{path}: missing field 'hardware.array_rows'"):
        AcceleratorConfig.from_json_file(path)
    data = tiny_dict()
    del data["model"]
    with raises("deit.json: missing field 'model'"):
        AcceleratorConfig.from_dict(data, source="deit.json")


def test_unknown_field(tmp_path):
    data = tiny_dict()
    data["hardware"]["arry_rows"] = data["hardware"].pop("array_rows")
    path = write_json(tmp_path, data)
    with raises(f"{path}: unknown field 'hardware.arry_rows' (did you mean "
                f"'hardware.array_rows'?)"):
        AcceleratorConfig.from_json_file(path)
    data = tiny_dict()
    data["comment"] = "hello"
    with raises("deit.json: unknown field 'comment'"):
        AcceleratorConfig.from_dict(data, source="deit.json")


@pytest.mark.parametrize(
    "value, found",
    [("197", "str '197'"), (197.0, "float 197.0"), (True, "bool True"), (None, "null"),
     ([197], "list [197]")],
)
def test_wrong_type(tmp_path, value, found):
    data = tiny_dict()
    data["model"]["tokens"] = value
    path = write_json(tmp_path, data)
    with raises(f"{path}: field 'model.tokens' must be an integer, found {found}"):
        AcceleratorConfig.from_json_file(path)


def test_wrong_structure():
    with raises("x.json: top level must be a JSON object, found list [1, 2]"):
        AcceleratorConfig.from_dict([1, 2], source="x.json")
    data = tiny_dict()
    data["hardware"] = [4, 4]
    with raises("x.json: field 'hardware' must be an object, found list [4, 4]"):
        AcceleratorConfig.from_dict(data, source="x.json")
    data = tiny_dict()
    data["name"] = 7
    with raises("x.json: field 'name' must be a string, found int 7"):
        AcceleratorConfig.from_dict(data, source="x.json")


def test_schema_version(tmp_path):
    data = tiny_dict()
    data["schema_version"] = 2
    data["new_in_v2"] = {}
    with raises("x.json: schema_version 2 is not supported (this build reads 1)"):
        AcceleratorConfig.from_dict(data, source="x.json")
    data["schema_version"] = "1"
    with raises("x.json: field 'schema_version' must be an integer, found str '1'"):
        AcceleratorConfig.from_dict(data, source="x.json")
    del data["schema_version"]
    path = write_json(tmp_path, data, "x.json")
    with raises(f"{path}: missing field 'schema_version'"):
        AcceleratorConfig.from_json_file(path)


def test_invalid_json(tmp_path):
    path = write_json(tmp_path, '{\n  "schema_version": 1,\n  "name": tiny\n}\n')
    with raises(f"{path}: invalid JSON at line 3 column 11: Expecting value"):
        AcceleratorConfig.from_json_file(path)


def test_duplicate_key(tmp_path):
    path = write_json(tmp_path, '{"schema_version": 1, "name": "a", "name": "b"}')
    with raises(f"{path}: duplicate key 'name'"):
        AcceleratorConfig.from_json_file(path)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"name": "caf\xe9"}')
    with raises(f"{path}: not UTF-8 text"):
        AcceleratorConfig.from_json_file(path)


def test_missing_file(tmp_path):
    with raises(f"{tmp_path / 'nope.json'}: no such file"):
        AcceleratorConfig.from_json_file(tmp_path / "nope.json")


def test_validation_errors_name_the_source(tmp_path):
    data = tiny_dict()
    data["hardware"]["array_rows"] = 0
    path = write_json(tmp_path, data, "tiny.json")
    with raises(f"{path}: Array rows must be a positive integer, not 0"):
        AcceleratorConfig.from_json_file(path)
    with raises("<dict>: Array rows must be a positive integer, not 0"):
        AcceleratorConfig.from_dict(data)


def test_defaulted_fields_may_be_left_out():
    data = tiny_dict()
    for key in ("data_width", "acc_width", "multiplier_width", "softmax_lanes", "gelu_lanes",
                "layernorm_lanes"):
        del data["hardware"][key]
    assert AcceleratorConfig.from_dict(data) == load_config("tiny")


# save ------------------------------------------------------------------------------------------


def test_save_writes_exact_bytes_and_overwrites(tmp_path):
    path = tmp_path / "config.json"
    tiny = load_config("tiny")
    assert tiny.save(path) == path
    assert path.read_text(encoding="utf-8") == tiny.to_json()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    other = tiny.replace(name="other")
    other.save(str(path))
    assert path.read_text(encoding="utf-8") == other.to_json()
    assert os.listdir(tmp_path) == ["config.json"]


def test_save_keeps_permissions_of_existing_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("old", encoding="utf-8")
    path.chmod(0o600)
    load_config("tiny").save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text("old", encoding="utf-8")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        load_config("tiny").save(path)
    assert path.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["config.json"]


# Hostile files: one printable line for anything (issue 14, item 7) ------------------------------


def one_printable_line(message: str) -> str:
    """``message`` if it is one short line of printable characters."""
    assert message.isprintable(), f"not printable: {message!r}"
    assert len(message) < 400
    return message


def test_an_integer_beyond_pythons_digit_limit(tmp_path):
    digits = "7" * 5000
    path = write_json(tmp_path, json.dumps(tiny_dict()).replace('"layers": 2',
                                                                f'"layers": {digits}'))
    with raises(f"{path}: invalid JSON: an integer of more than 4300 digits"):
        load_config(path)


def test_nesting_deeper_than_the_parser_goes(tmp_path):
    path = write_json(tmp_path, "[" * 100_000 + "]" * 100_000)
    with raises(f"{path}: invalid JSON: nested too deeply"):
        load_config(path)


@pytest.mark.parametrize("key, shown", [
    ("tokens\nerror: spoofed second line", "tokens\\nerror: spoofed second line"),
    ("x\x1b[31mred\x1b[0m", "x\\x1b[31mred\\x1b[0m"),
    ("abc\u202edcba", "abc\\u202edcba"),                    # right-to-left override
    ("back\\slash", "back\\\\slash"),
    ("k" * 200, "k" * 60 + "..."),
])
def test_keys_from_the_file_are_escaped(tmp_path, key, shown):
    data = tiny_dict()
    data["model"][key] = 1
    path = write_json(tmp_path, data)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: unknown field 'model.{shown}'"
    one_printable_line(str(error.value))


def test_duplicate_keys_and_values_are_escaped(tmp_path):
    path = write_json(tmp_path, '{"schema_version": 1, "a\\nb": 1, "a\\nb": 2}')
    with raises(f"{path}: duplicate key 'a\\nb'"):
        load_config(path)
    data = tiny_dict()
    data["name"] = "tiny\nerror: \x1b]0;title\x07" + "n" * 100
    with pytest.raises(ConfigError) as error:
        AcceleratorConfig.from_dict(data, source="x.json")
    assert str(error.value) == ("x.json: Name must be letters, digits, '_', '.' or '-' and not "
                                "start with '.', not 'tiny\\nerror:...nnnnnnnnnnnnn'")
    data = tiny_dict()
    data["model"]["tokens"] = ["\x1b[2J"] * 50
    with raises("x.json: field 'model.tokens' must be an integer, found list ['\\x1b[2J', "
                "'\\x1b[2J', '\\x1b[2J', '\\x1b[2J', '\\x1b[2J', '\\x1b[2J', ...]"):
        AcceleratorConfig.from_dict(data, source="x.json")


def test_a_file_too_large_to_be_a_config(tmp_path):
    with raises("/dev/zero: larger than 1048576 bytes, not an accelerator config"):
        load_config("/dev/zero")
    with raises(f"{tmp_path}: cannot read (Is a directory)"):
        load_config(tmp_path)


# Upper bounds (issue 14, item 8) ---------------------------------------------------------------


@pytest.mark.parametrize("section, field, human, maximum", [
    ("model", "hidden_size", "Hidden size", 65535),
    ("model", "num_heads", "Number of heads", 65535),
    ("model", "head_dim", "Head dimension", 65535),
    ("model", "ffn_size", "FFN size", 65535),
    ("model", "tokens", "Tokens", 65535),
    ("model", "layers", "Layers", 65535),
    ("hardware", "array_rows", "Array rows", 256),
    ("hardware", "array_cols", "Array columns", 256),
    ("hardware", "block_rows", "Block rows", 65535),
    ("hardware", "block_cols", "Block columns", 65535),
    ("hardware", "act_buffer_depth", "Activation buffer depth", 16777216),
    ("hardware", "weight_buffer_depth", "Weight buffer depth", 16777216),
    ("hardware", "out_buffer_depth", "Output buffer depth", 16777216),
    ("hardware", "softmax_lanes", "Softmax lanes", 256),
    ("hardware", "gelu_lanes", "GELU lanes", 256),
    ("hardware", "layernorm_lanes", "LayerNorm lanes", 256),
])
def test_every_size_has_an_upper_bound(section, field, human, maximum):
    with raises(f"{human} must be at most {maximum}, not {maximum + 1}"):
        build(**{section: {field: maximum + 1}})
    with raises(f"{human} must be at most {maximum}, not 1000000000000"):
        build(**{section: {field: 10 ** 12}})


def test_the_bounds_are_the_documented_constants():
    assert (sw.config.MAX_MODEL_SIZE, sw.config.MAX_ARRAY_SIDE, sw.config.MAX_BUFFER_DEPTH) == (
        65535, 256, 16777216)
    bounded = {spec.name: spec.metadata["maximum"] for cls in (ModelTopology, HardwareParams)
               for spec in dataclasses.fields(cls) if "choices" not in spec.metadata}
    assert {name for name, maximum in bounded.items() if maximum is None} == {
        "data_width", "acc_width", "multiplier_width"}          # bounded in bits instead


def test_buffers_at_the_bound_are_accepted():
    build(hardware={"act_buffer_depth": 1 << 24, "weight_buffer_depth": 1 << 24,
                    "out_buffer_depth": 1 << 24})


@pytest.mark.parametrize("value, shown", [
    pytest.param(10 ** 5000, "an integer of 16610 bits", id="10**5000"),
    pytest.param(-(10 ** 5000), "a negative integer of 16610 bits", id="-10**5000"),
    pytest.param(-(2 ** 64), "a negative integer of 65 bits", id="-2**64"),
])
def test_huge_integers_are_shown_by_size(value, shown):
    """Python refuses to print an integer of more than 4300 digits."""
    for hardware in ({"act_buffer_depth": value}, {"data_width": value}):
        with pytest.raises(ConfigError) as error:
            build(hardware=hardware)
        assert str(error.value).endswith(f", not {shown}")
    data = tiny_dict()
    data["schema_version"] = value
    with raises(f"x.json: schema_version {shown} is not supported"):
        AcceleratorConfig.from_dict(data, source="x.json")


# The layer engine's limits (issue 14, item 13) -------------------------------------------------


def test_the_presets_fit_the_layer_engine():
    for name in preset_names():
        load_config(name).check_layer_engine()


@pytest.mark.parametrize("hardware, message", [
    ({"array_cols": 8, "block_rows": 8},
     "config 'tiny': the layer engine needs array_rows (4) equal to array_cols (8): it "
     "transposes key tiles in place"),
    ({"softmax_lanes": 3}, "config 'tiny': the layer engine needs softmax_lanes (3) to divide "
     "array_cols (4): a unit takes whole scratchpad vectors of array_cols values in beats of "
     "its lanes"),
    ({"gelu_lanes": 8}, "config 'tiny': the layer engine needs gelu_lanes (8) to divide "
     "array_cols (4)"),
    ({"layernorm_lanes": 3}, "config 'tiny': the layer engine needs layernorm_lanes (3) to "
     "divide array_cols (4)"),
])
def test_layer_engine_limits(hardware, message):
    config = build(hardware=hardware)            # a valid GEMM or unit configuration
    with raises(message):
        config.check_layer_engine()


# Property: any text at all gives a config or one ConfigError line ------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner,
                                                                max_size=4),
    max_leaves=12)

FIELD_PATHS = [("schema_version",), ("name",), ("model",), ("hardware",)] + [
    (section, key) for section, values in tiny_dict().items() if isinstance(values, dict)
    for key in values]


@st.composite
def hostile_documents(draw) -> str:
    """The tiny preset with fields replaced, keys added or the text cut, or any JSON value."""
    kind = draw(st.sampled_from(["replace", "add", "cut", "value", "digits"]))
    data = tiny_dict()
    if kind == "value":
        return json.dumps(draw(JSON_VALUES))
    if kind == "replace":
        for path in draw(st.lists(st.sampled_from(FIELD_PATHS), min_size=1, max_size=3)):
            target = data
            for key in path[:-1]:
                target = target if not isinstance(target.get(key), dict) else target[key]
            target[path[-1]] = draw(JSON_VALUES | st.integers(-(2 ** 70), 2 ** 70))
    if kind == "add":
        section = draw(st.sampled_from([data, data["model"], data["hardware"]]))
        section[draw(st.text(max_size=30))] = draw(JSON_VALUES)
    text = json.dumps(data)
    if kind == "cut":
        return text[:draw(st.integers(0, len(text)))]
    if kind == "digits":
        return text.replace('"tokens": 17', f'"tokens": {"9" * draw(st.integers(1, 6000))}')
    return text


@settings(max_examples=300, deadline=None)
@given(text=hostile_documents())
def test_any_document_gives_a_config_or_one_line(text):
    try:
        config = AcceleratorConfig.from_json_text(text, source="x.json")
    except ConfigError as error:
        assert one_printable_line(str(error)).startswith("x.json: ")
    else:
        assert AcceleratorConfig.from_json_text(config.to_json()) == config


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_any_bytes_give_a_config_or_one_line(raw):
    with pytest.raises(ConfigError) as error:
        AcceleratorConfig.from_json_text(raw, source="x.json")
    assert one_printable_line(str(error.value)).startswith("x.json: ")


def test_printable_doctests():
    import sw.printable
    assert doctest.testmod(sw.printable).failed == 0


@pytest.mark.parametrize("changes, message", [
    ({"axi_burst_beats": 12}, "axi_burst_beats (12) must be a power of two whose burst "
                              "(12 x 4 bytes) is at most 4096 bytes"),
    ({"weight_stream_bytes": 78}, "weight_stream_bytes (78) must be a whole number of 4-byte "
                                  "weight words and hold at least one tile and one burst: "
                                  "array_rows + axi_burst_beats = 20 words (80 bytes)"),
    ({"weight_stream_bytes": 76}, "array_rows + axi_burst_beats = 20 words (80 bytes)"),
    ({"data_width": 6}, "array_cols x data_width = 24 bits, which must be a power of two of "
                        "whole bytes"),
])
def test_the_layer_engine_checks_its_weight_stream(changes, message):
    """The AXI bus is one weight word, a burst stays inside 4 KiB, the stream buffer holds a
    tile and a burst (else the fetcher could never ask for the words a tile waits for)."""
    config = load_config("tiny")
    hardware = dataclasses.replace(config.hardware, **changes)
    with pytest.raises(ConfigError, match=re.escape(message)):
        dataclasses.replace(config, hardware=hardware).check_layer_engine()
    dataclasses.replace(config, hardware=dataclasses.replace(
        config.hardware, weight_stream_bytes=80)).check_layer_engine()
