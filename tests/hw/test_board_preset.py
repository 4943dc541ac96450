"""The ULX3S 85F board preset (``configs/ulx3s_85f.json``): the digits DeiT's layer shape on
the engine that fits LFE5U-85F. It loads, its layer engine and the board top elaborate, its
on-chip memories fit the device's block RAMs where the 66-token digits model's cannot, and one
layer of it co-simulates bit-exact and cycle-exact."""

import pytest

from hw.board.build import BOARD_CLOCK_HZ, output_names, prepare
from hw.board.top import weight_ram_depth
from hw.synth.devices import LFE5U_85F
from sw.config import AcceleratorConfig, ModelTopology, load_config, minimum_buffers
from sw.engine_params import EngineParams
from sw.onchip_memory import OnChipMemory, onchip_memories

#: The digits DeiT of ``sw.train_digits`` (32 px images): hidden 64, 4 heads of 16, FFN 128,
#: 2 layers; 66 tokens in its 4 px patches (the board preset's), 18 tokens in 8 px patches.
DIGITS_SHAPE = {"hidden_size": 64, "num_heads": 4, "head_dim": 16, "ffn_size": 128,
                "layers": 2}


@pytest.fixture(scope="module")
def preset():
    return load_config("ulx3s_85f")


def test_preset_is_the_digits_deit_layer_shape(preset):
    model = preset.model
    assert {key: getattr(model, key) for key in DIGITS_SHAPE} == DIGITS_SHAPE
    assert model.tokens == (32 // 4) ** 2 + 2          # patches, CLS, distillation token
    preset.check_layer_engine()
    hw = preset.hardware
    assert (hw.softmax_lanes, hw.gelu_lanes, hw.layernorm_lanes) == (1, 1, 1)
    # the smallest buffers the config accepts, and every weight of the widest linear on chip
    minimum = minimum_buffers(model, array_rows=hw.array_rows, array_cols=hw.array_cols,
                              block_rows=hw.block_rows, block_cols=hw.block_cols)
    assert hw.act_buffer_depth == minimum["act_buffer_depth"]
    assert hw.out_buffer_depth == minimum["out_buffer_depth"]
    assert hw.weight_buffer_depth == model.hidden_size * model.ffn_size // hw.array_cols


def _digits_config(tokens: int, side: int) -> AcceleratorConfig:
    model = ModelTopology(tokens=tokens, **DIGITS_SHAPE)
    minimum = minimum_buffers(model, array_rows=side, array_cols=side, block_rows=8,
                              block_cols=8)
    return AcceleratorConfig.from_dict({
        "schema_version": 1, "name": f"digits_{tokens}",
        "model": {**DIGITS_SHAPE, "tokens": tokens},
        "hardware": {"array_rows": side, "array_cols": side, "block_rows": 8, "block_cols": 8,
                     "data_width": 8, "acc_width": 32, "multiplier_width": 16,
                     "act_buffer_depth": minimum["act_buffer_depth"],
                     "weight_buffer_depth": 64 * 128 // side,
                     "out_buffer_depth": minimum["out_buffer_depth"]}})


def _board_memories(config: AcceleratorConfig) -> tuple:
    """The engine's on-chip memories and the board's weight RAM (its external memory)."""
    params = EngineParams.from_config(config)
    ram = OnChipMemory("board.weights", weight_ram_depth(params.external_words),
                       params.word_bytes * 8, 1, "the engine's external memory")
    return (*onchip_memories(config), ram)


def test_block_rams_fit_the_85f_on_the_2x2_array_not_on_8x8(preset):
    """``sw.onchip_memory``'s DP16KD estimate (an upper bound: yosys maps small memories to LUT
    RAM) of the preset's engine and the board's weight RAM fits the 85F's 208. The 66 tokens
    fit because the weights stream (from the board's weight RAM) and the scratchpad is packed
    by element type and shared (the engine of commit 54484a9 needed 504 on this array); an
    8 x 8 array would not fit (and 4 x 4 needs more multipliers than the 85F has)."""
    memories = _board_memories(preset)
    assert sum(m.dp16kd for m in memories) == 167 <= LFE5U_85F.dp16kd
    assert next(m for m in memories if m.name == "board.weights").bytes == 32 * 1024
    fits = {side: sum(m.dp16kd for m in _board_memories(_digits_config(66, side)))
            <= LFE5U_85F.dp16kd for side in (2, 4, 8)}
    assert fits == {2: True, 4: True, 8: False}


def test_board_top_elaborates_with_the_ulx3s_platform(preset, tmp_path):
    """The preset's engine behind the UART bridge, through amaranth-boards' platform: the files
    ``make bitstream`` hands to the tools, every one of them in the build's file list."""
    platform, divisor = prepare(preset, tmp_path, baud=115200, seed=1)
    assert platform.default_clk_frequency == BOARD_CLOCK_HZ
    assert divisor == 217
    names = {path.name for path in tmp_path.iterdir()}
    assert names <= set(output_names(preset.name))
    lpf = (tmp_path / f"{preset.name}.lpf").read_text()
    for port, site in (("clk25_0__io", "G2"), ("uart_0__rx__io", "M1"),
                       ("uart_0__tx__io", "L4"), ("led_0__io", "B2")):
        assert f'LOCATE COMP "{port}" SITE "{site}";' in lpf
    assert "synth_ecp5" in (tmp_path / f"{preset.name}.ys").read_text()
    modules = [line for line in (tmp_path / f"{preset.name}.il").read_text().splitlines()
               if line.startswith("module ")]
    for module in ("engine", "bridge", "receiver", "transmitter", "engine.gemm.array.pe_1_1"):
        assert f"module \\ulx3s_85f.{module}" in modules


@pytest.mark.sim
@pytest.mark.slow
def test_one_pruned_layer_of_the_board_preset_is_bit_and_cycle_exact(tmp_path):
    """One layer on the preset's engine (cocotb + Verilator, as ``sim/test_layer_engine.py``):
    three of four heads, half the FFN neurons, half the blocks, and the DeiT token gather at
    keep rate 0.7 (64 candidates -> 45, CLS and distillation protected, the rest fused)."""
    from sim.harness import build
    from sim.layer_replay import replay, synthetic_case
    from sw.golden.token_select import TokenPruning, keep_count

    config = load_config("ulx3s_85f")
    keep = keep_count(config.model.tokens - 2, 0.7)
    case = synthetic_case(config, kept_heads=[0, 2, 3], kept_ffn=64, density=0.5, seed=7,
                          token_pruning=TokenPruning(keep=keep, protected=2, fuse=True))
    [result] = replay(build(config, "layer_engine"), [case], tmp_path)
    assert result["bit_exact"]
    assert result["cycles"] == result["model_cycles"]
    assert [entry["cycles"] for entry in result["instructions"]] == [
        entry["model_cycles"] for entry in result["instructions"]]
    assert sum(entry["unit"] == "attention_scores" for entry in result["instructions"]) == 3
    assert any(entry["unit"] == "token_gather" for entry in result["instructions"])
