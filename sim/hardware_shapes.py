"""Small accelerator configurations that co-simulation sweeps over, built in code.

``tiny`` is the preset; the others change only the GEMM engine's shape, so that square,
non-square and larger arrays and different block tilings are all exercised in seconds.
"""

from sw.config import AcceleratorConfig, ModelTopology, load_config, minimum_buffers


def _variant(name: str, model: ModelTopology, **hardware) -> AcceleratorConfig:
    tiny = load_config("tiny")
    shape = {key: hardware[key] for key in ("array_rows", "array_cols", "block_rows",
                                             "block_cols")}
    buffers = minimum_buffers(model, **shape)
    # room for a dense FFN weight, so every density of the sweep fits
    buffers["weight_buffer_depth"] = model.hidden_size * model.ffn_size // shape["array_cols"]
    return tiny.replace(name=name, model=model, hardware={**hardware, **buffers})


def hardware_shapes() -> dict[str, AcceleratorConfig]:
    """Name -> config of every shape the GEMM co-simulation runs on."""
    tiny = load_config("tiny")
    return {
        # 4x4 array, one 8x8 block = 2x2 array tiles
        "tiny": tiny,
        # non-square 4-row x 8-column array, 16x8 blocks = 2x2 tiles: catches transpositions
        "tiny_4x8": _variant("tiny_4x8", tiny.model, array_rows=4, array_cols=8,
                             block_rows=16, block_cols=8),
        # larger 8x8 array with 16x16 blocks, a wider model and more tokens
        "small_8x8": _variant("small_8x8", ModelTopology(
            hidden_size=128, num_heads=4, head_dim=32, ffn_size=256, tokens=33, layers=1),
            array_rows=8, array_cols=8, block_rows=16, block_cols=16),
    }
